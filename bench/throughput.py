#!/usr/bin/env python
"""Throughput of the dlib backend on a generated video, from raw parts to the Dagster job.

One run, one process, one video; four measurements at each analysis rate:

1. decode only   `video.iter_frames(path, sample_fps)`, frames counted and dropped
2. model only    `backend.detect` on frames decoded beforehand (held in memory), then
                 `backend.embed` on all their chips (batches of 64, as the pipeline does)
3. core pipeline `detection.detect_video` + `detection.embed_detections` (adds chip JPEG
                 encode/decode, blur measure, the polars frame)
4. Dagster job   `process_video` from definitions.py via `execute_in_process`, ephemeral
                 instance, embedded Postgres + pgvector in a temp REID_HOME

and the ratios core / (decode + model) and Dagster / (decode + model). Wall and CPU time
(this process, all threads) are both kept: the machine may be shared, CPU time is the
steadier of the two. The face models are loaded once, before any timing (load time is
reported on its own).

    .venv/bin/python bench/throughput.py [--seconds 10] [--sample-fps 4] [--every-frame] [--out bench/out]

Writes <out>/throughput.md (the table) and <out>/throughput.json (raw numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import loadavg, machine_facts  # bench/machine.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="video length (default 10)")
    p.add_argument("--fps", type=float, default=10.0, help="video frame rate (default 10)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--people", type=int, default=3)
    p.add_argument("--sample-fps", type=float, default=None,
                   help="analysis rate (default: the project's, Settings().sample_fps; 0 = every frame)")
    p.add_argument("--every-frame", action="store_true", help="also measure at sample_fps 0 (every frame)")
    p.add_argument("--repeats", type=int, default=3, help="repeats of the cheap measurement (decode); median kept")
    p.add_argument("--heavy-repeats", type=int, default=1,
                   help="repeats of model / core / Dagster (each takes tens of seconds on 2 cores); median kept")
    p.add_argument("--no-dagster", action="store_true", help="skip the Dagster job (no Postgres needed)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- helpers


class Timer:
    """Wall (perf_counter) and CPU (process_time: this process, all its threads) seconds."""

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


def median(values):
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------- measurements


def measure_decode(path: Path, sample_fps: float, repeats: int) -> dict:
    from reid_pipeline.ingest.video import iter_frames

    runs = []
    for _ in range(repeats):
        with Timer() as t:
            n = sum(1 for _ in iter_frames(path, sample_fps))
        runs.append({"wall_s": t.wall, "cpu_s": t.cpu, "frames": n})
    return {"runs": runs, "frames": runs[0]["frames"], "wall_s": median([r["wall_s"] for r in runs]),
            "cpu_s": median([r["cpu_s"] for r in runs])}


def measure_model(path: Path, sample_fps: float, backend, repeats: int, batch: int = 64) -> dict:
    from reid_pipeline.ingest.video import iter_frames

    images = [f.image for f in iter_frames(path, sample_fps)]  # decoded beforehand, untimed
    runs = []
    for _ in range(repeats):
        per_frame_ms, chips = [], []
        with Timer() as td:
            for image in images:
                t0 = time.perf_counter()
                found = backend.detect(image)
                per_frame_ms.append(1000 * (time.perf_counter() - t0))
                chips.extend(d.chip for d in found)
        with Timer() as te:
            for start in range(0, len(chips), batch):
                backend.embed(chips[start : start + batch])
        runs.append({
            "detect_wall_s": td.wall, "detect_cpu_s": td.cpu, "embed_wall_s": te.wall, "embed_cpu_s": te.cpu,
            "faces": len(chips), "detect_ms_per_frame": per_frame_ms,
        })
    faces = runs[0]["faces"]
    out = {"runs": runs, "frames": len(images), "faces": faces}
    for k in ("detect_wall_s", "detect_cpu_s", "embed_wall_s", "embed_cpu_s"):
        out[k] = median([r[k] for r in runs])
    all_ms = sorted(ms for r in runs for ms in r["detect_ms_per_frame"])
    out["detect_ms_per_frame_median"] = median(all_ms)
    out["detect_ms_per_frame_p90"] = all_ms[int(0.9 * (len(all_ms) - 1))] if all_ms else float("nan")
    out["embed_ms_per_face"] = 1000 * out["embed_wall_s"] / faces if faces else float("nan")
    del images
    return out


def measure_core(path: Path, sample_fps: float, backend, repeats: int) -> dict:
    from reid_pipeline.faces.detection import detect_video, embed_detections

    runs = []
    for _ in range(repeats):
        with Timer() as td:
            run = detect_video(path, backend, sample_fps)
        with Timer() as te:
            vectors = embed_detections(run.detections, backend)
        runs.append({
            "detect_video_wall_s": td.wall, "detect_video_cpu_s": td.cpu,
            "embed_detections_wall_s": te.wall, "embed_detections_cpu_s": te.cpu,
            "wall_s": td.wall + te.wall, "cpu_s": td.cpu + te.cpu,
            "frames": run.frames_sampled, "faces": int(vectors.shape[0]),
            # detect_video's own split; the rest of its wall is chip JPEG + blur + rows
            "decode_s": run.decode_s, "detect_s": run.detect_s,
            "rows_s": td.wall - run.decode_s - run.detect_s,
        })
    out = {"runs": runs, "frames": runs[0]["frames"], "faces": runs[0]["faces"]}
    for k in runs[0]:
        if k.endswith("_s"):
            out[k] = median([r[k] for r in runs])
    return out


def measure_dagster(job, instance, key: str, sample_fps: float, repeats: int) -> dict:
    run_config = {
        "ops": {"frame_detections": {"config": {"sample_fps": sample_fps}}},
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    runs = []
    for _ in range(repeats):
        with Timer() as t:
            result = job.execute_in_process(
                partition_key=key, instance=instance, run_config=run_config, raise_on_error=False
            )
        if not result.success:
            failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
            msg = failures[0].step_failure_data.error.message if failures else "run failed"
            raise RuntimeError(f"process_video failed: {msg}")
        # step wall times from the event log's timestamps
        starts, steps = {}, {}
        for entry in instance.all_logs(result.run_id):
            ev = entry.dagster_event
            if ev is None or ev.step_key is None:
                continue
            if ev.event_type_value == "STEP_START":
                starts[ev.step_key] = entry.timestamp
            elif ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and ev.step_key in starts:
                steps[ev.step_key] = entry.timestamp - starts[ev.step_key]
        metadata = {
            e.asset_key.to_user_string(): {
                k: v.value for k, v in e.materialization.metadata.items() if isinstance(v.value, (int, float, str))
                and k not in ("preview", "first_frame", "path", "source_uri", "sha256")
            }
            for e in result.get_asset_materialization_events()
        }
        runs.append({
            "wall_s": t.wall, "cpu_s": t.cpu, "steps_s": steps,
            "outside_steps_s": t.wall - sum(steps.values()), "metadata": metadata,
            "frames": metadata["frame_detections"]["frames_sampled"], "faces": metadata["face_embeddings"]["faces"],
        })
    best = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]  # the median run, kept whole
    return {"runs": runs, "median_run": best, "frames": best["frames"], "faces": best["faces"],
            "wall_s": best["wall_s"], "cpu_s": best["cpu_s"]}


# --------------------------------------------------------------------------- report


def fmt(v, nd=2):
    return "–" if v is None or v != v else f"{v:.{nd}f}"


def table(results: dict) -> str:
    lines = []
    for label, r in results.items():
        d, m, c, g = r["decode"], r["model"], r.get("core"), r.get("dagster")
        frames, faces = m["frames"], m["faces"]
        base = d["wall_s"] + m["detect_wall_s"] + m["embed_wall_s"]
        base_cpu = d["cpu_s"] + m["detect_cpu_s"] + m["embed_cpu_s"]
        rows = [
            ("decode only", d["wall_s"], d["cpu_s"], d["frames"], "–",
             f"median of {len(d['runs'])}"),
            ("model only: detect", m["detect_wall_s"], m["detect_cpu_s"], frames, faces,
             f"{fmt(m['detect_ms_per_frame_median'], 0)} ms/frame median, p90 {fmt(m['detect_ms_per_frame_p90'], 0)}"),
            ("model only: embed", m["embed_wall_s"], m["embed_cpu_s"], frames, faces,
             f"{fmt(m['embed_ms_per_face'], 0)} ms/face"),
            ("**decode + model**", base, base_cpu, frames, faces, "sum of the three rows above"),
        ]
        if c:
            rows.append(("core: detect_video", c["detect_video_wall_s"], c["detect_video_cpu_s"], c["frames"], c["faces"],
                         f"decode {fmt(c['decode_s'])} + detect {fmt(c['detect_s'])} + chip JPEG/blur/rows {fmt(c['rows_s'])} s"))
            rows.append(("core: embed_detections", c["embed_detections_wall_s"], c["embed_detections_cpu_s"],
                         c["frames"], c["faces"], "incl. chip JPEG decode"))
            rows.append(("**core pipeline**", c["wall_s"], c["cpu_s"], c["frames"], c["faces"],
                         f"ratio to decode + model **{fmt(c['wall_s'] / base)}** (CPU {fmt(c['cpu_s'] / base_cpu)})"))
        if g:
            steps = g["median_run"]["steps_s"]
            split = ", ".join(f"{k} {fmt(v)}" for k, v in steps.items())
            rows.append(("**Dagster process_video**", g["wall_s"], g["cpu_s"], g["frames"], g["faces"],
                         f"ratio to decode + model **{fmt(g['wall_s'] / base)}** (CPU {fmt(g['cpu_s'] / base_cpu)}); "
                         f"steps: {split}; outside steps {fmt(g['median_run']['outside_steps_s'])} s"))
        lines.append(f"\n**{label}**\n")
        lines.append("| measurement | wall s | CPU s | frames | faces | analysed fps | ms / frame | notes |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for name, wall, cpu, n, nf, note in rows:
            fps = n / wall if wall else float("nan")
            lines.append(f"| {name} | {fmt(wall)} | {fmt(cpu)} | {n} | {nf} | {fmt(fps, 1)} | {fmt(1000 * wall / n, 0)} | {note} |")
        if g:
            md = g["median_run"]["metadata"]
            fd, fe, rv = md.get("frame_detections", {}), md.get("face_embeddings", {}), md.get("raw_video", {})
            lines.append(
                f"\nDagster asset metadata (median run): raw_video probe_and_hash_s {rv.get('probe_and_hash_s')}, "
                f"frame_detections decode_s {fd.get('decode_s')} detect_s {fd.get('detect_s')} "
                f"(frames_per_processing_s {fd.get('frames_per_processing_s')}), face_embeddings embed_s {fe.get('embed_s')} "
                f"({fe.get('ms_per_face')} ms/face) db_write_s {fe.get('db_write_s')}."
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    # A short path under /tmp: the embedded Postgres puts its Unix socket in pgdata.
    home = Path(tempfile.mkdtemp(prefix="reid-bench-", dir="/tmp"))
    # Settings are read from the environment when definitions/resources are imported: set first.
    os.environ["REID_HOME"] = str(home)
    os.environ["REID_FACE_BACKEND"] = "dlib"
    os.environ["REID_INBOX"] = str(home / "inbox")
    os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
    for var in ("REID_DATABASE_URL", "REID_DATA_ROOT"):
        os.environ.pop(var, None)
    (home / "inbox").mkdir()
    (home / "dagster_home").mkdir()
    sys.path.insert(0, str(REPO))

    from reid_pipeline.config import Settings
    from reid_pipeline.faces import load_backend
    from reid_pipeline.ingest.video import probe
    from tests import synthetic

    settings = Settings()
    rates = [settings.sample_fps if args.sample_fps is None else args.sample_fps]
    if args.every_frame and 0.0 not in rates:
        rates.append(0.0)

    import cv2
    import dlib

    facts = machine_facts("dlib", "cv2", "numpy", "polars", "dagster")
    facts["dlib_avx"] = bool(getattr(dlib, "USE_AVX_INSTRUCTIONS", False))
    facts["opencv_threads"] = cv2.getNumThreads()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()), flush=True)

    pgdata = home / "pgdata"
    pg_started = False
    report: dict = {"machine": facts, "args": {k: str(v) for k, v in vars(args).items()}, "timings": {}}
    try:
        video = home / "bench.avi"
        with Timer() as t:
            scene = synthetic.sized(args.width, args.height, args.seconds, people=args.people, fps=args.fps)
            gt = synthetic.write_video(scene, video)
        info = probe(video)
        workload = {
            "video": f"{info.width}x{info.height}, {info.duration_s:.1f} s at {info.fps:g} fps "
                     f"({info.frame_count} frames), {info.codec} in .avi, {info.size_bytes / 1e6:.1f} MB",
            "people": args.people,
            "faces_in_ground_truth": sum(len(f) for f in gt.frames),
            "people_ids": sorted({f.person for fr in gt.frames for f in fr}),
            "sample_rates": rates,
            "render_s": t.wall,
        }
        report["workload"] = workload
        print(f"workload: {workload}", flush=True)

        with Timer() as t:
            backend = load_backend("dlib")
        report["timings"]["model_load_s"] = t.wall
        print(f"dlib backend loaded in {t.wall:.2f} s: {backend.describe()}", flush=True)

        job = instance = key = None
        if not args.no_dagster:
            import dagster as dg

            from reid_pipeline.database import embedded_url
            from reid_pipeline.ingest.sources import uri_for
            from reid_pipeline.store import Store

            with Timer() as t:
                url = embedded_url(pgdata)
                pg_started = True
                Store(url).migrate(settings.sql_dir)
            report["timings"]["postgres_start_and_migrate_s"] = t.wall
            with Timer() as t:
                from definitions import defs
                from resources import build_resources

                job = defs.get_job_def("process_video")
                # Warm the resource's model cache (functools.cache) so runs do not pay model
                # load: in one `reid process` it is paid once per process.
                build_resources()["face_model"].get()
            report["timings"]["definitions_import_and_resource_model_load_s"] = t.wall
            instance = dg.DagsterInstance.ephemeral()
            key = "bench_throughput"
            Store(url).register_video(key, uri_for(video))
            instance.add_dynamic_partitions("videos", [key])
            print(f"postgres + definitions ready ({report['timings']['postgres_start_and_migrate_s']:.1f} s, "
                  f"{report['timings']['definitions_import_and_resource_model_load_s']:.1f} s)", flush=True)

        results: dict = {}
        for rate in rates:
            label = f"sample_fps {rate:g}" if rate else "every frame (sample_fps 0)"
            r: dict = {"sample_fps": rate}
            print(f"\n== {label}", flush=True)
            r["decode"] = measure_decode(video, rate, args.repeats)
            print(f"decode: {r['decode']['frames']} frames in {r['decode']['wall_s']:.3f} s", flush=True)
            r["model"] = measure_model(video, rate, backend, args.heavy_repeats)
            print(f"model: detect {r['model']['detect_wall_s']:.2f} s, embed {r['model']['embed_wall_s']:.2f} s "
                  f"({r['model']['faces']} faces)", flush=True)
            r["core"] = measure_core(video, rate, backend, args.heavy_repeats)
            print(f"core: {r['core']['wall_s']:.2f} s", flush=True)
            if job is not None:
                r["dagster"] = measure_dagster(job, instance, key, rate, args.heavy_repeats)
                print(f"dagster: {r['dagster']['wall_s']:.2f} s, steps {r['dagster']['median_run']['steps_s']}",
                      flush=True)
            results[label] = r
        report["results"] = results
    finally:
        if pg_started:
            from reid_pipeline.database import stop_embedded

            stop_embedded(pgdata)
        shutil.rmtree(home, ignore_errors=True)

    facts["loadavg_end"] = loadavg()
    report["timings"]["total_s"] = time.perf_counter() - t_start

    text = [
        "# Throughput (dlib, CPU)",
        "",
        f"Machine: {facts['cpu']}, {facts['cores_usable']} usable cores, {facts['memory_gb']} GB; "
        f"Python {facts['python']}, dlib {facts['dlib']}, OpenCV {facts['opencv']}, Dagster {facts['dagster']}; "
        f"load average {facts['loadavg_start']} at start, {facts['loadavg_end']} at end.",
        "",
        f"Workload: {report['workload']['video']}; {args.people} people walking "
        f"({', '.join(report['workload']['people_ids'])}); sample rates {rates} (0 = every frame). "
        f"Model load {report['timings']['model_load_s']:.2f} s (not in the table). "
        f"Heavy measurements repeated {args.heavy_repeats}x, decode {args.repeats}x (median).",
        table(results),
        "",
        f"Whole benchmark: {report['timings']['total_s']:.0f} s.",
    ]
    md = "\n".join(text)
    print("\n" + md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.md").write_text(md + "\n")
    (args.out / "throughput.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out / 'throughput.md'} and {args.out / 'throughput.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
