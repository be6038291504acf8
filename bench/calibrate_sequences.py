#!/usr/bin/env python
"""Calibrate the sequence defaults of the dlib backend on real faces.

Data (from <repo>/../shared/data/dev, never copied into the repository):

- the five real clips in dev/clips: one person each, no cuts, so every sequence of a clip
  belongs to its person and fragmentation = sequences per clip; plus "chains" that play
  several clips one after another (the clip boundaries are true cuts between different
  real people);
- videos built from LFW photos with `reid_pipeline.synthetic` (2-3 people per shot, moving,
  crossing, zooming, dimming, a defocus, leaving and coming back, three shots with hard
  cuts, a new photo of a person in every shot). People are split by a fixed rule: sorted
  names, even index = tune, odd index = held-out; the clips likewise by sorted file name.

Every video is analysed once at the project's sample rate with `pipeline.detect_video` +
`pipeline.embed_detections` (dlib), detections are labelled with the ground truth, and the
result is cached under bench/out/calibration/cache (reused while the video, the backend and
this script's CACHE_VERSION stay the same). Then `sequences.build_sequences` is swept over
LinkSettings, the cut threshold and the QualityGate, scored with
`sequences.purity_and_fragmentation` per person per true shot; defaults are chosen on the
tune split only and reported on tune, held-out and the clips.

    .venv/bin/python bench/calibrate_sequences.py [--out bench/out/calibration] [--refresh]

Writes <out>/calibration.md (tables) and <out>/calibration.json (raw numbers). Without the
dev data it says so and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEV = REPO.parent / "shared" / "data" / "dev"
CACHE_VERSION = 1

# Targets of issue 3.
TARGET_PURITY = 0.99
TARGET_FRAGMENTATION = 1.2

# The sweep.
APPEARANCE = (0.06, 0.08, 0.10, 0.12, 0.15, 0.18, 0.22, 0.26, 0.30)
GAPS = (0, 1, 2, 3)
SHIFTS = (1.0, 1.5, 2.0, 2.5, 3.0)
CUTS = (0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60)
GATE_FACE_PX = (0.0, 30.0, 40.0, 50.0, 60.0)
GATE_BLUR = (0.0, 5.0, 10.0, 20.0, 40.0)
GATE_YAW = (30.0, 40.0, 50.0, 60.0, 90.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dev", type=Path, default=DEV, help="dev data folder (default <repo>/../shared/data/dev)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "calibration")
    p.add_argument("--sample-fps", type=float, default=None, help="analysis rate (default: the project's)")
    p.add_argument("--refresh", action="store_true", help="ignore the detection cache")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- machine


def loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def machine_facts() -> dict:
    import cv2
    import dlib

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "dlib": dlib.__version__,
        "opencv": cv2.__version__,
    }


# --------------------------------------------------------------------------- data


@dataclass
class Video:
    """One analysed video: detections (no chips) labelled with person and true shot,
    unit embeddings, the sampled frames with their true shot."""

    name: str
    group: str  # "lfw" or "clip"
    split: str  # "tune" or "held-out"
    detections: object  # polars DataFrame: DETECTION_SCHEMA less chip/landmarks + person, true_shot
    embeddings: object  # (n, 128) float32
    frames: object  # polars DataFrame: frame_index, timestamp_s, faces, cut_score, true_shot
    info: dict = field(default_factory=dict)


def split_of(index: int) -> str:
    return "tune" if index % 2 == 0 else "held-out"


def _hash(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def analyse_cached(name: str, video_path: Path, key_obj: dict, label, backend, sample_fps: float,
                   cache: Path, refresh: bool) -> tuple:
    """(detections, embeddings, frames, info) from the cache, or detect + embed + label now.
    `label(detections) -> (persons, true_shots)`; `true_shot_of_frame(frame_index)` is in it."""
    import numpy as np
    import polars as pl

    from reid_pipeline.pipeline import detect_video, embed_detections

    key = _hash({**key_obj, "backend": backend.describe(), "sample_fps": sample_fps, "v": CACHE_VERSION})
    det_file, frm_file, emb_file, info_file = (cache / f"{name}{s}" for s in
                                               (".detections.parquet", ".frames.parquet", ".npz", ".json"))
    if not refresh and info_file.exists():
        info = json.loads(info_file.read_text())
        if info.get("key") == key and det_file.exists() and frm_file.exists() and emb_file.exists():
            info["cached"] = True
            return pl.read_parquet(det_file), np.load(emb_file)["embeddings"], pl.read_parquet(frm_file), info
    t0 = time.perf_counter()
    run = detect_video(video_path, backend, sample_fps)
    t1 = time.perf_counter()
    vectors = embed_detections(run.detections, backend)
    t2 = time.perf_counter()
    persons, shot_of_frame = label(run.detections)
    det = run.detections.drop("chip", "landmarks").with_columns(
        person=pl.Series(persons, dtype=pl.Utf8),
        true_shot=pl.Series([shot_of_frame(f) for f in run.detections["frame_index"].to_list()], dtype=pl.Int32),
    )
    frames = run.frames.with_columns(
        true_shot=pl.Series([shot_of_frame(f) for f in run.frames["frame_index"].to_list()], dtype=pl.Int32)
    )
    info = {
        "key": key,
        "frames_sampled": run.frames_sampled,
        "detections": run.detections.height,
        "detect_s": round(t1 - t0, 2),
        "embed_s": round(t2 - t1, 2),
        "cached": False,
    }
    cache.mkdir(parents=True, exist_ok=True)
    det.write_parquet(det_file)
    frames.write_parquet(frm_file)
    np.savez_compressed(emb_file, embeddings=vectors)
    info_file.write_text(json.dumps(info))
    return det, vectors, frames, info


# ---- real clips


def clip_videos(dev: Path, backend, sample_fps: float, cache: Path, refresh: bool) -> tuple[list[Video], dict]:
    """The real clips (sorted by name; even index tune, odd held-out) and the colour
    histograms of each clip's first and last sampled frame (for chains)."""
    import numpy as np

    from reid_pipeline.shots import colour_histogram
    from reid_pipeline.video import iter_frames

    out, hists = [], {}
    for i, path in enumerate(sorted((dev / "clips").glob("*.mp4"))):
        name = path.stem
        stat = path.stat()

        def label(detections, _name=name):
            return [_name] * detections.height, (lambda f: 0)

        det, emb, frames, info = analyse_cached(
            f"clip_{name}", path, {"clip": name, "size": stat.st_size, "mtime": int(stat.st_mtime)},
            label, backend, sample_fps, cache, refresh,
        )
        out.append(Video(name, "clip", split_of(i), det, emb, frames, info))
        sampled = list(iter_frames(path, sample_fps))  # decode only: cheap
        hists[name] = (colour_histogram(sampled[0].image), colour_histogram(sampled[-1].image))
        assert len(sampled) == frames.height, (name, len(sampled), frames.height)
        _ = np
    return out, hists


def chain(videos: list[Video], hists: dict, name: str, split: str) -> Video:
    """Clips played one after another as one video: each boundary is a true cut between two
    different real people (the cut score there is computed from the frames themselves)."""
    import numpy as np
    import polars as pl

    from reid_pipeline.shots import cut_score

    dets, embs, frames = [], [], []
    offset, id_offset, prev = 0, 0, None
    for shot, v in enumerate(videos):
        first_hist, last_hist = hists[v.name]
        f = v.frames.with_columns(
            frame_index=pl.col("frame_index") + offset, true_shot=pl.lit(shot, dtype=pl.Int32)
        ).with_columns(timestamp_s=pl.col("frame_index").cast(pl.Float64))
        scores = f["cut_score"].to_list()
        scores[0] = cut_score(prev, first_hist) if prev is not None else 0.0
        f = f.with_columns(cut_score=pl.Series(scores, dtype=pl.Float32))
        d = v.detections.with_columns(
            frame_index=pl.col("frame_index") + offset,
            detection_id=pl.col("detection_id") + id_offset,
            true_shot=pl.lit(shot, dtype=pl.Int32),
        ).with_columns(timestamp_s=pl.col("frame_index").cast(pl.Float64))
        dets.append(d)
        embs.append(v.embeddings)
        frames.append(f)
        offset += int(v.frames["frame_index"].max()) + 1
        id_offset += v.detections.height
        prev = last_hist
    return Video(name, "chain", split, pl.concat(dets), np.concatenate(embs), pl.concat(frames),
                 {"clips": [v.name for v in videos]})


def boundary_scores(videos: list[Video], hists: dict) -> list[dict]:
    """Cut score from the last sampled frame of clip a to the first of clip b, every ordered pair."""
    from reid_pipeline.shots import cut_score

    return [
        {"from": a.name, "to": b.name, "split": a.split if a.split == b.split else "mixed",
         "cut_score": cut_score(hists[a.name][1], hists[b.name][0])}
        for a in videos for b in videos if a is not b
    ]


# ---- LFW-built videos


def lfw_people(dev: Path) -> tuple[dict, dict]:
    """{split: [person, ...]} (sorted names; even index tune, odd held-out) and
    {person: [FacePhoto, ...]}."""
    from reid_pipeline import synthetic

    photos: dict[str, list] = {}
    for p in synthetic.photos_from_folder(dev / "lfw"):
        photos.setdefault(p.person, []).append(p)
    names = sorted(photos)
    split = {"tune": [n for i, n in enumerate(names) if i % 2 == 0],
             "held-out": [n for i, n in enumerate(names) if i % 2 == 1]}
    return split, photos


def lfw_scenes(people: list[str], photos: dict) -> list[tuple[str, object, list]]:
    """Four scene layouts, the same for both splits (only the people differ):
    (layout name, Scene, defocus frame ranges). A person gets a new photo in every shot."""
    from reid_pipeline.synthetic import Actor, Background, Scene, Shot, background_for

    used: dict[str, int] = {}

    def photo(person: str, new_shot: bool = True):
        k = used.get(person, -1) + (1 if new_shot else 0)
        used[person] = k
        pool = photos[person]
        return pool[(3 * k + len(person)) % len(pool)]  # spread over the person's photos

    P = iter(people)
    scenes = []

    # 1. crossing: A and B walk towards each other and cross (B in front); C small below.
    a, b, c = next(P), next(P), next(P)
    pa0, pb0, pc0 = photo(a), photo(b), photo(c)
    pb1, pc1 = photo(b), photo(c)
    pa2, pc2 = photo(a), photo(c)
    scenes.append(("crossing", Scene([
        Shot(30, background_for(0), [
            Actor(pc0, (0.5, 0.82), (0.55, 0.82), scale=0.7),
            Actor(pa0, (0.12, 0.42), (0.88, 0.42)),
            Actor(pb0, (0.88, 0.45), (0.12, 0.45), scale=1.1),
        ]),
        Shot(24, background_for(1), [
            Actor(pb1, (0.3, 0.5), (0.6, 0.5), scale=1.0, end_scale=1.4),
            Actor(pc1, (1.02, 0.45), (0.8, 0.45), enter=10),  # walks in from the right edge
        ]),
        Shot(30, background_for(2), [
            Actor(pa2, (0.28, 0.5), (0.33, 0.5), leave=12),  # leaves for 4 frames and comes back
            Actor(pa2, (0.38, 0.5), (0.42, 0.5), enter=16),
            Actor(pc2, (0.75, 0.45), (0.65, 0.5), brightness=(1.0, 0.7)),
        ]),
    ], size=(960, 540), fps=10.0), []))

    # 2. line-up: three side by side; a fast walker alone; two swap places (crossing).
    a, b, c, d = next(P), next(P), next(P), next(P)
    pa0, pb0, pc0 = photo(a), photo(b), photo(c)
    pd1 = photo(d)
    pa2, pc2 = photo(a), photo(c)
    scenes.append(("line-up", Scene([
        Shot(30, background_for(3), [
            Actor(pa0, (0.2, 0.5), (0.24, 0.48)),
            Actor(pb0, (0.5, 0.5), (0.5, 0.53), brightness=(0.8, 1.2)),
            Actor(pc0, (0.8, 0.5), (0.76, 0.5), scale=1.0, end_scale=0.85),
        ]),
        Shot(20, background_for(4), [Actor(pd1, (-0.02, 0.5), (1.02, 0.5))]),  # crosses in 2 s
        Shot(30, background_for(5), [
            Actor(pa2, (0.2, 0.45), (0.8, 0.45)),
            Actor(pc2, (0.8, 0.55), (0.2, 0.55), scale=1.05),
        ]),
    ], size=(960, 540), fps=10.0), []))

    # 3. same set: every shot on the same backdrop, people change places at each cut (the
    # colour-histogram cut detector cannot see these cuts; appearance must keep them apart).
    a, b, c = next(P), next(P), next(P)
    studio = Background("gradient", (90, 100, 110), (170, 175, 180))
    pa0, pb0 = photo(a), photo(b)
    pc1, pa1 = photo(c), photo(a)
    pb2, pc2 = photo(b), photo(c)
    scenes.append(("same-set", Scene([
        Shot(28, studio, [Actor(pa0, (0.28, 0.5), (0.31, 0.5)), Actor(pb0, (0.72, 0.5), (0.69, 0.5))]),
        Shot(28, studio, [Actor(pc1, (0.29, 0.5), (0.27, 0.5)), Actor(pa1, (0.71, 0.5), (0.73, 0.52))]),
        Shot(28, studio, [Actor(pb2, (0.28, 0.5), (0.3, 0.48)), Actor(pc2, (0.72, 0.5), (0.7, 0.5))]),
    ], size=(640, 480), fps=10.0), []))

    # 4. zoom, defocus, dimming, small faces; a person enters mid-shot and leaves again.
    a, b, c = next(P), next(P), next(P)
    pa0, pb0 = photo(a), photo(b)
    pc1, pa1 = photo(c), photo(a)
    pb2, pc2 = photo(b), photo(c)
    scenes.append(("zoom-blur-small", Scene([
        Shot(30, background_for(0), [
            Actor(pa0, (0.28, 0.5), (0.3, 0.5), scale=0.6, end_scale=1.4),
            Actor(pb0, (0.78, 0.5), (0.74, 0.45)),
        ]),
        Shot(26, background_for(2), [
            Actor(pc1, (0.25, 0.55), (0.6, 0.6), brightness=(1.0, 0.55)),
            Actor(pa1, (0.8, 0.32), (0.78, 0.35), scale=0.8, enter=6, leave=20),
        ]),
        Shot(26, background_for(3), [
            Actor(pb2, (0.1, 0.7), (0.9, 0.7), scale=0.5),
            Actor(pc2, (0.5, 0.3), (0.45, 0.3), scale=0.6),
        ]),
    ], size=(640, 480), fps=10.0), [(10, 21)]))  # camera defocus in frames 10-20
    return scenes


def scene_spec(scene, blur: list) -> dict:
    return {
        "size": scene.size, "fps": scene.fps, "blur": blur,
        "shots": [
            {"frames": s.frames, "background": asdict(s.background),
             "actors": [(a.face.source, a.start, a.end, a.scale, a.end_scale, a.enter, a.leave, a.brightness)
                        for a in s.actors]}
            for s in scene
        ],
    }


def render(scene, blur: list, path: Path):
    """Write the scene (MJPG .avi) and its ground truth; defocus the frames in `blur`."""
    import cv2

    from reid_pipeline import synthetic

    gt = synthetic.write_video(scene, path, save_gt=True)
    if blur:
        tmp = path.with_name(path.stem + ".tmp.avi")
        cap = cv2.VideoCapture(str(path))
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), float(scene.fps), tuple(scene.size))
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if any(lo <= i < hi for lo, hi in blur):
                frame = cv2.GaussianBlur(frame, (0, 0), 2.5)
            writer.write(frame)
            i += 1
        cap.release()
        writer.release()
        tmp.replace(path)
    return gt


def lfw_videos(dev: Path, backend, sample_fps: float, out: Path, refresh: bool) -> tuple[list[Video], dict]:
    from reid_pipeline import synthetic

    split_people, photos = lfw_people(dev)
    videos = []
    for split, people in split_people.items():
        for layout, scene, blur in lfw_scenes(people, photos):
            name = f"lfw_{split}_{layout}"
            path = out / "videos" / f"{name}.avi"
            spec = scene_spec(scene, blur)
            key = _hash(spec)
            stamp = path.with_suffix(".key")
            if refresh or not path.exists() or not stamp.exists() or stamp.read_text() != key:
                gt = render(scene, blur, path)
                stamp.write_text(key)
            else:
                gt = synthetic.GroundTruth.load(path)

            def label(detections, _gt=gt):
                shot_start = [s for s, _ in _gt.shots]
                return _gt.label(detections), (lambda f: sum(1 for s in shot_start[1:] if f >= s))

            det, emb, frames, info = analyse_cached(name, path, {"scene": key}, label, backend, sample_fps,
                                                    out / "cache", refresh)
            info.update(layout=layout, people=sorted({a.face.person for s in scene for a in s.actors}),
                        photos=sorted({a.face.source.rsplit("/", 1)[-1] for s in scene for a in s.actors}),
                        size=list(scene.size), frames=scene.frame_count, fps=scene.fps,
                        true_faces=sum(len(f) for f in gt.frames))
            videos.append(Video(name, "lfw", split, det, emb, frames, info))
    return videos, {"split_people": split_people, "photos_per_person": {p: len(v) for p, v in photos.items()}}


# --------------------------------------------------------------------------- scoring


def score(videos: list[Video], gate, link) -> dict:
    """Pooled scores over videos: purity and fragmentation (per person per TRUE shot, with
    `purity_and_fragmentation`), rejected shares, cuts found/missed, sequences that cross a
    true cut."""
    import numpy as np
    import polars as pl

    from reid_pipeline.sequences import build_sequences, purity_and_fragmentation

    sids, persons, shots = [], [], []
    labelled = rejected = unlabelled = unlabelled_rejected = 0
    crossing = true_cuts = found_cuts = false_cuts = 0
    for v in videos:
        r = build_sequences(v.detections, v.embeddings, v.frames, gate, link)
        f = r.faces.with_columns(person=v.detections["person"], true_shot=v.detections["true_shot"])
        sids += [None if s is None else (v.name, s) for s in f["sequence_id"].to_list()]
        persons += f["person"].to_list()
        shots += [(v.name, s) for s in f["true_shot"].to_list()]
        is_rej = f["reject_reason"].is_not_null()
        has_p = f["person"].is_not_null()
        labelled += int(has_p.sum())
        rejected += int((is_rej & has_p).sum())
        unlabelled += int((~has_p).sum())
        unlabelled_rejected += int((is_rej & ~has_p).sum())
        seq = f.filter(pl.col("sequence_id").is_not_null()).group_by("sequence_id").agg(pl.col("true_shot").n_unique())
        crossing += int((seq["true_shot"] > 1).sum())
        fr = r.frames.sort("frame_index")
        ts, ds = fr["true_shot"].to_numpy(), fr["shot"].to_numpy()
        t_cut, d_cut = np.diff(ts) != 0, np.diff(ds) != 0
        true_cuts += int(t_cut.sum())
        found_cuts += int((t_cut & d_cut).sum())
        false_cuts += int((~t_cut & d_cut).sum())
    pf = purity_and_fragmentation(sids, persons, shots)
    return {
        "purity": pf["purity"],
        "fragmentation": pf["fragmentation"],
        "sequences": pf["sequences"],
        "impure_sequences": pf["impure_sequences"],
        "faces_sequenced": pf["faces"],
        "faces_labelled": labelled,
        "rejected_share": rejected / labelled if labelled else math.nan,
        "unlabelled": unlabelled,
        "unlabelled_rejected": unlabelled_rejected,
        "sequences_crossing_cut": crossing,
        "true_cuts": true_cuts,
        "cuts_found": found_cuts,
        "false_cuts": false_cuts,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.dev / "clips").is_dir() or not (args.dev / "lfw").is_dir():
        print(f"calibrate_sequences: dev data not found at {args.dev} (needs clips/ and lfw/); "
              "nothing to calibrate, skipping.")
        return 0
    sys.path.insert(0, str(REPO))
    from reid_pipeline.config import Settings
    from reid_pipeline.faces import load_backend

    sample_fps = args.sample_fps if args.sample_fps is not None else Settings().sample_fps
    t_start = time.perf_counter()
    backend = load_backend("dlib")
    clips, hists = clip_videos(args.dev, backend, sample_fps, args.out / "cache", args.refresh)
    lfw, lfw_info = lfw_videos(args.dev, backend, sample_fps, args.out, args.refresh)
    print(f"data ready in {time.perf_counter() - t_start:.1f} s")
    for v in clips + lfw:
        print(v.name, v.split, v.info.get("detections"), v.info.get("detect_s"), v.info.get("embed_s"),
              v.info.get("cached"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
