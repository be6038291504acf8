"""`reid process`, `reid retry` and `reid backfill`: videos through the per-video job, here
in this process (process, retry) or by the daemon (backfill), and what came out."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from reid_pipeline.cli.environment import open_store, prepare
from reid_pipeline.cli.execution import (
    BACKFILL_CHUNK,
    LaunchError,
    VideoRun,
    code_location,
    launch_batched_backfill,
    launch_partition_backfill,
    rebuild_identities,
    run_video,
    wait_for_backfills,
)
from reid_pipeline.config import Settings
from reid_pipeline.store import Store

RETRIABLE = ("registered", "processing", "failed")  # the statuses of videos that did not finish


def cmd_process(args: argparse.Namespace) -> int:
    """Headless: each file becomes a partition and goes through the Dagster job in this
    process; the runs show in the UI too. One bad file never stops the others."""
    from reid_pipeline.ingest.arrivals import partition_key_for, skip_reason
    from reid_pipeline.ingest.sources import uri_for

    settings = Settings()
    prepare(settings)
    store = open_store(settings)
    files = [Path(f) for f in args.files]
    missing = [f for f in files if not f.exists()]
    for f in missing:
        print(f"reid: {f}: no such file", file=sys.stderr)
    # judged by what a link points to: a link named .mp4 to /etc/passwd is not opened
    refused = [(f, not_a_file(f) or skip_reason(f.resolve().name)) for f in files if f.exists()]
    refused = [(f, reason) for f, reason in refused if reason]
    for f, reason in refused:
        print(f"reid: {f}: {reason}; not processed", file=sys.stderr)
    files = [f for f in files if f.is_file() and f not in {r for r, _ in refused}]
    if not files:
        print("reid: nothing to process", file=sys.stderr)
        return 1
    defs, instance = code_location()
    videos = []
    for path in files:
        key = partition_key_for(str(path.resolve()))
        store.register_video(key, uri_for(path))
        instance.add_dynamic_partitions("videos", [key])
        videos.append((path.name, key))
    failed = run_videos(defs, instance, store, videos, settings.sample_fps if args.sample_fps is None else args.sample_fps,
                        args.log_level)
    print(f"\n{len(videos) - failed} processed, {failed} failed, {len(missing)} not found"
          + (f", {len(refused)} refused" if refused else ""))
    return 1 if failed or missing or refused else 0


def not_a_file(path: Path) -> str | None:
    """Why `reid process` does not take an existing `path` that is not a regular file, or None."""
    if path.is_file():
        return None
    if path.is_dir():
        where = shlex.quote(str(path).rstrip("/") or "/")
        return (f"a folder, not a video file: give the videos in it (`reid process {where}/*`), or take every video "
                f"under it with `reid backfill {where}` (the daemon of `reid up` runs it)")
    return "not a regular file"


def cmd_retry(args: argparse.Namespace) -> int:
    """Run the videos again that did not finish: `processing` (their run died), `failed`
    or only `registered`; or the partition keys given."""
    settings = Settings()
    prepare(settings)
    store = open_store(settings)
    rows = store.video_rows(keys=args.keys) if args.keys else store.video_rows(statuses=RETRIABLE)
    unknown = sorted(set(args.keys) - {r["partition_key"] for r in rows})
    for key in unknown:
        print(f"reid: {key}: unknown partition key", file=sys.stderr)
    if unknown:
        print(f"reid: {retriable_keys(store)}", file=sys.stderr)
    if not rows:
        if not args.keys:
            print("nothing to retry: every video is ready, partial or a duplicate")
        return 1 if unknown else 0
    defs, instance = code_location()
    for r in rows:
        instance.add_dynamic_partitions("videos", [r["partition_key"]])
        print(f"retry {r['partition_key']} (was {r['status']})")
    from reid_pipeline.ingest.sources import file_name

    videos = [(file_name(r["source_uri"]) or r["partition_key"], r["partition_key"]) for r in rows]
    failed = run_videos(defs, instance, store, videos, settings.sample_fps, args.log_level)
    print(f"\n{len(videos) - failed} processed, {failed} failed")
    return 1 if failed or unknown else 0


def retriable_keys(store: Store, shown: int = 10) -> str:
    """Which partition keys `reid retry` can run again (those that did not finish), said in a line."""
    rows = store.video_rows(statuses=RETRIABLE)
    if not rows:
        return "no video needs a retry: every video is ready, partial or a duplicate (`reid status` lists them)"
    keys = ", ".join(f"{r['partition_key']} ({r['status']})" for r in rows[:shown])
    more = f" and {len(rows) - shown} more" if len(rows) > shown else ""
    return (f"the videos that can be retried: {keys}{more}; `reid retry` without a key runs them all, "
            "`reid status` lists every video with its key")


def run_videos(defs, instance, store: Store, videos: list[tuple[str, str]], sample_fps: float, log_level: str) -> int:
    """Run `process_video` here for each (name, partition key), print a line per video and a
    summary, rebuild the identities; returns how many failed."""
    job = defs.resolve_job_def("process_video")
    run_config = {
        "ops": {"frame_detections": {"config": {"sample_fps": sample_fps}}},
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }
    from reid_pipeline.cli.run_health import resolve_dead_runs

    # a run whose process is gone holds its pool slots until someone gives them back: without
    # `reid up` (whose daemon does it), this command would wait on them for ever
    for dead in resolve_dead_runs(instance, f"reid, before running {len(videos)} video(s) here"):
        print(f"reid: {dead.line()}", file=sys.stderr, flush=True)
    summary: list[VideoRun] = []
    for i, (name, key) in enumerate(videos, 1):
        print(f"[{i}/{len(videos)}] {name} -> partition {key}", flush=True)
        run = run_video(job, instance, store, name, key, run_config)
        summary.append(run)
        model = f" ({run.model})" if run.model else ""
        print(f"      {run.status}: {run.faces} faces{model} in {run.seconds:.1f} s {run.error}", flush=True)
    print("\nsummary")
    print(f"{'video':40} {'partition':32} {'status':10} {'faces':>6} {'seconds':>8}  error")
    for r in summary:
        print(f"{r.name[:40]:40} {r.partition_key[:32]:32} {r.status:10} {r.faces:6d} {r.seconds:8.1f}  {r.error}")
    failed = sum(1 for r in summary if r.status == "failed")
    if len(summary) > failed:
        report_identities(defs, instance, run_config["loggers"])
    return failed


def report_identities(defs, instance, loggers: dict | None = None) -> None:
    """Recompute the identities here (no daemon runs the automation for a command) and say
    what came out."""
    said = rebuild_identities(defs, instance, loggers)
    if said:
        print(f"\n{said}")


def cmd_backfill(args: argparse.Namespace) -> int:
    """Register every video under a folder (or bucket prefix) as a partition and launch a Dagster backfill of
    the per-video job; the daemon (from `reid up`, or a deployment's) runs it, and the UI
    shows and controls it (Runs > Backfills)."""
    from reid_pipeline.ingest.catalog import check_source, register_archive

    settings = Settings()
    prepare(settings)
    store = open_store(settings)
    import dagster as dg

    try:
        check_source(args.source)
    except ValueError as exc:
        print(f"reid: {exc}", file=sys.stderr)
        return 2
    instance = dg.DagsterInstance.get()
    partitions = set(instance.get_dynamic_partitions("videos"))
    registration = register_archive(store, args.source, settings.s3_endpoint_url)
    for where, reason in registration.skipped:
        print(f"skipped {where}: {reason}")
    if not registration.all_keys:
        print("reid: no video to backfill")
        return 0
    missing = [key for key in registration.all_keys if key not in partitions]  # new, or a known video's removed partition
    if missing:
        instance.add_dynamic_partitions("videos", missing)
    print(f"{registration.summary()}: {len(registration.all_keys)} videos under {args.source} are partitions of `videos`")
    if args.register_only:
        print("nothing launched: process them from the UI (Jobs > process_video > Materialize all..., pick "
              "the partitions > Launch backfill), or run `reid backfill` again without --register-only")
        return 0
    keys = missing if args.new_only else registration.all_keys
    if not keys:
        print("reid: no new video to backfill (--new-only)")
        return 0
    batch = settings.backfill_batch if args.batch is None else args.batch
    return launch_backfill(instance, keys, batch, args.tags, args.wait)


def launch_backfill(instance, keys: list[str], batch: int, tags: str | None, wait: float | None) -> int:
    """Launch the per-video job over `keys` for the daemon: batches of `batch` videos a run
    (`backfill_videos`), or with `batch` 1 a Dagster backfill of one run per video; then,
    with `wait` seconds, follow it. The exit status of the command."""
    try:
        if batch > 1:
            backfill_id = launch_batched_backfill(keys, batch, tags)
            print(f"backfill {backfill_id} launched: {len(keys)} videos in batches of {batch}, one `process_video` run "
                  f"per video (UI: /runs?q[]=tag:reid/backfill={backfill_id})")
            filters = [{"reid/backfill": backfill_id}]
        else:
            # one run per video: a Dagster backfill of `process_video`, one per chunk of keys
            filters = []
            for start in range(0, len(keys), BACKFILL_CHUNK):
                chunk = keys[start : start + BACKFILL_CHUNK]
                backfill_id = launch_partition_backfill(chunk, tags)
                filters.append({"dagster/backfill": backfill_id})
                print(f"backfill {backfill_id} launched: {len(chunk)} runs queued; the daemon runs them "
                      f"(UI: Runs > Backfills, or /runs?q[]=tag:dagster/backfill={backfill_id})")
    except LaunchError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if not wait:
        return 0
    outcome = wait_for_backfills(instance, filters, len(keys), wait)
    print(f"{len(outcome.finished)}/{len(keys)} videos finished, {len(outcome.failed)} failed")
    for run in outcome.failed:
        print(f"  failed: {run.tags.get('dagster/partition')} (run {run.run_id})")
    return 0 if outcome.settled and not outcome.failed and len(outcome.finished) >= len(keys) else 1
