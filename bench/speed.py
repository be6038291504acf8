#!/usr/bin/env python
"""`reid process` against the loop a user would write instead, whole processes, paired runs.

The plain loop (`--plain`, run here in its own process): decode the video with OpenCV, and
on each frame sampled at `--sample-fps`: dlib HOG with upsample 1 on the frame scaled to at
most 1280 px, the 5-point landmarks and the 128-d descriptor of every face; nothing stored.

The project: `python -m reid_pipeline process VIDEO` in its own process, against a warm
Postgres (the embedded server, started once before timing). Each pair gets a new database
and home, in which a 1-s faceless video is processed first, untimed: the timed run analyses
its video from scratch and pays what every `reid process` pays, but not the one-time set-up
of a new home (the tables, Dagster's schema and job snapshot: about 0.5 s, once). With the
project's defaults (whole-frame search every second, tracked faces between, dlib's
descriptor on ONNX Runtime, embedding on a thread while detection goes on).

Each pair runs the plain loop and the project once per backend (`--backends`, default
YuNet + SFace and dlib), back to back (the order alternates); the machine is shared, so
compare within a pair. Reported per video: wall and CPU seconds (the process and its
children), the peak resident memory of the project's process, the ratio project / plain
loop, how fast each runs against real time, and the project's time per step of its
`process_video` run (from Dagster's step statistics).

    .venv/bin/python bench/speed.py VIDEO [VIDEO ...] [--pairs 2] [--sample-fps 4] [--backends yunet_sface dlib] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import loadavg, machine_facts  # bench/machine.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parent.parent


def plain_loop(path: str, sample_fps: float) -> dict:
    """The loop without the project: what a user would write with the same dlib models."""
    import cv2
    import dlib
    import numpy as np

    from reid_pipeline.faces.dlib_backend import _models_dir

    models = _models_dir()
    detector = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    step = fps / sample_fps if sample_fps else 1.0
    index, next_sample, frames, faces = 0, 0.0, 0, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index >= next_sample:
            next_sample += step
            rgb = np.ascontiguousarray(frame[:, :, ::-1])
            scale = min(1.0, 1280 / max(rgb.shape[:2]))
            small = rgb if scale == 1.0 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            for r in detector(small, 1):
                box = dlib.rectangle(int(r.left() / scale), int(r.top() / scale), int(r.right() / scale), int(r.bottom() / scale))
                encoder.compute_face_descriptor(rgb, shape(rgb, box))
                faces += 1
            frames += 1
        index += 1
    return {"frames": frames, "faces": faces}


# runs `cmd` in its own wrapper process, so that getrusage's peak RSS is this command's alone
_WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "t0 = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "wall = time.perf_counter() - t0\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'rc': done.returncode, 'wall_s': wall, 'cpu_s': u.ru_utime + u.ru_stime,\n"
    "                  'peak_rss_mb': u.ru_maxrss / 1024, 'out': (done.stdout + done.stderr)[-2000:]}))\n"
)


def timed(cmd: list[str], env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], env=env, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result.pop("rc"):
        raise RuntimeError(f"{cmd} failed:\n{result['out']}")
    return result


_STEPS = (
    "import json, dagster as dg\n"
    "from reid_pipeline.cli.environment import prepare\n"
    "from reid_pipeline.config import Settings\n"
    "prepare(Settings())\n"
    "with dg.DagsterInstance.get() as instance:\n"
    "    run = instance.get_runs(filters=dg.RunsFilter(job_name='process_video'), limit=1)[0]\n"
    "    print(json.dumps({s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(run.run_id)}))\n"
)


def step_times(env: dict) -> dict:
    """Seconds per step of the home's latest `process_video` run."""
    done = subprocess.run([sys.executable, "-c", _STEPS], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def warm_up_video(folder: Path) -> Path:
    """A 1-s faceless video (grey frames) for the untimed first run of a new home."""
    import cv2
    import numpy as np

    path = folder / "warm-up.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(10):
        writer.write(np.full((240, 320, 3), 100 + i, np.uint8))
    writer.release()
    return path


def project_env(home: Path, url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REID_") and k != "DAGSTER_HOME"}
    return {**env, "REID_HOME": str(home), "REID_DATABASE_URL": url}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("videos", nargs="*")
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--sample-fps", type=float, default=4.0)
    p.add_argument("--backends", nargs="+", default=["yunet_sface", "dlib"])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    p.add_argument("--plain", help=argparse.SUPPRESS)  # run the plain loop on this video, in this process
    args = p.parse_args(argv)
    if args.plain:
        print(json.dumps(plain_loop(args.plain, args.sample_fps)))
        return 0
    import psycopg

    from reid_pipeline.database import embedded_server
    from reid_pipeline.ingest.video import probe

    facts = machine_facts("dlib", "cv2", "dagster", "onnxruntime")
    work = Path(tempfile.mkdtemp(prefix="reid-speed-"))
    server = embedded_server(work / "pgdata")
    base_url = server.get_uri()
    warm_up = warm_up_video(work)
    python = sys.executable
    results = []
    try:
        for n, video in enumerate(args.videos):
            info = probe(video)
            pairs = []
            for i in range(args.pairs):
                plain_cmd = [python, str(Path(__file__).resolve()), "--plain", video, "--sample-fps", str(args.sample_fps)]
                order = [("plain", plain_cmd, None)]
                for backend in args.backends:
                    database = f"speed_{n}_{i}_{backend}"
                    with psycopg.connect(base_url, autocommit=True) as conn:
                        conn.execute(f"CREATE DATABASE {database}")
                    env = {**project_env(work / f"home-{n}-{i}-{backend}", base_url.replace("@/postgres?", f"@/{database}?", 1)),
                           "REID_FACE_BACKEND": backend}
                    project_cmd = [python, "-m", "reid_pipeline", "process", video, "--sample-fps", str(args.sample_fps)]
                    timed(project_cmd[:4] + [str(warm_up)], env)  # the new home's one-time set-up, untimed
                    order.append((backend, project_cmd, env))
                runs = {}
                for name, cmd, env in order if i % 2 == 0 else order[::-1]:
                    runs[name] = timed(cmd, env or project_env(work, base_url))
                    runs[name]["load"] = loadavg()[0]
                    if env is not None:
                        runs[name]["steps"] = step_times(env)
                for backend in args.backends:
                    runs[backend]["ratio_wall"] = runs[backend]["wall_s"] / runs["plain"]["wall_s"]
                    runs[backend]["ratio_cpu"] = runs[backend]["cpu_s"] / runs["plain"]["cpu_s"]
                print(f"{Path(video).name} pair {i + 1}: plain {runs['plain']['wall_s']:.1f} s; " + "; ".join(
                    f"{b} {runs[b]['wall_s']:.1f} s (ratio {runs[b]['ratio_wall']:.2f}, {runs[b]['peak_rss_mb']:.0f} MB)"
                    for b in args.backends), flush=True)
                pairs.append(runs)
            results.append({"video": video, "duration_s": info.duration_s, "size": f"{info.width}x{info.height}",
                            "codec": info.codec, "pairs": pairs})
    finally:
        server.stop()
    facts["loadavg_end"] = loadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps({"machine": facts, "sample_fps": args.sample_fps, "results": results},
                                                   indent=1, default=str))
    lines = ["| video | pair | plain loop: wall s (CPU s) | backend | `reid process`: wall s (CPU s) | peak RSS MB | "
             "ratio wall (CPU) | real time: plain / project | per step, s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for i, pr in enumerate(r["pairs"], 1):
            pl_ = pr["plain"]
            for backend in args.backends:
                pj = pr[backend]
                steps = ", ".join(f"{k} {v:.1f}" for k, v in pj["steps"].items())
                lines.append(f"| {Path(r['video']).name} ({r['size']} {r['codec']}, {r['duration_s']:.1f} s) | {i} | "
                             f"{pl_['wall_s']:.1f} ({pl_['cpu_s']:.1f}) | {backend} | {pj['wall_s']:.1f} ({pj['cpu_s']:.1f}) | "
                             f"{pj['peak_rss_mb']:.0f} | **{pj['ratio_wall']:.2f}** ({pj['ratio_cpu']:.2f}) | "
                             f"{r['duration_s'] / pl_['wall_s']:.2f}x / **{r['duration_s'] / pj['wall_s']:.2f}x** | {steps} |")
        for backend in args.backends:
            ratios = [pr[backend]["ratio_wall"] for pr in r["pairs"]]
            lines.append(f"| median of {len(ratios)} | | | {backend} | | | {statistics.median(ratios):.2f} | | |")
    table = "\n".join(lines)
    (args.out / "speed.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
