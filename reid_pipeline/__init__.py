"""reid_pipeline: the domain core of reid-pipeline (no Dagster import here, the CLI aside)."""

__version__ = "0.1.0"
