"""The laptop's Dagster instance storage: Dagster's runs, events, partitions and schedules in
the project's own Postgres (the embedded server, or `REID_DATABASE_URL`), in a schema of
their own (`dagster`), so that neither a second server nor CREATE DATABASE is needed; and the
one-time import of the SQLite history that a home kept before (`dagster_home/history/`,
`dagster_home/schedules/`).

The repo's `dagster.yaml` reads the storage's URL from `DAGSTER_POSTGRES_URL` (as a
deployment's does); `environment.prepare()` sets it, from the project's database URL, before
anything opens the instance, and every process a command starts (webserver, daemon, run
workers, the forkserver of backfill batches, `dagster job launch`) inherits it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = "dagster"
URL_VARIABLE = "DAGSTER_POSTGRES_URL"  # what dagster.yaml reads
# a home's SQLite instance storage (Dagster's default under DAGSTER_HOME): runs, event logs
# (a file per run and an index) and schedules; compute logs (`storage/`) stay where they are
SQLITE_HISTORY = ("history", "schedules")
IMPORTED = "sqlite-imported"
_IMPORT_LOCK = 0x7265_6964_6461_6773  # pg_advisory_lock key: one import at a time ("reiddags")


def storage_url(database_url: str, schema: str = SCHEMA) -> str:
    """The URL of Dagster's Postgres storage for the project's database: SQLAlchemy's
    psycopg2 driver (Dagster's Postgres storage needs it named), the same server, user and
    database, and `search_path` set to `schema` (libpq's `options`), so that Dagster's tables
    and its Alembic stamp live there and not among the project's. Takes a URL or a libpq
    key=value string; other parameters (sslmode, ...) are kept."""
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy.engine import URL

    params = {k: str(v) for k, v in conninfo_to_dict(database_url).items()}
    user, password, dbname = params.pop("user", None), params.pop("password", None), params.pop("dbname", None)
    host, port = params.get("host", ""), params.get("port", "")
    tcp = bool(host) and not host.startswith("/") and "," not in host and "," not in port
    if tcp:  # one TCP host: in the URL itself; a socket folder or several hosts stay parameters
        del params["host"]
        params.pop("port", None)
    params["options"] = " ".join(filter(None, [params.get("options"), f"-csearch_path={schema}"]))
    url = URL.create("postgresql+psycopg2", username=user or None, password=password or None,
                     host=host if tcp else None, port=int(port) if tcp and port else None,
                     database=dbname, query=params)
    return url.render_as_string(hide_password=False)


def pool_connections(instance, max_overflow: int = 8) -> None:
    """Keep Dagster's Postgres storage connections open for this process, as its webserver
    does (`optimize_for_webserver`), with no statement timeout: a run may write for as long as
    it needs. By default each storage opens a new connection for every read and write
    (SQLAlchemy's NullPool), about 300 for one video's run. SQLite storage ignores it."""
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=max_overflow)


def ensure_schema(database_url: str, schema: str = SCHEMA) -> None:
    """Create Dagster's schema if it is missing (once; needs CREATE on the database then)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(database_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def has_sqlite_history(dagster_home: Path) -> bool:
    return (Path(dagster_home) / "history" / "runs.db").exists()


def imported_histories(dagster_home: str | Path) -> list[Path]:
    """The SQLite histories imported earlier and kept aside under `dagster_home`: their
    event logs hold the same pictures of people as the imported runs, so `reid forget`
    deletes its runs there too (`execution.forget_runs`)."""
    return sorted(p for p in Path(dagster_home).glob(f"{IMPORTED}*") if has_sqlite_history(p))


@contextmanager
def sqlite_instance(base_dir: Path) -> Iterator:
    """A Dagster instance on the SQLite storage under `base_dir` (`history/`, `schedules/`)."""
    import dagster as dg
    import yaml

    with tempfile.TemporaryDirectory(prefix="reid-sqlite-instance-") as config_dir:
        (Path(config_dir) / "dagster.yaml").write_text(yaml.safe_dump(
            {"storage": {"sqlite": {"base_dir": str(base_dir)}}, "telemetry": {"enabled": False}}))
        with dg.DagsterInstance.from_config(config_dir) as instance:
            yield instance


@dataclass
class Imported:
    runs: int
    events: int
    partitions: int
    sensors: int
    backfills: int
    moved_to: Path

    def line(self) -> str:
        return (f"moved the Dagster history of this home from SQLite to Postgres (schema {SCHEMA}): {self.runs} runs with"
                f" {self.events} events, {self.partitions} partitions of `videos`, {self.sensors} sensor states,"
                f" {self.backfills} backfills; the SQLite files are in {self.moved_to}")


def import_sqlite_history(database_url: str, dagster_home: Path) -> Imported | None:
    """Copy a home's SQLite instance storage (if any) into the Postgres instance that
    `dagster_home`'s dagster.yaml names (its URL variable set), then move the SQLite files
    aside (`dagster_home/sqlite-imported/`, itself a base_dir that Dagster's SQLite storage
    can open, and which `reid forget` keeps clean too) so they are not imported again. What
    is copied, with Dagster's instance API (as `dagster debug export` / `import` do for one
    run): every run with its job and execution plan snapshots, its events (asset materialisations, observations, checks:
    the partitions' status and history) and its start and end times; the events outside runs
    (the failure observations); the dynamic partitions of `videos`; sensor states (on/off
    and cursors); backfills. Not copied: ticks and daemon heartbeats. A run already in
    Postgres is skipped, so an interrupted import resumes. Returns what was imported (None
    when there was nothing to import)."""
    import psycopg

    dagster_home = Path(dagster_home)
    if not has_sqlite_history(dagster_home):
        return None
    with psycopg.connect(database_url, autocommit=True) as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (_IMPORT_LOCK,))  # another command importing: wait for it
        if not has_sqlite_history(dagster_home):  # it did
            return None
        counts = _copy(dagster_home)
        moved_to = _move_aside(dagster_home)
    return Imported(*counts, moved_to=moved_to)


def _copy(dagster_home: Path) -> tuple[int, int, int, int, int]:
    import dagster as dg

    with sqlite_instance(dagster_home) as old, dg.DagsterInstance.from_config(str(dagster_home)) as new:
        pool_connections(new, max_overflow=4)
        partitions = old.get_dynamic_partitions("videos")
        new.add_dynamic_partitions("videos", partitions)
        runs = events = 0
        for record in reversed(old.get_run_records()):  # oldest first: the runs keep their order
            copied = _copy_run(old, new, record)
            runs, events = runs + (copied is not None), events + (copied or 0)
        runless = old.all_logs("")  # events outside runs (Dagster's RUNLESS_RUN_ID)
        for entry in runless:
            new.store_event(entry)
        sensors = 0
        for state in old.all_instigator_state():
            if new.get_instigator_state(state.instigator_origin_id, state.selector_id) is None:
                new.add_instigator_state(state)
                sensors += 1
        backfills = 0
        for backfill in old.get_backfills():
            if new.get_backfill(backfill.backfill_id) is None:
                new.add_backfill(backfill)
                backfills += 1
    return runs, events + len(runless), len(partitions), sensors, backfills


def _copy_run(old, new, record) -> int | None:
    """One run, its snapshots and its events into `new`; how many events (None: already there)."""
    run = record.dagster_run
    if new.has_run(run.run_id):
        return None
    # snapshot ids are hashes of their content: where this Dagster hashes an old snapshot
    # differently, the run points at the id it is stored under here
    ids = {}
    if run.job_snapshot_id and old.has_snapshot(run.job_snapshot_id):
        ids["job_snapshot_id"] = new.run_storage.add_job_snapshot(old.get_job_snapshot(run.job_snapshot_id))
    if run.execution_plan_snapshot_id and old.has_snapshot(run.execution_plan_snapshot_id):
        plan = old.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        ids["execution_plan_snapshot_id"] = new.run_storage.add_execution_plan_snapshot(plan)
    changed = {k: v for k, v in ids.items() if v != getattr(run, k)}
    if changed:
        run = run._replace(**changed)
    entries = old.all_logs(run.run_id)
    new.event_log_storage.delete_events(run.run_id)  # what an interrupted import left of it
    for entry in entries:
        new.store_event(entry)
    new.run_storage.add_historical_run(run, record.create_timestamp)
    # the run's start and end times (the runs list, the timeline): replay its status events
    for entry in entries:
        if entry.is_dagster_event and entry.dagster_event.is_job_event:
            at = datetime.fromtimestamp(entry.timestamp, tz=UTC)
            new.handle_run_event(run.run_id, entry.dagster_event, update_timestamp=at)
    final = new.get_run_by_id(run.run_id)
    if final is not None and final.status != record.dagster_run.status:  # a status no event says (rare): the stored one
        new.run_storage.delete_run(run.run_id)
        new.run_storage.add_historical_run(run, record.create_timestamp)
    return len(entries)


def _move_aside(dagster_home: Path) -> Path:
    target = dagster_home / IMPORTED
    n = 1
    while target.exists():
        n += 1
        target = dagster_home / f"{IMPORTED}-{n}"
    target.mkdir()
    for name in SQLITE_HISTORY:
        if (dagster_home / name).exists():
            (dagster_home / name).rename(target / name)
    return target
