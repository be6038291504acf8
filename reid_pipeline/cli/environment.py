"""What every `reid` command sets up first: the folders, the Dagster home, the variables
that the processes it starts inherit, and the database (the project's, which also holds the
Dagster instance's storage: `cli.instance`)."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
from pathlib import Path

from reid_pipeline.cli import instance as instance_storage
from reid_pipeline.config import PROJECT_ROOT, Settings
from reid_pipeline.database import embedded_running, embedded_server, resolve_url
from reid_pipeline.store import Store, close_pools


def prepare(settings: Settings, keep_running: bool = False) -> Path:
    """Create the folders and the Dagster home (with the repo's dagster.yaml), start (or
    attach to) the database, and export the variables that every process (webserver, daemon,
    runs) reads, the Dagster instance's storage URL among them; before anything opens the
    instance. Returns DAGSTER_HOME. In an image, which has no repo dagster.yaml, the
    deployment's dagster.yaml and storage URL are left as they are.

    The instance's storage is the project's database, schema `dagster` (`cli.instance`); a
    home that an older version kept in SQLite has that history imported once, here. An
    embedded server that this command had to start is stopped when it exits, unless
    `keep_running` (`reid up`, whose reaper stops it).

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
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["REID_HOME"] = str(settings.home)
    os.environ["REID_INBOX"] = str(settings.inbox)
    os.environ["REID_DATA_ROOT"] = str(settings.data_root)
    url = database_url(settings, keep_running)
    source = PROJECT_ROOT / "dagster.yaml"
    if not source.exists():
        # an image (Dockerfile): its DAGSTER_HOME holds the deployment's dagster.yaml, and
        # the deployment's environment names the instance's storage; leave both as they are
        return home
    # a checkout: the repo's dagster.yaml is the source of truth, keep the instance's copy in step
    config = home / "dagster.yaml"
    if not config.exists() or config.read_bytes() != source.read_bytes():
        shutil.copyfile(source, config)
    instance_storage.ensure_schema(url)
    os.environ[instance_storage.URL_VARIABLE] = instance_storage.storage_url(url)
    imported = instance_storage.import_sqlite_history(url, home)
    if imported is not None:
        print(f"reid: {imported.line()}", file=sys.stderr, flush=True)
    return home


def database_url(settings: Settings, keep_running: bool = False) -> str:
    """The database URL; an embedded server that this command had to start is stopped
    when the command exits (one already running, e.g. under `reid up`, is left alone)."""
    if not settings.database_url and not embedded_running(settings.pgdata) and not keep_running:
        server = embedded_server(settings.pgdata)

        def stop() -> None:
            # the pools first: a pool still filling itself (in a thread) would report the
            # server's going as "error connecting in 'reid'" after the command's output
            close_pools()
            server.stop()

        atexit.register(stop)
    return resolve_url(settings.database_url, settings.pgdata)


def open_store(settings: Settings) -> Store:
    """The store, its schema brought up to date."""
    store = Store(database_url(settings))
    store.migrate(settings.sql_dir)
    return store
