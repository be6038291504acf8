"""`backfill_videos`: a backfill of many videos without Dagster's start-up cost per video.

A run of `process_video` per video pays Dagster's start of a run (queue tick, a new process,
imports, the code location: about 5 s on 2 cores, BENCHMARKS.md) once per video; for short
clips that is most of the time. This job pays it once per batch: one step per batch of
`batch_size` videos (steps run in their own processes, `max_concurrent` at once), and each
step runs `process_video` for every video of its batch in that process, one ordinary
partitioned run per video (`execute_in_process` on this instance), with the face model, the
code location and the database pool loaded once.

So every video keeps what a run of its own gives it: its materializations and metadata per
asset, its partition status in the UI (failed runs mark their partitions failed), the step
retries and the failure hook of `process_video` (`videos.error`), and it is re-run alone like
any partition (UI, `reid retry KEY`). One bad video fails its own run only; the batch goes
on. This step fails at the end, naming the videos that failed, so the backfill shows red
too. A re-execution from failure skips the videos this backfill already finished.

Why not `BackfillPolicy.multi_run` on the per-video assets (one run per range of
partitions): Dagster records a ranged step's materializations from its output, one per
partition of the whole range, so an asset cannot leave out the video that failed
(dagster-io/dagster#17836); the run tag that turns those events off
(`dagster/defer_asset_events`) also turns off the planned events that the UI and the
backfill daemon use to mark partitions failed. docs/architecture.md has the details.
"""

import os
import time

import dagster as dg
from dagster._serdes import ConfigurableClassData

from assets.sensors import PER_VIDEO, process_video
from assets.settings import settings
from resources import build_resources

BACKFILL_TAG = "reid/backfill"  # on the backfill's run and on every per-video run it makes


class BackfillConfig(dg.Config):
    partition_keys: list[str]  # registered partitions of `videos` (`reid backfill` registers them)
    batch_size: int = settings.backfill_batch  # videos per step (per process)
    sample_fps: float | None = None  # None: the default of `frame_detections`


@dg.op(out=dg.DynamicOut(dict))
def plan_batches(context: dg.OpExecutionContext, config: BackfillConfig):
    """Splits the videos into batches of `batch_size`, one step each."""
    keys = list(dict.fromkeys(config.partition_keys))
    known = set(context.instance.get_dynamic_partitions("videos"))
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise dg.Failure(description=f"not partitions of `videos`: {', '.join(unknown[:10])}; register them with "
                         "the `register_archive` job, `reid backfill` or the inbox first", allow_retries=False)
    size = max(1, config.batch_size)
    for i in range(0, len(keys), size):
        batch = {"partition_keys": keys[i : i + size], "sample_fps": config.sample_fps}
        yield dg.DynamicOutput(batch, mapping_key=f"batch_{i // size:04d}")


def _backfill_id(context: dg.OpExecutionContext) -> str:
    return context.run.tags.get(BACKFILL_TAG) or context.run.root_run_id or context.run_id


def _finished_here(instance: dg.DagsterInstance, backfill_id: str) -> set[str]:
    """Partitions this backfill already ran to success (a re-execution skips them)."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}, statuses=[dg.DagsterRunStatus.SUCCESS]))
    return {r.tags["dagster/partition"] for r in runs if "dagster/partition" in r.tags}


def _process_video_job(context: dg.OpExecutionContext) -> dg.JobDefinition:
    """`process_video` of the code location this run belongs to, resources bound."""
    try:
        return context.repository_def.get_job("process_video")
    except dg.DagsterInvariantViolationError:
        raise
    except Exception:  # `execute_in_process` (tests) sets no repository: the job with its assets and resources
        return dg.Definitions(assets=PER_VIDEO, jobs=[process_video], resources=build_resources()).resolve_job_def("process_video")


def _batch_instance(instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """The same instance (storage, run records, event log) for the per-video runs of a batch,
    made cheaper per run:
    - no compute-log capture: this step already captures the process's stdout and stderr, and
      capturing them again per video (a file pair and a `tail` process per run) cost more than
      the rest of Dagster's work per video (BENCHMARKS.md, "Backfills in batches");
    - pooled database connections: Dagster's Postgres storage opens a new connection for every
      query and event (about 200 a video run, a few ms each); this process lives for the
      batch, so it holds them open like the webserver does (`optimize_for_webserver`, no
      statement timeout). SQLite storage ignores it."""
    if instance.is_ephemeral:
        return instance
    ref = instance.get_ref()._replace(compute_logs_data=ConfigurableClassData(
        "dagster._core.storage.noop_compute_log_manager", "NoOpComputeLogManager", "{}"))
    batch_instance = dg.DagsterInstance.from_ref(ref)
    batch_instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=4)
    return batch_instance


@dg.op
def process_batch(context: dg.OpExecutionContext, batch: dict) -> dict:
    """Runs `process_video` for each video of the batch, one run per video, in this process."""
    partition_keys, sample_fps = batch["partition_keys"], batch["sample_fps"]
    job = _process_video_job(context)
    backfill_id = _backfill_id(context)
    done = _finished_here(context.instance, backfill_id)
    # the per-video runs' events go to the event log (the UI) as always; the console of this
    # step (its captured output) gets only their warnings, not 40 lines per video
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    if sample_fps is not None:
        run_config["ops"] = {"frame_detections": {"config": {"sample_fps": sample_fps}}}
    tags = {BACKFILL_TAG: backfill_id, "reid/batch_step": f"{context.run_id}:{context.op_handle}[{context.get_mapping_key()}]"}
    failed: dict[str, str] = {}
    t0 = time.perf_counter()
    instance = _batch_instance(context.instance)
    try:
        for i, key in enumerate(partition_keys, 1):
            if key in done:
                context.log.info(f"[{i}/{len(partition_keys)}] {key}: already done in this backfill")
                continue
            result = job.execute_in_process(partition_key=key, instance=instance, run_config=run_config,
                                            tags=tags, raise_on_error=False)
            if result.success:
                context.log.info(f"[{i}/{len(partition_keys)}] {key}: done (run {result.run_id})")
            else:
                failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
                failed[key] = failures[0].step_failure_data.error.message.strip().splitlines()[-1] if failures else "run failed"
                context.log.warning(f"[{i}/{len(partition_keys)}] {key}: failed (run {result.run_id}): {failed[key]}")
    finally:
        if instance is not context.instance:
            instance.dispose()
    seconds = time.perf_counter() - t0
    context.add_output_metadata({"videos": len(partition_keys), "failed": len(failed), "seconds": round(seconds, 2),
                                 "s_per_video": round(seconds / max(1, len(partition_keys)), 3)})
    return failed


@dg.op
def summarise_backfill(context: dg.OpExecutionContext, failures: list) -> dg.Output:
    """Fails the backfill's run when any video failed (each has its own failed run)."""
    failed = {k: v for batch in failures for k, v in batch.items()}
    if failed:
        listing = "; ".join(f"{k}: {why}" for k, why in list(failed.items())[:20])
        raise dg.Failure(description=f"{len(failed)} videos failed, each in its own run: {listing}",
                         metadata={"failed": dg.MetadataValue.json(failed)}, allow_retries=False)
    return dg.Output(None, metadata={"failed": 0})


@dg.job(
    description="Backfill many videos: one `process_video` run per video, many videos per process "
    "(Dagster's start-up paid once per batch). Config: the partition keys (`reid backfill` fills them in).",
    # each batch is a step in its own process; steps of one run at once = the instance's run
    # slots. The step processes fork from a server that has imported Dagster, the code
    # location and its libraries once, instead of each importing them again (seconds a step
    # on 2 busy cores, for plan_batches and summarise_backfill too).
    executor_def=dg.multiprocess_executor.configured({
        "max_concurrent": min(2, os.cpu_count() or 1),
        "start_method": {"forkserver": {"preload_modules": ["dagster", "definitions"]}},
    }),
)
def backfill_videos():
    summarise_backfill(plan_batches().map(process_batch).collect())
