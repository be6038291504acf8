"""What people look at: pictures (`pictures`: sheets of face chips with OpenCV, plots with
matplotlib) and HTML pages (`pages`: jinja2 templates under `reid_pipeline/presentation/templates/`).

Nothing here reads the database or the data root; callers hand in rows and a chip loader.
The submodules are not imported here, so drawing a sheet never loads matplotlib."""
