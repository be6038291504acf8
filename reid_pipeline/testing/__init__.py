"""Helpers for the tests, the benchmarks and the deployment smoke test, never used by the
pipeline itself: `synthetic` writes test videos with known ground truth. ruff's banned-api
rule (pyproject.toml) keeps the rest of `reid_pipeline` from importing this package."""
