"""Presentation: what people look at and where they correct it.

- `pictures`: every picture (sheets of face chips with OpenCV, plots with matplotlib);
  `pages`: every static HTML page (jinja2 templates under `templates/`, autoescaped);
  neither reads the database or the data root: callers hand in rows and a chip loader;
- `report`: a video's silhouette report as files; `evidence`: who is on screen at a moment;
- `gallery`: the static gallery of identities; `gallery_app`: the local gallery app, where
  people browse, correct, search by photo and forget.

May import: every stage below (`identities`, `sequences`, `faces`, `ingest`), `store` and the
top modules. The submodules are not imported here, so drawing a sheet never loads matplotlib.
"""
