"""The code location: one Definitions from assets/ and resources/.

Loaded from the checkout (workspace.yaml names this file, working directory = repo root),
like Dagster's own Docker example; only the core `reid_pipeline` is an installed package.
"""

import os

import dagster as dg

from assets import all_assets, all_jobs, all_sensors
from assets.settings import settings
from resources import build_resources

# Face chips, vectors and previews are biometric data: every process that loads this code
# location (code server, run workers) writes them for its owner only (REID_UMASK widens it).
os.umask(int(settings.umask, 8))


def build_definitions() -> dg.Definitions:
    """Definitions whose resources are configured from the environment as it is now."""
    return dg.Definitions(
        assets=all_assets,
        jobs=all_jobs,
        sensors=all_sensors,
        resources=build_resources(),
        # One process per run: the face model loads once and serves every step of the run.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
