"""What every `reid` command sets up first: the folders, the Dagster home, the variables
that the processes it starts inherit, and the database."""

from __future__ import annotations

import atexit
import os
import shutil
from pathlib import Path

from reid_pipeline.config import PROJECT_ROOT, Settings
from reid_pipeline.database import embedded_running, embedded_server, resolve_url
from reid_pipeline.store import Store


def prepare(settings: Settings) -> Path:
    """Create the folders and the Dagster home (with the repo's dagster.yaml) and export
    the variables that every process (webserver, daemon, runs) reads. Returns DAGSTER_HOME.

    Face chips and vectors are biometric data: from here on this process and every process
    it starts create files for their owner only, and the folders that hold them are closed
    to other users (also where an older version left them open)."""
    os.umask(int(settings.umask, 8))
    local_data = [settings.data_root] if settings.data_is_local else []  # a bucket has no folders to make
    for folder in (settings.home, *local_data, settings.inbox):
        Path(folder).mkdir(parents=True, exist_ok=True)
    for folder in (settings.home, *local_data):
        Path(folder).chmod(0o700)
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    # the repo's dagster.yaml is the source of truth: keep the instance's copy in step
    config, source = home / "dagster.yaml", PROJECT_ROOT / "dagster.yaml"
    if not config.exists() or config.read_bytes() != source.read_bytes():
        shutil.copyfile(source, config)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["REID_HOME"] = str(settings.home)
    os.environ["REID_INBOX"] = str(settings.inbox)
    os.environ["REID_DATA_ROOT"] = str(settings.data_root)
    return home


def database_url(settings: Settings, keep_running: bool = False) -> str:
    """The database URL; an embedded server that this command had to start is stopped
    when the command exits (one already running, e.g. under `reid up`, is left alone)."""
    if not settings.database_url and not embedded_running(settings.pgdata) and not keep_running:
        atexit.register(embedded_server(settings.pgdata).stop)
    return resolve_url(settings.database_url, settings.pgdata)


def open_store(settings: Settings) -> Store:
    """The store, its schema brought up to date."""
    store = Store(database_url(settings))
    store.migrate(settings.sql_dir)
    return store
