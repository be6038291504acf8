"""Sequences: a video's faces linked into per-person sequences, and how well they separate.

- `tracking`: linking the faces of consecutive sampled frames into sequences (an
  assignment per frame), the quality gate, a sequence's template;
- `silhouette`: silhouette coefficients of the sequences (scikit-learn).

May import: `faces`, `ingest`, `store` and the top modules.
"""
