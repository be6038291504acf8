#!/usr/bin/env python
"""Calibrate a face model's thresholds of the set-to-set matching measures on real faces (`--backend`).

Data (from <repo>/../shared/data/dev, never copied into the repository), all turned into
sequences with `sequences.tracking.build_sequences` at the library's current defaults:

- LFW-built videos where the same people come back in several videos, each time with a
  different photo: the 8 videos of bench/calibrate_sequences.py (reused with their cache)
  plus 12 short "recurrence" videos per split built here (2 shots, 3.8-5.1 s, 1-3 people per
  shot: side by side, small faces, zoom, crossing, a dimmed close-up with a defocus). People
  are split as in calibrate_sequences (sorted names, even = tune, odd = held-out); every
  person of a split appears in at least 2 videos with different photos.
- the five real clips (dev/clips), each cut in two halves that count as two videos: the
  halves of one clip are same-person pairs of real footage, any two clips a must-not-match.

Each sequence is labelled with the majority ground-truth person of its faces. Every pair of
sequences of one set (different videos, or the same video without overlapping spans) is
scored with the three measures of `reid_pipeline.identities.matching` (quality weights of the faces).
Per measure the threshold is chosen on the tune split only (lowest threshold with pairwise
precision >= 0.99) and reported on held-out and on the clips, together with the oracle
recall at precision 0.99 on held-out, ROC-AUC, score distributions, and the identities
(`identities.clustering.cluster` + BCubed) that the thresholds give.

    .venv/bin/python bench/calibrate_matching.py [--out bench/out/matching] [--refresh]

Writes <out>/matching.md (tables), <out>/matching.json (raw numbers, precision/recall curves)
and <out>/pairs.json (every scored pair). Without the dev data it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from machine import loadavg, machine_facts  # bench/machine.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parent.parent
DEV = REPO.parent / "shared" / "data" / "dev"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import calibrate_sequences as cs  # noqa: E402  (the videos, the cache, the clips)

# The target set for matching.
TARGET_PRECISION = 0.99
TARGET_RECALL = 0.90
MIN_FACES = (5, 3)  # headline: sequences with at least 5 usable faces; also reported: 3
GRID = tuple(round(-0.2 + 0.001 * i, 3) for i in range(1201))  # similarity thresholds -0.200..1.000 (dlib lives above 0.7, SFace lower)
RECURRENCE_VIDEOS = 12  # per split
TIE = 0.005  # held-out recalls closer than this count as a tie (then the simpler method wins)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dev", type=Path, default=DEV, help="dev data folder (default <repo>/../shared/data/dev)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "matching")
    p.add_argument("--sequences-out", type=Path, default=REPO / "bench" / "out" / "calibration",
                   help="where calibrate_sequences keeps its videos and cache (reused)")
    p.add_argument("--sample-fps", type=float, default=None, help="analysis rate (default: the project's)")
    p.add_argument("--refresh", action="store_true", help="re-render and re-detect this script's own videos")
    p.add_argument("--backend", default="yunet_sface", choices=["yunet_sface", "dlib"])
    return p.parse_args(argv)


# --------------------------------------------------------------------------- recurrence videos


def _shot_pair(ph, n, bg):
    """Two people side by side, drifting; the right one dims."""
    from tests.synthetic import Actor, Shot

    return Shot(n, bg, [Actor(ph[0], (0.28, 0.5), (0.33, 0.5)),
                        Actor(ph[1], (0.72, 0.5), (0.68, 0.52), scale=0.9, brightness=(1.0, 0.75))]), None


def _shot_trio_small(ph, n, bg):
    """Three small faces (55-65 px) in a row."""
    from tests.synthetic import Actor, Shot

    return Shot(n, bg, [Actor(ph[0], (0.18, 0.5), (0.2, 0.48), scale=0.55),
                        Actor(ph[1], (0.5, 0.5), (0.5, 0.53), scale=0.65),
                        Actor(ph[2], (0.82, 0.5), (0.8, 0.5), scale=0.6, brightness=(0.9, 1.15))]), None


def _shot_zoom_walk(ph, n, bg):
    """One person zooms in (60 -> 140 px), another walks in from the right edge."""
    from tests.synthetic import Actor, Shot

    return Shot(n, bg, [Actor(ph[0], (0.3, 0.5), (0.3, 0.5), scale=0.6, end_scale=1.4),
                        Actor(ph[1], (1.02, 0.5), (0.72, 0.5), enter=4)]), None


def _shot_cross(ph, n, bg):
    """Two people walk towards each other and cross; the second covers the first."""
    from tests.synthetic import Actor, Shot

    return Shot(n, bg, [Actor(ph[0], (0.15, 0.45), (0.85, 0.45)),
                        Actor(ph[1], (0.85, 0.5), (0.15, 0.5), scale=1.1)]), None


def _shot_close_dim(ph, n, bg):
    """A close-up that dims to 55 %, with a camera defocus in the middle third."""
    from tests.synthetic import Actor, Shot

    return Shot(n, bg, [Actor(ph[0], (0.5, 0.5), (0.47, 0.5), scale=1.5, brightness=(1.0, 0.55))]), (n // 3, n // 3 + 5)


SHOT_LAYOUTS = ((2, _shot_pair), (3, _shot_trio_small), (2, _shot_zoom_walk), (2, _shot_cross), (1, _shot_close_dim))


def recurrence_scenes(split: str, people: list[str], photos: dict, used: set[str]) -> tuple[list, dict]:
    """RECURRENCE_VIDEOS short two-shot scenes per split: (name, Scene, defocus ranges).

    People are dealt from seeded shuffles of the split's people, preferring someone not yet
    in the video; every appearance gets a photo of that person that no other video or shot
    uses (`used` holds the photos of calibrate_sequences' videos)."""
    import numpy as np

    from tests.synthetic import Scene, background_for

    rng = np.random.default_rng(11 if split == "tune" else 12)
    queue: list[str] = []
    taken = set(used)
    step: dict[str, int] = {}

    def photo(person: str):
        pool = [p for p in photos[person] if p.source not in taken]
        if not pool:  # never happens with 20 photos each; reuse rather than fail
            pool = photos[person]
        k = step.get(person, 0)
        step[person] = k + 1
        p = pool[(len(person) + 7 * k) % len(pool)]  # spread over the person's photos
        taken.add(p.source)
        return p

    scenes, appearances = [], {}
    for v in range(RECURRENCE_VIDEOS):
        in_video: set[str] = set()
        shots, blur, offset = [], [], 0
        lengths = (18 + 3 * (v % 4), 20 + 2 * (v % 3))
        for s in range(2):
            count, make = SHOT_LAYOUTS[(2 * v + s) % len(SHOT_LAYOUTS)]
            chosen: list[str] = []
            for _ in range(count):
                if len(queue) < count + 4:
                    queue += [str(x) for x in rng.permutation(people)]
                pick = next((q for q in queue if q not in in_video and q not in chosen), None)
                pick = pick or next(q for q in queue if q not in chosen)
                queue.remove(pick)
                chosen.append(pick)
                in_video.add(pick)
            faces = [photo(p) for p in chosen]
            name = f"match_{split}_{v:02d}"
            for p, f in zip(chosen, faces):
                appearances.setdefault(p, []).append((name, s, f.source.rsplit("/", 1)[-1]))
            shot, defocus = make(faces, lengths[s], background_for(2 * v + s + (v % 3)))
            if defocus:
                blur.append((offset + defocus[0], offset + defocus[1]))
            shots.append(shot)
            offset += lengths[s]
        size = (640, 480) if v % 2 == 0 else (960, 540)
        scenes.append((f"match_{split}_{v:02d}", Scene(shots, size=size, fps=10.0), blur))
    return scenes, appearances


def recurrence_videos(dev: Path, backend, sample_fps: float, out: Path, refresh: bool) -> tuple[list, dict]:
    split_people, photos = cs.lfw_people(dev)
    videos, info = [], {}
    for split, people in split_people.items():
        used = {a.face.source for _, scene, _ in cs.lfw_scenes(people, photos) for sh in scene for a in sh.actors}
        scenes, appearances = recurrence_scenes(split, people, photos, used)
        info[split] = {"appearances": appearances}
        for name, scene, blur in scenes:
            det, emb, frames, vinfo = cs.analyse_scene(name, scene, blur, out, backend, sample_fps, refresh)
            vinfo.update(layout="recurrence", people=sorted({a.face.person for s in scene for a in s.actors}),
                         photos=sorted({a.face.source.rsplit("/", 1)[-1] for s in scene for a in s.actors}),
                         size=list(scene.size), frames=scene.frame_count, fps=scene.fps)
            videos.append(cs.Video(name, "lfw", split, det, emb, frames, vinfo))
    return videos, info


def clip_halves(clips: list) -> list:
    """Each real clip cut at its middle sampled frame into two videos ("<clip>#1", "#2")."""
    import polars as pl

    out = []
    for v in clips:
        frames = v.frames.sort("frame_index")
        cut = int(frames["frame_index"][frames.height // 2])
        for half, keep in ((1, pl.col("frame_index") < cut), (2, pl.col("frame_index") >= cut)):
            mask = v.detections.select(keep.alias("k"))["k"].to_numpy()
            f = frames.filter(keep)
            f = f.with_columns(cut_score=pl.Series([0.0] + f["cut_score"].to_list()[1:], dtype=pl.Float32))
            out.append(cs.Video(f"{v.name}#{half}", "clip", v.split, v.detections.filter(pl.Series(mask)),
                                v.embeddings[mask], f, {"clip": v.name, "half": half}))
    return out


# --------------------------------------------------------------------------- sequences and pairs


@dataclass
class Seq:
    uid: int
    video: str
    group: str
    split: str
    sequence_number: int
    person: str | None
    purity: float
    face_count: int
    start_frame: int
    end_frame: int
    vectors: object = field(repr=False)
    weights: object = field(repr=False)


def sequences_of(videos: list, gate, link, start_uid: int = 0) -> list[Seq]:
    import numpy as np

    from reid_pipeline.faces.base import l2_normalise
    from reid_pipeline.sequences.tracking import build_sequences

    out = []
    for v in videos:
        r = build_sequences(v.detections, v.embeddings, v.frames, gate, link)
        sid = r.faces["sequence_number"].to_list()
        weights = r.faces["quality_weight"].to_numpy()
        persons = v.detections["person"].to_list()
        vectors = l2_normalise(v.embeddings)
        for row in r.sequences.iter_rows(named=True):
            rows = [i for i, s in enumerate(sid) if s == row["sequence_number"]]
            labels = [persons[i] for i in rows]
            person = max(sorted(set(labels), key=str), key=labels.count)
            out.append(Seq(start_uid + len(out), v.name, v.group, v.split, row["sequence_number"], person,
                           labels.count(person) / len(labels), row["face_count"], row["start_frame"],
                           row["end_frame"], vectors[rows], np.asarray(weights[rows], np.float64)))
    return [s for s in out if s.person is not None]


def score_pairs(left: list[Seq], right: list[Seq] | None = None) -> tuple[list[dict], dict]:
    """Every pair of `left` (or every left x right pair) that matching would score: different
    videos, or the same video without overlapping spans. Returns the pairs and the scoring
    time per method."""
    from reid_pipeline.identities.matching import METHODS, similarity, spans_overlap

    if right is None:
        todo = [(a, b) for i, a in enumerate(left) for b in left[i + 1:]]
    else:
        todo = [(a, b) for a in left for b in right]
    todo = [(a, b) for a, b in todo
            if a.video != b.video or not spans_overlap(a.start_frame, a.end_frame, b.start_frame, b.end_frame)]
    pairs = [{"a": a.uid, "b": b.uid, "same": a.person == b.person, "same_video": a.video == b.video,
              "min_faces": min(a.face_count, b.face_count), "scores": {}} for a, b in todo]
    seconds = {}
    for m in METHODS:
        t0 = time.perf_counter()
        for p, (a, b) in zip(pairs, todo):
            p["scores"][m] = similarity(m, a.vectors, b.vectors, a.weights, b.weights)
        seconds[m] = time.perf_counter() - t0
    return pairs, seconds


# --------------------------------------------------------------------------- metrics


def curve(pairs: list[dict], method: str) -> dict:
    """Precision and recall at every threshold of GRID (score >= threshold is a link)."""
    import numpy as np

    s = np.array([p["scores"][method] for p in pairs])
    y = np.array([p["same"] for p in pairs], bool)
    g = np.array(GRID)
    pred = s[None, :] >= g[:, None]
    tp = (pred & y).sum(1)
    fp = (pred & ~y).sum(1)
    npos = int(y.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        recall = tp / npos if npos else np.full(len(g), np.nan)
        f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + (npos - tp)), 0.0)
    return {"threshold": g, "tp": tp, "fp": fp, "positives": npos, "negatives": int((~y).sum()),
            "precision": precision, "recall": recall, "f1": f1}


def at(pairs: list[dict], method: str, threshold: float) -> dict:
    tp = sum(1 for p in pairs if p["same"] and p["scores"][method] >= threshold)
    fp = sum(1 for p in pairs if not p["same"] and p["scores"][method] >= threshold)
    npos = sum(1 for p in pairs if p["same"])
    cross = [p for p in pairs if p["same"] and not p["same_video"]]
    tp_cross = sum(1 for p in cross if p["scores"][method] >= threshold)
    return {"threshold": threshold, "pairs": len(pairs), "positives": npos, "negatives": len(pairs) - npos,
            "tp": tp, "fp": fp, "fn": npos - tp,
            "precision_ci95": wilson(tp, tp + fp), "recall_ci95": wilson(tp, npos),
            "precision": tp / (tp + fp) if tp + fp else math.nan,
            "recall": tp / npos if npos else math.nan,
            "cross_video_positives": len(cross),
            "cross_video_recall": tp_cross / len(cross) if cross else math.nan}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k / n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def choose_threshold(c: dict) -> tuple[float, str]:
    """The lowest threshold with precision >= TARGET_PRECISION; else the best F1."""
    import numpy as np

    ok = np.flatnonzero(np.nan_to_num(c["precision"], nan=-1) >= TARGET_PRECISION)
    if len(ok):
        return float(c["threshold"][ok.min()]), f"lowest threshold with tune precision >= {TARGET_PRECISION}"
    i = int(np.argmax(c["f1"]))
    return float(c["threshold"][i]), f"no threshold reaches precision {TARGET_PRECISION} on tune: best F1"


def oracle(c: dict) -> dict:
    """Best recall at precision >= TARGET_PRECISION (chosen on the data it is measured on)."""
    import numpy as np

    ok = np.flatnonzero(np.nan_to_num(c["precision"], nan=-1) >= TARGET_PRECISION)
    if not len(ok):
        return {"recall": 0.0, "threshold": None}
    best = ok[np.argmax(c["recall"][ok])]
    # the lowest threshold that gives that recall at that precision
    return {"recall": float(c["recall"][best]), "threshold": float(c["threshold"][best]),
            "precision": float(c["precision"][best])}


def auc(pairs: list[dict], method: str) -> float:
    from sklearn.metrics import roc_auc_score

    y = [p["same"] for p in pairs]
    if all(y) or not any(y):
        return math.nan
    return float(roc_auc_score(y, [p["scores"][method] for p in pairs]))


def distribution(pairs: list[dict], method: str) -> dict:
    import numpy as np

    out = {}
    for label, same in (("same", True), ("different", False)):
        v = np.array([p["scores"][method] for p in pairs if p["same"] == same])
        out[label] = ({"n": len(v), "min": float(v.min()), "p1": float(np.percentile(v, 1)),
                       "median": float(np.median(v)), "p99": float(np.percentile(v, 99)), "max": float(v.max())}
                      if len(v) else {"n": 0})
    return out


def identities(seqs: list[Seq], pairs: list[dict], method: str, threshold: float, shuffles: int = 3) -> dict:
    """identities.cluster over every scored pair; BCubed against the true people; the same
    clusters for shuffled inputs?"""
    import random

    from reid_pipeline.identities.clustering import Link, bcubed, cluster

    ids = [s.uid for s in seqs]
    links = [Link(p["a"], p["b"], p["scores"][method]) for p in pairs]
    labels = cluster(ids, links, threshold)
    truth = {s.uid: s.person for s in seqs}
    precision, recall = bcubed(labels, truth)
    rng = random.Random(4)
    stable = True
    for _ in range(shuffles):
        i2, l2 = ids[:], [Link(l.b, l.a, l.score) if rng.random() < 0.5 else l for l in links]
        rng.shuffle(i2)
        rng.shuffle(l2)
        stable &= cluster(i2, l2, threshold) == labels
    return {"bcubed_precision": precision, "bcubed_recall": recall, "clusters": len(set(labels.values())),
            "people": len(set(truth.values())), "sequences": len(ids), "shuffle_stable": stable}


# --------------------------------------------------------------------------- report


def fmt(x, d=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{d}f}"


def jsonable(obj):
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else round(float(obj), 6)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.dev / "clips").is_dir() or not (args.dev / "lfw").is_dir():
        print(f"calibrate_matching: dev data not found at {args.dev} (needs clips/ and lfw/); "
              "nothing to calibrate, skipping.")
        return 0
    import functools

    from reid_pipeline.config import Settings
    from reid_pipeline.faces import load_backend
    from reid_pipeline.faces.thresholds import thresholds_for
    from reid_pipeline.identities import matching
    from reid_pipeline.sequences.tracking import gate_for, link_settings_for

    t_start = time.perf_counter()
    facts = machine_facts("dlib", "cv2", "onnxruntime")
    sample_fps = args.sample_fps if args.sample_fps is not None else Settings().sample_fps
    print(f"machine: {facts}", flush=True)
    cs.lfw_people = functools.lru_cache(maxsize=None)(cs.lfw_people)  # finding faces in 620 photos once is enough

    # ---- data: analysed once, cached (calibrate_sequences' cache for its videos, ours for the rest)
    backend = load_backend(args.backend)
    model = backend.model_name
    clips, _ = cs.clip_videos(args.dev, backend, sample_fps, args.sequences_out / "cache", False)
    base, lfw_info = cs.lfw_videos(args.dev, backend, sample_fps, args.sequences_out, False)
    extra, recurrence_info = recurrence_videos(args.dev, backend, sample_fps, args.out, args.refresh)
    t_data = time.perf_counter() - t_start
    analysed = [v for v in clips + base + extra if not v.info.get("cached")]
    print(f"data ready in {t_data:.1f} s ({len(analysed)} videos analysed, "
          f"{len(clips) + len(base) + len(extra) - len(analysed)} from the cache)", flush=True)

    gate, link = gate_for(model), link_settings_for(model)
    lfw = base + extra
    sets_videos = {"tune": [v for v in lfw if v.split == "tune"],
                   "held-out": [v for v in lfw if v.split == "held-out"],
                   "clips": clip_halves(clips)}
    seqs: dict[str, list[Seq]] = {}
    uid = 0
    for k, vs in sets_videos.items():
        seqs[k] = sequences_of(vs, gate, link, uid)
        uid += 10_000
    by_uid = {s.uid: s for ss in seqs.values() for s in ss}
    usable = {k: [s for s in ss if s.face_count >= min(MIN_FACES)] for k, ss in seqs.items()}
    pairs, cost = {}, {}
    for k, ss in usable.items():
        pairs[k], cost[k] = score_pairs(ss)
    # extra must-not-match evidence: real clip halves against every LFW sequence
    pairs["clips x LFW"], cost["clips x LFW"] = score_pairs(usable["clips"], usable["tune"] + usable["held-out"])
    n_pairs = sum(len(p) for p in pairs.values())
    per_pair_us = {m: 1e6 * sum(c[m] for c in cost.values()) / n_pairs for m in matching.METHODS}
    print(f"scored {n_pairs} pairs; per pair (us): {per_pair_us}", flush=True)

    # coverage: each person of a split in >= 2 videos with different photos?
    coverage = {}
    for split in ("tune", "held-out"):
        for person in lfw_info["split_people"][split]:
            vids = sorted({v.name for v in sets_videos[split] if person in v.info.get("people", [])})
            photos = sorted({ph for v in sets_videos[split] for ph in v.info.get("photos", [])
                             if ph.startswith(person + "_")})
            seq_videos = sorted({s.video for s in usable[split] if s.person == person and s.face_count >= MIN_FACES[0]})
            coverage[person] = {"split": split, "videos": vids, "photos": photos, "videos_with_5_face_sequences":
                                seq_videos}
    thin = [p for p, c in coverage.items() if len(c["videos_with_5_face_sequences"]) < 2]
    print(f"people in < 2 videos with a >= 5-face sequence: {thin or 'none'}", flush=True)

    def subset(k: str, m: int) -> list[dict]:
        return [p for p in pairs[k] if p["min_faces"] >= m]

    # ---- per method: threshold on tune (>= 5 faces), reported everywhere
    results: dict = {}
    for method in matching.METHODS:
        c_tune = curve(subset("tune", MIN_FACES[0]), method)
        threshold, rule = choose_threshold(c_tune)
        r = {"threshold": threshold, "rule": rule, "current_threshold": thresholds_for(model).match[method]}
        for m in MIN_FACES:
            for k in ("tune", "held-out", "clips", "clips x LFW"):
                ps = subset(k, m)
                c = curve(ps, method)
                r[f"{k} >= {m}"] = {"at_threshold": at(ps, method, threshold),
                                    "at_current_threshold": at(ps, method, r["current_threshold"]),
                                    "oracle_at_precision": oracle(c), "roc_auc": auc(ps, method),
                                    "distribution": distribution(ps, method),
                                    "curve": {x: c[x] for x in ("threshold", "precision", "recall", "tp", "fp")}}
                r[f"{k} >= {m}"]["sensitivity"] = [at(ps, method, round(threshold + d, 3))
                                                   for d in (-0.01, -0.005, 0.0, 0.005, 0.01)]
                r[f"{k} >= {m}"]["closest_impostors"] = [
                    {"score": p["scores"][method], "a": by_uid[p["a"]].person, "video_a": by_uid[p["a"]].video,
                     "b": by_uid[p["b"]].person, "video_b": by_uid[p["b"]].video}
                    for p in sorted((p for p in ps if not p["same"]), key=lambda p: -p["scores"][method])[:5]]
                r[f"{k} >= {m}"]["weakest_same_person"] = [
                    {"score": p["scores"][method], "person": by_uid[p["a"]].person, "video_a": by_uid[p["a"]].video,
                     "video_b": by_uid[p["b"]].video}
                    for p in sorted((p for p in ps if p["same"]), key=lambda p: p["scores"][method])[:5]]
            for k in ("tune", "held-out", "clips"):
                ss = [s for s in usable[k] if s.face_count >= m]
                r[f"{k} >= {m}"]["identities"] = identities(ss, subset(k, m), method, threshold)
        results[method] = r
        h, cl = r[f"held-out >= {MIN_FACES[0]}"], r[f"clips >= {MIN_FACES[0]}"]
        print(f"{method}: threshold {threshold:.3f} ({rule}); held-out P {fmt(h['at_threshold']['precision'])} "
              f"R {fmt(h['at_threshold']['recall'])} (oracle R {fmt(h['oracle_at_precision']['recall'])}); clips "
              f"P {fmt(cl['at_threshold']['precision'])} R {fmt(cl['at_threshold']['recall'])}", flush=True)

    # ---- the default method: best held-out recall among those with held-out precision >= target
    head = f"held-out >= {MIN_FACES[0]}"
    meeting = [m for m in matching.METHODS
               if (results[m][head]["at_threshold"]["precision"] or 0) >= TARGET_PRECISION]
    if meeting:
        best_recall = max(results[m][head]["at_threshold"]["recall"] for m in meeting)
        default = next(m for m in matching.METHODS  # METHODS runs from the simplest to the most involved
                       if m in meeting and results[m][head]["at_threshold"]["recall"] >= best_recall - TIE)
        default_rule = (f"highest held-out recall at the tune threshold among methods with held-out precision >= "
                        f"{TARGET_PRECISION} (ties within {TIE} -> the simpler)")
    else:
        f1 = {m: 2 * results[m][head]["at_threshold"]["tp"] / (2 * results[m][head]["at_threshold"]["tp"]
                                                               + results[m][head]["at_threshold"]["fp"]
                                                               + results[m][head]["at_threshold"]["fn"])
              for m in matching.METHODS}
        default = max(matching.METHODS, key=lambda m: (round(f1[m], 3), -matching.METHODS.index(m)))
        default_rule = f"no method reaches held-out precision {TARGET_PRECISION}: best held-out F1"
    recommended = {m: round(results[m]["threshold"], 3) for m in matching.METHODS}
    facts["loadavg_end"] = loadavg()
    total_s = time.perf_counter() - t_start

    # ---- workload facts
    def workload(k: str, m: int) -> dict:
        ss = [s for s in usable[k] if s.face_count >= m]
        ps = subset(k, m)
        return {"videos": len(sets_videos[k]), "sequences": len(ss), "people": len({s.person for s in ss}),
                "pairs": len(ps), "same_person_pairs": sum(p["same"] for p in ps),
                "cross_video_same_person_pairs": sum(p["same"] and not p["same_video"] for p in ps),
                "faces": sum(s.face_count for s in ss),
                "impure_sequences": sum(1 for s in ss if s.purity < 1)}

    work = {f"{k} >= {m}": workload(k, m) for m in MIN_FACES for k in ("tune", "held-out", "clips")}
    work["all sequences (any size)"] = {k: len(v) for k, v in seqs.items()}
    report = {
        "machine": facts, "sample_fps": sample_fps, "backend": backend.describe(), "total_s": total_s,
        "data_s": t_data, "videos_analysed_now": [v.name for v in analysed],
        "targets": {"precision": TARGET_PRECISION, "recall": TARGET_RECALL, "min_faces": MIN_FACES[0]},
        "sequence_settings": {"gate": gate.__dict__, "link": link.__dict__},
        "workload": work, "coverage": coverage, "recurrence": recurrence_info,
        "scoring_us_per_pair": per_pair_us,
        "results": results, "recommended": {f"thresholds.MODELS['{model}'].match": recommended, "DEFAULT_METHOD": default,
                                            "rule": default_rule},
        "sequences": {k: [{x: getattr(s, x) for x in ("uid", "video", "sequence_number", "person", "purity",
                                                      "face_count", "start_frame", "end_frame")} for s in ss]
                      for k, ss in seqs.items()},
    }

    # ---- markdown
    M = MIN_FACES[0]
    md = [f"# Matching calibration ({args.backend}, {model}), {time.strftime('%Y-%m-%d')}", "",
          f"Machine: {facts['cpu']}, {facts['cores_usable']} usable cores; Python {facts['python']}, dlib "
          f"{facts['dlib']}, OpenCV {facts['opencv']}; load average {facts['loadavg_start']} at start, "
          f"{facts['loadavg_end']} at end; total {total_s:.0f} s (data {t_data:.0f} s, {len(analysed)} videos "
          "analysed now, the rest cached).", "",
          f"Sample rate {sample_fps:g} fps; sequences by `build_sequences` at the current defaults. Target: pairwise "
          f"precision >= {TARGET_PRECISION} at recall >= {TARGET_RECALL} on sequences of >= {M} usable faces. "
          "Thresholds chosen on tune (>= 5 faces) only.", "", "## Workload", "",
          "| set | min faces | videos | sequences | people | pairs | same-person (cross-video) | faces | impure seq. |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in MIN_FACES:
        for k in ("tune", "held-out", "clips"):
            w = work[f"{k} >= {m}"]
            md.append(f"| {k} | {m} | {w['videos']} | {w['sequences']} | {w['people']} | {w['pairs']} | "
                      f"{w['same_person_pairs']} ({w['cross_video_same_person_pairs']}) | {w['faces']} | "
                      f"{w['impure_sequences']} |")
    md += ["", f"Plus {len(subset('clips x LFW', M))} must-not-match pairs of real clip halves against LFW sequences "
           f"(>= {M} faces).", "", f"## Thresholds and accuracy (sequences >= {M} faces)", "",
           "| method | threshold (tune) | tune P / R | held-out P / R | held-out TP / FP / FN | held-out oracle R @ P0.99 "
           "(thr.) | clips P / R | clips x LFW false links | AUC tune / held-out / clips |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for method in matching.METHODS:
        r = results[method]
        t, h, cl, x = (r[f"{k} >= {M}"] for k in ("tune", "held-out", "clips", "clips x LFW"))
        o = h["oracle_at_precision"]
        md.append(f"| {method} | {r['threshold']:.3f} | {fmt(t['at_threshold']['precision'])} / "
                  f"{fmt(t['at_threshold']['recall'])} | {fmt(h['at_threshold']['precision'])} / "
                  f"{fmt(h['at_threshold']['recall'])} | {h['at_threshold']['tp']} / {h['at_threshold']['fp']} / "
                  f"{h['at_threshold']['fn']} | {fmt(o['recall'])} ({fmt(o.get('threshold'))}) | "
                  f"{fmt(cl['at_threshold']['precision'])} / {fmt(cl['at_threshold']['recall'])} | "
                  f"{x['at_threshold']['fp']} / {x['at_threshold']['negatives']} | {fmt(t['roc_auc'], 4)} / "
                  f"{fmt(h['roc_auc'], 4)} / {fmt(cl['roc_auc'], 4)} |")
    md += ["", "95 % Wilson intervals on held-out at the chosen threshold: " + "; ".join(
        f"{m} precision {fmt(results[m][f'held-out >= {M}']['at_threshold']['precision_ci95'][0])}-"
        f"{fmt(results[m][f'held-out >= {M}']['at_threshold']['precision_ci95'][1])}, recall "
        f"{fmt(results[m][f'held-out >= {M}']['at_threshold']['recall_ci95'][0])}-"
        f"{fmt(results[m][f'held-out >= {M}']['at_threshold']['recall_ci95'][1])}" for m in matching.METHODS) + ".",
        "", "Cross-video same-person pairs only (held-out recall at the chosen threshold): " + ", ".join(
        f"{m} {fmt(results[m][f'held-out >= {M}']['at_threshold']['cross_video_recall'])}" for m in matching.METHODS)
        + ".", "", f"Sensitivity (>= {M} faces): precision / recall a little either side of the chosen threshold", "",
        "| method | set | -0.010 | -0.005 | chosen | +0.005 | +0.010 |", "|---|---|---:|---:|---:|---:|---:|"]
    for method in matching.METHODS:
        for k in ("tune", "held-out", "clips x LFW"):
            cells = []
            for a in results[method][f"{k} >= {M}"]["sensitivity"]:
                cells.append(f"{a['fp']} false links" if k == "clips x LFW"
                             else f"{fmt(a['precision'])} / {fmt(a['recall'])}")
            md.append(f"| {method} | {k} | " + " | ".join(cells) + " |")
    md += ["", f"Closest impostors and weakest same-person pairs (>= {M} faces, default method {default}):", "",
           "| set | closest impostors (score: a / b) | weakest same-person pairs (score: person) |", "|---|---|---|"]
    for k in ("tune", "held-out", "clips", "clips x LFW"):
        d = results[default][f"{k} >= {M}"]
        md.append(f"| {k} | " + "; ".join(f"{x['score']:.3f}: {x['a']} / {x['b']}" for x in d["closest_impostors"][:3])
                  + " | " + "; ".join(f"{x['score']:.3f}: {x['person']}" for x in d["weakest_same_person"][:3]) + " |")
    md += ["", f"Same thresholds on sequences >= {MIN_FACES[1]} faces (the pipeline's `min_faces` default):", "",
           "| method | tune P / R | held-out P / R | held-out TP / FP / FN | held-out oracle R @ P0.99 | clips P / R |",
           "|---|---:|---:|---:|---:|---:|"]
    for method in matching.METHODS:
        r = results[method]
        t, h, cl = (r[f"{k} >= {MIN_FACES[1]}"] for k in ("tune", "held-out", "clips"))
        md.append(f"| {method} | {fmt(t['at_threshold']['precision'])} / {fmt(t['at_threshold']['recall'])} | "
                  f"{fmt(h['at_threshold']['precision'])} / {fmt(h['at_threshold']['recall'])} | "
                  f"{h['at_threshold']['tp']} / {h['at_threshold']['fp']} / {h['at_threshold']['fn']} | "
                  f"{fmt(h['oracle_at_precision']['recall'])} | {fmt(cl['at_threshold']['precision'])} / "
                  f"{fmt(cl['at_threshold']['recall'])} |")
    md += ["", "At today's thresholds in `thresholds.MODELS` (>= 5 faces):", "",
           "| method | current threshold | held-out P / R | clips P / R |", "|---|---:|---:|---:|"]
    for method in matching.METHODS:
        r = results[method]
        h, cl = r[f"held-out >= {M}"]["at_current_threshold"], r[f"clips >= {M}"]["at_current_threshold"]
        md.append(f"| {method} | {r['current_threshold']:.2f} | {fmt(h['precision'])} / {fmt(h['recall'])} | "
                  f"{fmt(cl['precision'])} / {fmt(cl['recall'])} |")
    md += ["", f"## Score distributions (>= {M} faces): same person vs different people", "",
           "| method | set | same: n | min | median | max | different: n | min | median | p99 | max |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for method in matching.METHODS:
        for k in ("tune", "held-out", "clips", "clips x LFW"):
            d = results[method][f"{k} >= {M}"]["distribution"]
            s, o = d["same"], d["different"]
            md.append(f"| {method} | {k} | {s['n']} | {fmt(s.get('min'))} | {fmt(s.get('median'))} | "
                      f"{fmt(s.get('max'))} | {o['n']} | {fmt(o.get('min'))} | {fmt(o.get('median'))} | "
                      f"{fmt(o.get('p99'))} | {fmt(o.get('max'))} |")
    md += ["", "## Identities (`identities.clustering.cluster` over all scored pairs at the chosen threshold)", "",
           "| method | set | min faces | sequences | people | clusters | BCubed P | BCubed R | same clusters when shuffled |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for method in matching.METHODS:
        for m in MIN_FACES:
            for k in ("tune", "held-out", "clips"):
                i = results[method][f"{k} >= {m}"]["identities"]
                md.append(f"| {method} | {k} | {m} | {i['sequences']} | {i['people']} | {i['clusters']} | "
                          f"{fmt(i['bcubed_precision'])} | {fmt(i['bcubed_recall'])} | "
                          f"{'yes' if i['shuffle_stable'] else 'NO'} |")
    md += ["", "## Cost", "", "Scoring one pair (microseconds, mean over all " + str(n_pairs) + " pairs): " +
           ", ".join(f"{m} {v:.0f}" for m, v in per_pair_us.items()) + ".", "",
           "## Recommended", "", f"Default method: {default_rule}.", "", "```python",
           f'thresholds.MODELS["{model}"].match = {json.dumps(recommended)}', f'DEFAULT_METHOD = "{default}"', "```", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    args.out = args.out / args.backend
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "matching.md").write_text("\n".join(md))
    (args.out / "matching.json").write_text(json.dumps(jsonable(report), indent=1))
    (args.out / "pairs.json").write_text(json.dumps(jsonable(
        {k: [{**p, "person_a": by_uid[p["a"]].person, "video_a": by_uid[p["a"]].video,
              "person_b": by_uid[p["b"]].person, "video_b": by_uid[p["b"]].video} for p in ps]
         for k, ps in pairs.items()})))
    print("\n".join(md))
    print(f"\nwrote {args.out / 'matching.md'}, matching.json and pairs.json in {total_s:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
