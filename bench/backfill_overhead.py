"""What a backfill costs in Dagster overhead per video: one run per video against batches.

For each `--batches` value it starts the real stack (`reid up`: embedded Postgres, which
also holds the Dagster instance's storage, schema `dagster`; webserver + daemon) in a fresh
temp home, launches one
backfill of the same N generated short videos with `reid backfill <folder> --batch B --wait`,
then reads every video's run and step events from the instance:

- B = 1: a Dagster backfill of `process_video`, one run (one new process) per video;
- B > 1: one `backfill_videos` run; batches of B videos per process, still one
  `process_video` run per video (assets/backfill.py).

Per video: step time (the sum of the steps' own durations: what the assets compute), run
wall and in-run overhead (run wall - steps: run creation, resource init, event writes), slot
time (backfill wall x 2 slots / videos: runs at once for B = 1, batch steps at once for B > 1)
and the Dagster overhead = slot time - step time. It checks every video's partition is
materialised and extrapolates a 1,000-video backfill from the per-video figures.
Usage: .venv/bin/python bench/backfill_overhead.py [--videos 200] [--batches 1 25]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each generated video")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 25],
                        help="videos per process to measure: 1 = one run per video (a Dagster backfill of process_video)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "backfill"))
    args = parser.parse_args()

    import dagster as dg
    import yaml

    from reid_pipeline.database import stop_embedded
    from tests import synthetic

    root = Path(tempfile.mkdtemp(prefix="reid-bf-", dir="/tmp"))
    archive = root / "archive"
    t0 = time.perf_counter()
    for i in range(args.videos):
        scene = synthetic.two_people_walking(seconds=args.seconds) if i % 2 == 0 else synthetic.faceless(seconds=args.seconds)
        # each file distinct (so none is a duplicate): vary the background seed
        scene = synthetic.Scene(
            [synthetic.Shot(s.frames, synthetic.background_for(i), s.actors, s.shapes) for s in scene],
            size=scene.size, fps=scene.fps,
        )
        synthetic.write_video(scene, archive / f"clip_{i:04d}.avi")
    print(f"{args.videos} videos of {args.seconds} s written in {time.perf_counter() - t0:.1f} s")
    concurrency = yaml.safe_load((ROOT / "dagster.yaml").read_text())["concurrency"]["runs"]["max_concurrent_runs"]
    results = {}
    for batch in args.batches:
        results[f"batch_{batch}"] = measure(root / f"batch_{batch}", archive, batch, args.videos, concurrency, dg, stop_embedded)
        print(json.dumps(results[f"batch_{batch}"]["summary"], indent=2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "backfill.json").write_text(json.dumps(results, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    print("\n| | " + " | ".join(results) + " |")
    for name in ("backfill_wall_s", "step_s_mean", "slot_s_per_video", "overhead_per_video_s", "extrapolated_1000_videos_min",
                 "extrapolated_1000_overhead_min", "partitions_materialized"):
        print(f"| {name} | " + " | ".join(f"{r['summary'][name]:.3f}" if isinstance(r["summary"][name], float)
                                           else str(r["summary"][name]) for r in results.values()) + " |")
    return 0


def measure(home_root: Path, archive: Path, batch: int, videos: int, concurrency: int, dg, stop_embedded) -> dict:
    """`reid up` in a fresh home, `reid backfill --batch N --wait`, then each video's run and
    steps from the instance."""
    env = {
        **os.environ,
        "REID_HOME": str(home_root / "home"),
        "REID_INBOX": str(home_root / "inbox"),
        "DAGSTER_HOME": str(home_root / "home" / "dagster_home"),
        "REID_FACE_BACKEND": "dlib",
        "REID_SAMPLE_FPS": "2",
        "REID_SENSOR_INTERVAL": "30",
    }
    env.pop("REID_DATABASE_URL", None)
    home_root.mkdir(parents=True)
    port = 3390
    log = open(home_root / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "reid_pipeline.cli", "up", "--port", str(port)], cwd=ROOT, env=env,
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).close()
                break
            except OSError as exc:
                if time.time() > deadline or up.poll() is not None:
                    raise RuntimeError("the stack did not come up; see " + str(home_root / "up.log")) from exc
                time.sleep(1)
        t_launch = time.time()
        result = subprocess.run([sys.executable, "-m", "reid_pipeline.cli", "backfill", str(archive), "--batch", str(batch),
                                 "--wait", "7200"], cwd=ROOT, env=env, capture_output=True, text=True)
        t_return = time.time()
        wall = t_return - t_launch
        print(result.stdout[-600:])
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            raise RuntimeError(f"backfill --batch {batch} failed")
        backfill_id = next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("backfill ") and "launched" in line)
        tag = "dagster/backfill" if batch == 1 else "reid/backfill"

        from reid_pipeline.cli.instance import URL_VARIABLE, storage_url
        from reid_pipeline.database import embedded_url

        # the stack's instance as `reid` opens it (its storage URL is what `reid` exports)
        os.environ[URL_VARIABLE] = storage_url(embedded_url(home_root / "home" / "pgdata"))
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            records = [r for r in instance.get_run_records(filters=dg.RunsFilter(tags={tag: backfill_id}))
                       if "dagster/partition" in r.dagster_run.tags]
            keys = [r.dagster_run.tags["dagster/partition"] for r in records]
            rows = []
            for rec in records:
                steps = instance.get_records_for_run(rec.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS).records
                step_s = sum(r.event_log_entry.dagster_event.event_specific_data.duration_ms for r in steps) / 1000
                rows.append({
                    "run_s": rec.end_time - rec.start_time,
                    "step_s": step_s,
                    "overhead_s": rec.end_time - rec.start_time - step_s,
                })
            timeline = batch_timeline(instance, tag, backfill_id, records, t_launch) if batch > 1 else {}
            if timeline:
                timeline["run_end_to_cli_return_s"] += t_return - t_launch
            from assets.partitions import videos as videos_def

            status = instance.get_status_by_partition(dg.AssetKey("cross_video_matches"), keys, videos_def) or {}
            materialized = sum(1 for v in status.values() if v is not None and v.value == "MATERIALIZED")
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
        stop_embedded(home_root / "home" / "pgdata")
        log.close()

    def stats(key: str) -> dict:
        values = sorted(r[key] for r in rows)
        return {"mean": statistics.mean(values), "p50": statistics.median(values),
                "p95": values[min(len(values) - 1, int(0.95 * len(values)))]}

    # Slots: runs at once (one run per video) or batch steps at once (backfill_videos), 2 either way here.
    # A run's recorded start is after its process has started and loaded the code location,
    # so the launch cost only shows in the backfill's wall time: each slot spends
    # wall * slots / videos per video; what is not the steps' own compute is overhead.
    slots = concurrency
    slot_s = wall * slots / videos
    summary = {
        "videos": videos,
        "batch": batch,
        "runs_per_video": len(rows) / videos,
        "backfill_wall_s": wall,
        "slots": slots,
        "run_s": stats("run_s"),
        "step_s": stats("step_s"),
        "step_s_mean": stats("step_s")["mean"],
        "in_run_overhead_s": stats("overhead_s"),
        "slot_s_per_video": slot_s,
        "overhead_per_video_s": slot_s - stats("step_s")["mean"],
        "extrapolated_1000_videos_min": 1000 * wall / videos / 60,
        "extrapolated_1000_overhead_min": 1000 * (slot_s - stats("step_s")["mean"]) / slots / 60,
        "partitions_materialized": materialized,
        "timeline": timeline,
        "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"),
        "cores": os.cpu_count(),
    }
    return {"summary": summary, "runs": rows}


def batch_timeline(instance, tag: str, backfill_id: str, video_runs: list, t_launch: float) -> dict:
    """Where the wall time of a `backfill_videos` run goes, outside the video runs: from the
    launch to the run's start (queue, daemon tick, run process), each batch step from its
    start to its first video run (the step process: fork or start, imports, code location)
    and the time between consecutive video runs of a step (creating the next run), and from
    the last video run to the end of the backfill's run (summarise_backfill)."""
    import dagster as dg

    run = next(r for r in instance.get_run_records(filters=dg.RunsFilter(tags={tag: backfill_id}, job_name="backfill_videos")))
    starts = {}
    for rec in instance.get_records_for_run(run.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START).records:
        starts[rec.event_log_entry.step_key] = rec.event_log_entry.timestamp
    by_step: dict[str, list] = {}
    for rec in video_runs:
        step = rec.dagster_run.tags.get("reid/batch_step", ":").split(":", 1)[1]
        by_step.setdefault(step, []).append(rec)
    step_startup, gaps = [], []
    for step, recs in by_step.items():
        recs.sort(key=lambda r: r.start_time)
        if step in starts:  # the tag names the step: process_batch[batch_0000]
            step_startup.append(recs[0].start_time - starts[step])
        gaps += [b.start_time - a.end_time for a, b in zip(recs, recs[1:])]
    last_video_end = max(r.end_time for r in video_runs)
    return {
        "launch_to_run_start_s": run.start_time - t_launch,
        "launch_to_run_created_s": run.create_timestamp.timestamp() - t_launch,  # the CLI: imports, registering the videos
        "run_start_to_first_batch_step_s": min((t for k, t in starts.items() if k.startswith("process_batch")), default=0) - run.start_time,
        "batch_step_start_to_first_video_s": step_startup,
        "between_video_runs_s_mean": statistics.mean(gaps) if gaps else 0.0,
        "last_video_to_run_end_s": run.end_time - last_video_end,
        "run_end_to_cli_return_s": t_launch + 0 - run.end_time,  # filled in by the caller
    }


if __name__ == "__main__":
    sys.exit(main())
