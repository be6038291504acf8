"""An existing archive from the UI: register its videos as partitions without launching
anything (the `register_archive` job, or the `archive_sensor` once turned on), so that the
UI's backfill of the per-video assets processes it; remove partitions that name no video
(`prune_partitions`); and the archive's status as an asset the UI shows (`archive_status`).
The logic is `reid_pipeline.ingest.catalog`'s; the CLI's `reid backfill --register-only` and
`reid prune` do the same."""

import dagster as dg
from pydantic import Field

from assets.partitions import videos
from assets.sensors import scan_tick
from assets.settings import settings
from reid_pipeline.ingest import catalog
from resources import Archive, ReidDatabase

BACKFILL_HINT = ("then process them: Assets > select the per-video assets (or the `process_video` job) > "
                 "Materialize > pick the partitions (all, or a range) > Launch backfill")


def _table(rows: list[dict], columns: list[str]) -> dg.MetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: r[c] for c in columns}) for r in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "int" if isinstance(rows[0][c], int) else "string")
                                       for c in columns]) if rows else dg.TableSchema(columns=[dg.TableColumn(c) for c in columns]),
    )


class RegisterArchiveConfig(dg.Config):
    """Where the archive is. Required, so the Launchpad asks for it (its "Scaffold missing
    config" writes `ops: register_videos: config: source:` with a placeholder); with
    REID_ARCHIVE set it is that location by default, and "Scaffold all default config"
    fills it in."""

    source: str = Field(
        default=settings.archive or ...,
        description="The archive to register: a folder on the machine that runs the job (searched recursively), "
                    "e.g. /srv/archive, or s3://bucket/prefix (endpoint: REID_S3_ENDPOINT_URL). Default: REID_ARCHIVE "
                    "where it is set.")


@dg.op(description="Registers every video under the archive as a partition of `videos` (with its source); "
                   "analyses nothing.")
def register_videos(context: dg.OpExecutionContext, config: RegisterArchiveConfig, database: ReidDatabase,
                    archive: Archive) -> dg.Output[int]:
    source = config.source or archive.source
    if not source:
        raise dg.Failure(description="no archive given: set `source` in the run's config (a folder or s3://bucket/prefix), "
                         "or REID_ARCHIVE", allow_retries=False)
    try:
        registration = catalog.register_archive(database.store(), source, archive.endpoint_url)
    except ValueError as exc:  # not a folder here, or a key that belongs to another file
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    partitions = set(context.instance.get_dynamic_partitions(videos.name))
    missing = [key for key in registration.all_keys if key not in partitions]  # a known video whose partition was removed
    if missing:
        context.instance.add_dynamic_partitions(videos.name, missing)
    for key, uri in registration.registered:
        context.log.info(f"{uri} -> partition {key} (new)")
    for key, uri, status in registration.known:
        context.log.info(f"{uri}: already known as partition {key} ({status})")
    for where, reason in registration.skipped:
        context.log.info(f"skipped {where}: {reason}")
    new = len(registration.keys)
    summary = registration.summary()
    context.log.info(f"{summary}; nothing launched" + (f": {BACKFILL_HINT}" if new else ""))
    rows = ([{"partition": k, "status": "new", "source": u} for k, u in registration.registered]
            + [{"partition": k, "status": f"already known ({status})", "source": u} for k, u, status in registration.known])
    return dg.Output(new, metadata={
        "source": source,
        "summary": summary,
        "registered": new,
        "already_known": len(registration.known),
        **{f"already_{status}": n for status, n in registration.known_by_status().items()},
        "next": BACKFILL_HINT if new else "nothing new to process",
        "partitions": _table(rows[:500], ["partition", "status", "source"]),
        "skipped": _table([{"location": w, "reason": r} for w, r in registration.skipped[:500]], ["location", "reason"]),
    })


@dg.job(description="Register an existing archive (a folder or s3://bucket/prefix, in the run's config) as partitions "
                    "of `videos`, launching nothing; then backfill the per-video assets from the UI. "
                    "The same as `reid backfill FOLDER --register-only`.")
def register_archive():
    register_videos()


@dg.op(description="Deletes the partitions of `videos` that name no registered video.")
def remove_stray_partitions(context: dg.OpExecutionContext, database: ReidDatabase) -> dg.Output[int]:
    stray = catalog.stray_partitions(database.store(), context.instance.get_dynamic_partitions(videos.name))
    for key in stray:
        context.instance.delete_dynamic_partition(videos.name, key)
        context.log.info(f"removed partition {key!r}: no registered video")
    return dg.Output(len(stray), metadata={
        "removed": len(stray),
        "partitions": _table([{"partition": k} for k in stray[:500]], ["partition"]),
    })


@dg.job(description="Remove the partitions of `videos` that name no registered video (a key typed into the "
                    "\"Add a partition\" box: its runs fail and it stays in every asset's counts). The same as `reid prune`.")
def prune_partitions():
    remove_stray_partitions()


@dg.sensor(minimum_interval_seconds=settings.sensor_interval, default_status=dg.DefaultSensorStatus.STOPPED)
def archive_sensor(context: dg.SensorEvaluationContext, archive: Archive, database: ReidDatabase) -> dg.SensorResult:
    """Registers the videos of the archive at REID_ARCHIVE (a folder or s3://bucket/prefix) as
    partitions of `videos`, and new ones as they settle there, launching nothing: the UI's
    backfill of the per-video assets processes them when you choose. Off until turned on."""
    if not archive.source:
        return dg.SensorResult(skip_reason="REID_ARCHIVE is not set: set it to the archive's folder (or s3://bucket/prefix) "
                               "and restart, or run the `register_archive` job with the folder in its config")
    try:
        catalog.check_source(archive.source)
    except ValueError as exc:
        return dg.SensorResult(skip_reason=str(exc))
    found = scan_tick(context, archive.source, archive.endpoint_url, archive.settle_seconds, database)
    if isinstance(found, dg.SensorResult):
        return found
    if not found:
        return dg.SensorResult(skip_reason=f"no new settled video in {archive.source}")
    context.log.info(f"{len(found)} videos registered; nothing launched: {BACKFILL_HINT}")
    return dg.SensorResult(dynamic_partitions_requests=[videos.build_add_request(found)])


archive_status = dg.AssetSpec(
    "archive_status",
    group_name="video",
    kinds={"postgres"},
    description="What `reid status` shows, kept up to date by the `archive_status_sensor`: videos per status, the "
                "videos that failed with the reason, a row per video (partition key, status, reason, file, faces, "
                "sequences, identities), failures first; and the files not taken, with the reason. See its latest "
                "observation.",
)


@dg.sensor(minimum_interval_seconds=settings.sensor_interval, default_status=dg.DefaultSensorStatus.RUNNING)
def archive_status_sensor(context: dg.SensorEvaluationContext, database: ReidDatabase) -> dg.SensorResult:
    """Observes `archive_status` whenever the status of the videos changed (one query per tick)."""
    snapshot = catalog.status_snapshot(database.store())
    fingerprint = snapshot.fingerprint()
    if fingerprint == context.cursor:
        return dg.SensorResult(skip_reason="no change")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(snapshot.counts.items())) or "no videos yet"
    metadata = {
        "summary": f"{snapshot.total} video{'' if snapshot.total == 1 else 's'}: {counts}",
        **{f"videos_{status}": n for status, n in sorted(snapshot.counts.items())},
        # plain text: reasons hold file names and colons that markdown would mangle
        "failures": dg.MetadataValue.text("\n".join(f"{v['key']} ({v['file']}, {v['status']}): {v['reason']}"
                                                    for v in snapshot.videos if v["status"] in ("failed", "partial"))
                                          or "no video failed"),
        "videos": _table(snapshot.videos, ["key", "status", "reason", "file", "faces", "sequences", "identities"]),
        "not_taken": _table(snapshot.skipped, ["reason", "location"]),
    }
    if snapshot.total > len(snapshot.videos):
        metadata["note"] = f"the {len(snapshot.videos)} shown: failures, then the newest; `reid status --all` lists all"
    return dg.SensorResult(asset_events=[dg.AssetObservation(asset_key=archive_status.key, metadata=metadata)],
                           cursor=fingerprint)
