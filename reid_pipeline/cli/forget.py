"""`reid forget`: remove a video or a person completely, after asking."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reid_pipeline.cli.archive import Refused, other_models_note, photo_query
from reid_pipeline.cli.environment import open_store, prepare
from reid_pipeline.cli.execution import DagsterRecompute, code_location, forget_runs
from reid_pipeline.cli.runs import report_identities
from reid_pipeline.config import Settings
from reid_pipeline.store import Store


def cmd_forget(args: argparse.Namespace) -> int:
    """Forget a video or a person: rows, files, chips, reports, cached copies, the Dagster
    runs whose event logs show their faces; the gallery is rebuilt. Asks first."""

    from reid_pipeline.identities.forget import carry_out, plan_identity, plan_video
    from reid_pipeline.ingest.arrivals import partition_key_for

    settings = Settings()
    prepare(settings)
    store = open_store(settings)
    try:
        if args.video:
            key = args.video if store.get_video(args.video) else partition_key_for(str(Path(args.video).resolve()))
            plan = plan_video(store, settings.data_path(), key, settings.video_cache)
        else:
            identity = args.identity or identity_of_photo(store, settings, args.photo)
            if identity is None:
                return 1
            models = [r["model"] for r in store.identity_rows(identity)]
            if not models:
                print(f"reid: no identity {identity!r} (see the gallery or `reid search`)", file=sys.stderr)
                return 1
            plan = plan_identity(store, settings.data_path(), models[0], identity)
    except KeyError as exc:
        print(f"reid: {exc.args[0]} (see `reid status`)", file=sys.stderr)
        return 1
    print("\n".join(plan.describe()))
    if not args.yes:
        if not sys.stdin.isatty():
            print("reid: nothing forgotten; add --yes to forget without being asked", file=sys.stderr)
            return 2
        if input("forget all of this for good? type yes: ").strip() != "yes":
            print("nothing forgotten")
            return 1
    counts = carry_out(store, settings.data_path(), plan, delete_source=args.delete_source)
    defs, instance = code_location()
    runs = forget_in_dagster(instance, plan)
    print(f"forgotten: {counts['faces']} faces, {counts['sequences']} sequences, {counts['files']} files or folders"
          f" deleted, {counts['files_rewritten']} videos' files rewritten, {runs} Dagster runs deleted"
          + ("; source file deleted" if counts["source_deleted"] else "")
          + (f"; taken out of {counts['corrections_edited']} corrections" if counts["corrections_edited"] else ""))
    report_identities(defs, instance)
    return 0


def identity_of_photo(store: Store, settings: Settings, photo: str) -> str | None:
    """The identity that the largest face of `photo` matches best (None, said why)."""
    from reid_pipeline.identities.archive import search
    from reid_pipeline.identities.matching import match_settings_for

    try:
        backend, vectors = photo_query(settings, photo)
    except Refused as exc:
        print(f"reid: {exc}", file=sys.stderr)
        return None
    blind, note = other_models_note(store, backend.model_name)
    if blind:
        print(f"reid: {photo}: {note}; or forget by --identity", file=sys.stderr)
        return None
    if note:  # the person may also be in those videos: they are not forgotten by this
        print(f"{note}; the person's sightings there are not forgotten by this photo", file=sys.stderr)
    results = search(store, backend.model_name, backend.dim, vectors, match_settings_for(backend.model_name))
    results = [r for r in results if r["identity_id"].startswith("person-")]
    if not results:
        print(f"reid: {photo}: matches nobody in the archive; nothing to forget", file=sys.stderr)
        return None
    return results[0]["identity_id"]


def forget_in_dagster(instance, plan) -> int:
    """Every copy Dagster keeps of what `plan` forgot: the runs (`execution.forget_runs`: event
    logs, a video's partition), then what a run deletion leaves behind: the compute logs of
    the deleted runs, and the cached latest materialization and status of each asset
    (`asset_keys`), which still held a deleted run's event. In the instance and in the
    imported SQLite histories kept aside. Face pictures are no longer written to Dagster's
    metadata at all (docs/architecture.md, "No face in Dagster's stores"); this reaches those
    written before, and the runs' logs and names of the forgotten. Returns the runs deleted."""
    from reid_pipeline.cli.instance import imported_histories, sqlite_instance

    before = set(instance.get_run_ids())
    deleted = forget_runs(instance, plan)
    gone = before - set(instance.get_run_ids())
    forget_leftovers(instance, gone)
    for folder in imported_histories(instance.root_directory):
        with sqlite_instance(folder) as kept:
            forget_leftovers(kept, set())
    return deleted


def forget_leftovers(instance, deleted_runs: set[str]) -> None:
    """What deleting runs leaves in `instance`: their compute logs (and those of any other run
    that no longer exists), and cached latest materializations pointing at a deleted run."""
    import re

    logs = instance.compute_log_manager
    for run_id in deleted_runs:
        try:
            logs.delete_logs(prefix=[run_id])
        except NotImplementedError:  # a manager that cannot delete (none here keeps files)
            break
    base = getattr(logs, "_base_dir", None)  # the local manager: one folder per run under storage/
    if base and Path(base).is_dir():
        uuid = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
        existing = set(instance.get_run_ids())
        for folder in Path(base).iterdir():
            if folder.is_dir() and uuid.match(folder.name) and folder.name not in existing:
                logs.delete_logs(prefix=[folder.name])
    repoint_latest_materializations(instance)


def repoint_latest_materializations(instance) -> list[str]:
    """Dagster caches each asset's latest materialization event (with its metadata) in
    `asset_keys.last_materialization`, and its partition status in `cached_status_data`;
    deleting the run that wrote it leaves both (the UI keeps showing the deleted event).
    Point each such row at the latest event that still exists (or at none), and drop the
    status cache so that Dagster recomputes it from the events. Returns the assets fixed."""
    import dagster as dg
    from dagster._core.storage.event_log.schema import AssetKeyTable
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
    from dagster._serdes import deserialize_value, serialize_value
    from dagster._time import datetime_from_timestamp

    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        return []
    with storage.index_connection() as conn:
        rows = conn.execute(AssetKeyTable.select().with_only_columns(
            AssetKeyTable.c.asset_key, AssetKeyTable.c.last_materialization, AssetKeyTable.c.last_run_id)).fetchall()
    existing = set(instance.get_run_ids())
    fixed = []
    for asset_key, last, last_run_id in rows:
        run_id = last_run_id
        if last:
            try:
                record = deserialize_value(last)
                entry = getattr(record, "event_log_entry", record)
                run_id = getattr(entry, "run_id", None) or run_id
            except Exception:  # an unreadable cache entry: rebuild it too
                run_id = None
        if (not last and (last_run_id is None or last_run_id in existing)) or (run_id is not None and run_id in existing):
            continue
        key = dg.AssetKey.from_db_string(asset_key)
        latest = instance.fetch_materializations(key, limit=1).records
        values = {"last_materialization": None, "last_run_id": None, "last_materialization_timestamp": None}
        if latest:
            values = {"last_materialization": serialize_value(latest[0]), "last_run_id": latest[0].run_id,
                      "last_materialization_timestamp": datetime_from_timestamp(latest[0].timestamp)}
        if not storage.has_asset_key_index_cols():
            values.pop("last_materialization_timestamp")
        if storage.can_write_asset_status_cache():
            values["cached_status_data"] = None
        with storage.index_connection() as conn:
            conn.execute(AssetKeyTable.update().values(**values).where(AssetKeyTable.c.asset_key == asset_key))
        fixed.append(key.to_user_string())
    return fixed


class ForgettingRecompute(DagsterRecompute):
    """The gallery's recomputations, whose forget reaches every copy Dagster keeps
    (`forget_in_dagster`), as `reid forget` does."""

    def forget_traces(self, plan) -> int:
        return forget_in_dagster(self.instance, plan)
