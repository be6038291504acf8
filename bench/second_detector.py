#!/usr/bin/env python
"""What a second detector pass would cost and gain on hard footage (dlib, CPU).

On generated videos with truth (make_videos.py, `--profile hard`: faces 40-120 px, blur,
noise), for every sampled frame: dlib HOG as the pipeline runs it (upsample 1, frame at
most 1280 px), then dlib's CNN (MMOD) face detector from face-recognition-models, (a) on
every frame and (b) only on frames where HOG found fewer faces than ... nobody can know the
truth at run time, so (b) is "frames where HOG found nobody". Reports recall (IoU >= 0.5
with a true face) by face height for HOG, HOG + CNN on every frame, HOG + CNN where HOG
found nobody, and the milliseconds per frame of each detector.

    .venv/bin/python bench/second_detector.py /tmp/reid-accuracy/videos/hard-s1-n4 [--frames 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from accuracy import HEIGHT_BINS, truth_on_frame  # bench/accuracy.py
from machine import machine_facts

from reid_pipeline.faces.base import box_iou


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", type=Path)
    ap.add_argument("--frames", type=int, default=60, help="sampled frames to test (spread over the videos)")
    ap.add_argument("--upsample", type=int, default=0, help="CNN upsampling (1 finds smaller faces, 4x the cost)")
    args = ap.parse_args(argv)
    import dlib

    from reid_pipeline.faces import load_backend
    from reid_pipeline.faces.dlib_backend import _models_dir
    from reid_pipeline.ingest.video import iter_frames

    truth = json.loads((args.videos / "truth.json").read_text())
    hog = load_backend("dlib")
    cnn = dlib.cnn_face_detection_model_v1(str(_models_dir() / "mmod_human_face_detector.dat"))
    frames = [(v, f) for v in truth["videos"] for f in iter_frames(args.videos / v["file"], 4)]
    step = max(1, len(frames) // args.frames)
    names = [f"{lo}-{hi}" if hi < 10_000 else f">{lo}" for lo, hi in HEIGHT_BINS]
    counts = {k: {n: [0, 0] for n in names} for k in ("hog", "hog+cnn every frame", "hog+cnn where hog found nobody")}
    t_hog = t_cnn = 0.0
    empty = 0
    picked = frames[::step][: args.frames]
    for video, frame in picked:
        people = truth_on_frame(video).get(frame.index, ([], []))[0]
        t0 = time.perf_counter()
        h = [d.box for d in hog.detect(frame.image)]
        t1 = time.perf_counter()
        rgb = np.ascontiguousarray(frame.image[:, :, ::-1])
        c = [(r.rect.left(), r.rect.top(), r.rect.right() + 1, r.rect.bottom() + 1) for r in cnn(rgb, args.upsample)]
        t2 = time.perf_counter()
        t_hog += t1 - t0
        t_cnn += t2 - t1
        empty += not h
        for _, _, box in people:
            height = box[3] - box[1]
            name = next(n for n, (lo, hi) in zip(names, HEIGHT_BINS) if lo <= height < hi)
            found_h = any(box_iou(box, b) >= 0.5 for b in h)
            found_c = any(box_iou(box, b) >= 0.5 for b in c)
            for key, hit in (("hog", found_h), ("hog+cnn every frame", found_h or found_c),
                             ("hog+cnn where hog found nobody", found_h or (found_c and not h))):
                counts[key][name][0] += 1
                counts[key][name][1] += hit
    n = len(picked)
    print(f"{n} sampled frames of {args.videos.name} ({empty} where HOG found nobody); "
          f"HOG {1000 * t_hog / n:.0f} ms/frame, CNN (upsample {args.upsample}) {1000 * t_cnn / n:.0f} ms/frame; "
          f"{machine_facts()['cpu']}\n")
    print("| detectors | " + " | ".join(f"recall {b} px" for b in names) + " | recall |\n|---|" + "---|" * (len(names) + 1))
    for key, by in counts.items():
        total = sum(v[0] for v in by.values())
        cells = [f"{v[1] / v[0]:.3f} ({v[0]})" if v[0] else "n/a" for v in by.values()]
        print(f"| {key} | " + " | ".join(cells) + f" | {sum(v[1] for v in by.values()) / total:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
