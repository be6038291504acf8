#!/usr/bin/env python
"""Peak memory of `reid process` on a long video against a short one (bounded memory).

Renders two generated videos of the same kind (`synthetic.sized`: people walking across
one shot, MJPG), a short one and a long one, and runs `python -m reid_pipeline process` on
each in its own process with a fresh home and embedded database. The peak resident memory
is that of the largest process of the run (the run itself; the embedding workers are
smaller), read with getrusage by a small wrapper process per run.

    .venv/bin/python bench/memory.py [--short-s 60] [--long-s 3600] [--sample-fps 1] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_facts  # bench/machine.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parent.parent


def measure(cmd: list[str], env: dict) -> dict:
    """Run `cmd` in a wrapper process; its wall time and the peak RSS of its largest process."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        "rc = subprocess.run(sys.argv[1:], capture_output=True).returncode\n"
        "print(json.dumps({'rc': rc, 'wall_s': time.perf_counter() - t0,\n"
        "                  'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *cmd], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--short-s", type=float, default=60.0)
    p.add_argument("--long-s", type=float, default=3600.0)
    p.add_argument("--sample-fps", type=float, default=1.0)
    p.add_argument("--fps", type=float, default=2.0, help="frame rate of the rendered videos")
    p.add_argument("--size", default="640x360")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))  # the test-video generator is tests/synthetic.py, not installed
    from tests import synthetic

    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="reid-memory-"))
    rows = []
    for name, seconds in (("short", args.short_s), ("long", args.long_s)):
        video = work / f"{name}.avi"
        t0 = time.perf_counter()
        synthetic.write_video(synthetic.sized(width, height, seconds, people=2, fps=args.fps), video)
        render_s = time.perf_counter() - t0
        env = {k: v for k, v in os.environ.items() if not k.startswith("REID_") and k != "DAGSTER_HOME"}
        env["REID_HOME"] = str(work / f"home-{name}")
        run = measure([sys.executable, "-m", "reid_pipeline", "process", str(video), "--sample-fps", str(args.sample_fps)], env)
        subprocess.run([sys.executable, "-m", "reid_pipeline", "db", "stop"], env=env, capture_output=True)
        if run["rc"]:
            raise SystemExit(f"reid process failed on the {name} video (exit {run['rc']})")
        rows.append({"video": name, "seconds": seconds, "render_s": render_s, **run,
                     "size_mb": video.stat().st_size / 1e6})
        print(f"{name}: {seconds:.0f} s of video, {run['wall_s']:.0f} s to process, peak RSS {run['peak_rss_mb']:.0f} MB",
              flush=True)
        video.unlink()
    ratio = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    table = "\n".join([
        "| video | length | analysed frames | wall s | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
        *(f"| {r['video']} | {r['seconds']:.0f} s | {r['seconds'] * args.sample_fps:.0f} | {r['wall_s']:.0f} | "
          f"{r['peak_rss_mb']:.0f} |" for r in rows),
        f"| long / short | {rows[1]['seconds'] / rows[0]['seconds']:.0f}x | | | **{ratio:.2f}** |",
    ])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps({"machine": machine_facts("dlib", "cv2", "dagster"),
                                                      "args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=1))
    (args.out / "memory.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
