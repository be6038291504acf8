"""The inbox sensor and the per-video job it launches."""


import json

import dagster as dg

from assets.faces import face_embeddings, frame_detections
from assets.ingest import raw_video
from assets.partitions import videos
from assets.reid import cross_video_matches
from assets.sequences import face_sequences, silhouette_report
from assets.settings import settings
from reid_pipeline.ingest.buckets import BucketError
from reid_pipeline.ingest.inbox import scan_source
from resources import Inbox, ReidDatabase


@dg.failure_hook(required_resource_keys={"database"})
def record_video_failure(context: dg.HookContext) -> None:
    """A step failed for good (bad input fails at once, anything else after its retries):
    the video's row says `failed` with the reason, for `reid status` and `archive_status`; and
    the failed asset's partition gets an observation that says why. Dagster's open-source
    event storage keeps no asset failure events (`can_store_asset_failure_events` is False),
    so its partition view says only "Run ... failed"; the observation is in that partition's
    events ("View all historical events") and in the asset's *Events* tab, with the run."""
    run = context.instance.get_run_by_id(context.run_id)
    key = run.tags.get("dagster/partition") if run else None
    if key:
        error = context.op_exception
        if isinstance(error, dg.Failure):  # an input error, already worded for the user
            reason = f"{context.op.name}: {error.description}"
        else:
            reason = f"{context.op.name}: {type(error).__name__}: {error}" if error else f"{context.op.name} failed"
        try:
            context.resources.database.store().mark_failed(key, reason[:2000])
        except Exception as exc:  # the database may be what failed; the run's own log has the reason
            context.log.warning(f"could not record the failure of {key}: {exc}")
        if context.op.name in FAILURE_OBSERVED:
            context.instance.report_runless_asset_event(dg.AssetObservation(
                asset_key=context.op.name, partition=key,
                metadata={"status": "failed", "reason": reason[:2000], "run": dg.MetadataValue.dagster_run(context.run_id)}))


PER_VIDEO = [raw_video, frame_detections, face_embeddings, face_sequences, silhouette_report, cross_video_matches]
FAILURE_OBSERVED = {a.key.to_user_string() for a in PER_VIDEO}  # each one's op is named after it

process_video = dg.define_asset_job(
    "process_video",
    selection=PER_VIDEO,
    partitions_def=videos,
    description="Everything per video: register, detect, embed, link into sequences, report, match the archive.",
    # A failure of the machine (database, disk, object store unavailable) is retried with
    # back-off; a failure of the input raises dg.Failure(allow_retries=False) and is not.
    op_retry_policy=dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    hooks={record_video_failure},
)


rebuild_identities = dg.define_asset_job(
    "rebuild_identities",
    selection=["identities"],
    description="Recompute the archive's identities and gallery from the stored matches.",
)

# Declarative automation: re-materialises `identities` once new matches land and no
# upstream run is still in progress (see the asset's automation condition).
identities_automation = dg.AutomationConditionSensorDefinition(
    "identities_automation",
    target=dg.AssetSelection.assets("identities"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=settings.sensor_interval,
)


@dg.sensor(
    job=process_video,
    minimum_interval_seconds=settings.sensor_interval,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def inbox_sensor(context: dg.SensorEvaluationContext, inbox: Inbox, database: ReidDatabase) -> dg.SensorResult:
    """Watches the inbox folder (or bucket): each new, settled video becomes a `videos`
    partition and a `process_video` run. Never hashes or decodes (a tick is one directory
    walk or one object listing); a file still being written (or an upload in progress)
    waits until it holds still; non-video files are skipped with a reason, logged and kept
    in `inbox_skipped` for `reid status`. The cursor keeps files seen but not yet settled."""
    found = scan_tick(context, inbox.source, inbox.endpoint_url, inbox.settle_seconds, database)
    if isinstance(found, dg.SensorResult):
        return found
    if not found:
        return dg.SensorResult(skip_reason=f"no new settled video ({len(json.loads(context.cursor)['pending'])} pending)")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=key, run_key=key) for key in found],
        dynamic_partitions_requests=[videos.build_add_request(found)],
    )


def scan_tick(context: dg.SensorEvaluationContext, source: str, endpoint_url: str | None, settle_seconds: float,
              database: ReidDatabase) -> list[str] | dg.SensorResult:
    """One tick of a watched location: register the new settled videos (their partition
    keys are returned; the caller asks for the partitions), keep files still arriving in the
    cursor, record the files skipped with their reasons. A location that cannot be listed
    gives the SensorResult that says so."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(videos.name))
    try:
        result = scan_source(source, known, cursor.get("pending"), set(cursor.get("ignored", [])), settle_seconds, endpoint_url)
    except BucketError as exc:
        return dg.SensorResult(skip_reason=f"cannot list {source}: {exc}")
    for where, reason in result.skipped:
        context.log.info(f"skipped {where}: {reason}")
    if result.skipped:  # kept for `reid status`: a tick's log is not where a user looks
        database.store().record_skipped([(str(where), reason) for where, reason in result.skipped])
    if result.ready:
        store = database.store()
        for key, uri in result.ready:
            store.register_video(key, uri)
            context.log.info(f"new video {uri} -> partition {key}")
    context.update_cursor(json.dumps({"pending": result.pending, "ignored": sorted(result.ignored)}))
    return [key for key, _ in result.ready]
