#!/usr/bin/env python
"""Accuracy of the whole pipeline on generated videos of real people, scored against exact truth.

Renders (or reuses) videos with `../shared/tools/make_videos.py` from the development
people (`../shared/data/dev/lfw`), runs each set through `reid process` (the same
`process_video` job and identities step a user runs) on a fresh embedded database, and
scores what was stored against `truth.json`:

- detection recall (a true face on a sampled frame found with IoU >= 0.5) by face height,
  and precision (detections on bystander faces of a photo are ignored);
- sequences: face-weighted purity, fragmentation (sequences per scene appearance),
  sequences mixing people, false and missed shot cuts;
- pairs of sequences (different videos, same video): precision and recall of `linked`,
  and ranking by the stored score (pairs never scored count as not found): precision at
  recall 0.95 and the best F1;
- identities: BCubed precision / recall / F1 over sequences and over faces (a sequence
  left unresolved counts as an identity of its own), identities against people, merges and
  splits by name.

    .venv/bin/python bench/accuracy.py                       # standard + hard, seeds 1 2, 4 videos each
    .venv/bin/python bench/accuracy.py --seeds 11 12         # held-out seeds (never tuned on)
    .venv/bin/python bench/accuracy.py --stage sequences     # reuse detections + embeddings of the last run
    .venv/bin/python bench/accuracy.py --benchmarks "after"  # also write the tables into BENCHMARKS.md

The videos and the runs live under --work (default /tmp/reid-accuracy), outside the
repository. Without the dev data it says so and exits 0. Results: <work>/results/*.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import machine_facts  # bench/machine.py (the script's folder is on sys.path)

from reid_pipeline.faces.base import box_iou

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MAKE_VIDEOS = SHARED / "tools" / "make_videos.py"
DEV_PHOTOS = SHARED / "data" / "dev" / "lfw"
HEIGHT_BINS = ((0, 50), (50, 80), (80, 120), (120, 10_000))
IOU_MATCH = 0.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=Path, default=DEV_PHOTOS, help="one folder of photos per person")
    p.add_argument("--profiles", nargs="*", default=["standard", "hard"], help="none: only the dev clips")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    p.add_argument("--videos", type=int, default=4, help="videos per seed")
    p.add_argument("--work", type=Path, default=Path("/tmp/reid-accuracy"))
    p.add_argument("--stage", choices=["all", "sequences", "score"], default="all",
                   help="all: a fresh database and the whole job; sequences: re-run face_sequences and "
                        "everything after it on the last run's detections; score: only score the last run")
    p.add_argument("--clips", default=str(SHARED / "data" / "dev" / "clips"),
                   help="the real dev clips (one person each): checked for false links; '' to skip")
    p.add_argument("--backends", nargs="+", default=["yunet_sface"], help="face backends, each run on the same videos")
    p.add_argument("--benchmarks", metavar="LABEL", help="write the tables into BENCHMARKS.md under this label")
    p.add_argument("--run-set", nargs=3, metavar=("VIDEOS", "HOME", "STAGE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- running


def render(args: argparse.Namespace, profile: str, seed: int) -> Path:
    out = args.work / "videos" / f"{profile}-s{seed}-n{args.videos}"
    if not (out / "truth.json").exists():
        print(f"rendering {out.name} with make_videos.py ...", flush=True)
        subprocess.run([sys.executable, str(MAKE_VIDEOS), "--out", str(out), "--photos", str(args.photos),
                        "--profile", profile, "--seed", str(seed), "--videos", str(args.videos)], check=True)
    return out


def run_set(videos: Path, home: Path, stage: str) -> dict:
    """In a child process whose REID_HOME is `home`: run the stage, then score."""
    os.environ["REID_HOME"] = str(home)
    os.environ["REID_INBOX"] = str(home / "inbox")
    os.environ.pop("REID_DATA_ROOT", None)
    os.environ.pop("DAGSTER_HOME", None)
    from reid_pipeline import cli
    from reid_pipeline.cli.environment import open_store
    from reid_pipeline.config import Settings

    if not (videos / "truth.json").exists():  # the real dev clips: one different person per clip
        return run_clips(sorted(videos.glob("*.mp4")), stage)
    truth = json.loads((videos / "truth.json").read_text())
    files = [videos / v["file"] for v in truth["videos"]]
    t0 = time.perf_counter()
    if stage == "all":
        cli.main(["process", *map(str, files)])
    elif stage == "sequences":
        rerun_from_sequences(files)
    seconds = time.perf_counter() - t0
    store = open_store(Settings())
    result = score(store, truth, files)
    result["seconds"] = round(seconds, 1)
    return result


def run_clips(files: list[Path], stage: str) -> dict:
    """The dev clips show one person each, five different people: every link between two
    clips is false; each clip should end as one identity."""
    from reid_pipeline import cli
    from reid_pipeline.cli.environment import open_store
    from reid_pipeline.config import Settings
    from reid_pipeline.ingest.arrivals import partition_key_for

    if stage == "all":
        cli.main(["process", *map(str, files)])
    elif stage == "sequences":
        rerun_from_sequences(files)
    store = open_store(Settings())
    keys = [partition_key_for(str(f.resolve())) for f in files]
    links = store.rows("SELECT partition_a, partition_b, score FROM matches WHERE linked AND partition_a <> partition_b"
                       " AND partition_a = ANY(%s) AND partition_b = ANY(%s)", (keys, keys))
    best = store.rows("SELECT max(score) AS s FROM matches WHERE partition_a <> partition_b")[0]["s"]
    per_clip = store.rows(
        "SELECT s.partition_key, count(DISTINCT m.identity_id) AS identities, count(s.id) AS sequences"
        " FROM sequences s LEFT JOIN identity_sequences m ON m.sequence_id = s.id WHERE s.partition_key = ANY(%s)"
        " GROUP BY 1 ORDER BY 1", (keys,))
    unresolved = 0
    if store.rows("SELECT to_regclass('unresolved_sequences') AS t")[0]["t"]:
        unresolved = store.rows("SELECT count(*) AS n FROM unresolved_sequences")[0]["n"]
    return {"clips": len(files), "false_links": len(links), "best_cross_clip_score": best, "per_clip": per_clip,
            "unresolved": unresolved}


def rerun_from_sequences(files: list[Path]) -> None:
    """face_sequences -> cross_video_matches per video (in the original order), then the
    identities: the stages after detection and embedding, on the stored parquet files."""
    import dagster as dg

    from reid_pipeline.cli.environment import open_store, prepare
    from reid_pipeline.config import Settings
    from reid_pipeline.ingest.arrivals import partition_key_for

    settings = Settings()
    prepare(settings)
    open_store(settings)
    sys.path.insert(0, str(REPO))
    from definitions import build_definitions

    instance = dg.DagsterInstance.get()
    defs = build_definitions()
    job = defs.resolve_job_def("process_video")
    subset = job.get_subset(asset_selection={dg.AssetKey("face_sequences"), dg.AssetKey("cross_video_matches")})
    for path in files:
        key = partition_key_for(str(path.resolve()))
        result = subset.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
        print(f"  {path.name}: {'ok' if result.success else 'FAILED'}", flush=True)
    defs.resolve_job_def("rebuild_identities").execute_in_process(instance=instance, raise_on_error=False)


# ----------------------------------------------------------------------------- scoring


def truth_on_frame(video: dict) -> dict[int, tuple[list, list]]:
    """frame index -> ([(track_id, identity, box)], [bystander boxes])."""
    out: dict[int, tuple[list, list]] = {}
    for scene in video["scenes"]:
        for person in scene["people"]:
            for k, box in enumerate(person["boxes"]):
                out.setdefault(scene["start_frame"] + k, ([], []))[0].append((person["track_id"], person["identity"], box))
            for track in person.get("bystanders", []):
                for k, box in enumerate(track):
                    out.setdefault(scene["start_frame"] + k, ([], []))[1].append(box)
    return out


def label_faces(faces: list[dict], video: dict) -> None:
    """Give each stored face `track`/`person` (None: a false detection) and `bystander`;
    also returns nothing: the truth faces found are counted by `detection_scores`."""
    from scipy.optimize import linear_sum_assignment

    on_frame = truth_on_frame(video)
    by_frame: dict[int, list[dict]] = {}
    for f in faces:
        f["track"] = f["person"] = None
        f["bystander"] = False
        by_frame.setdefault(f["frame_index"], []).append(f)
    for frame, found in by_frame.items():
        people, bystanders = on_frame.get(frame, ([], []))
        if people:
            overlap = np.array([[box_iou(f["box"], p[2]) for p in people] for f in found])
            for i, j in zip(*linear_sum_assignment(-overlap)):
                if overlap[i, j] >= IOU_MATCH:
                    found[i]["track"], found[i]["person"] = people[j][0], people[j][1]
        for f in found:
            if f["person"] is None and any(box_iou(f["box"], b) >= IOU_MATCH for b in bystanders):
                f["bystander"] = True


def detection_scores(faces: list[dict], video: dict, sampled: list[int]) -> dict:
    on_frame = truth_on_frame(video)
    found = {(f["frame_index"], f["track"]) for f in faces if f["track"]}
    bins = {f"{lo}-{hi}" if hi < 10_000 else f">{lo}": [0, 0] for lo, hi in HEIGHT_BINS}
    for frame in sampled:
        for track, _, box in on_frame.get(frame, ([], []))[0]:
            h = box[3] - box[1]
            name = next(f"{lo}-{hi}" if hi < 10_000 else f">{lo}" for lo, hi in HEIGHT_BINS if lo <= h < hi)
            bins[name][0] += 1
            bins[name][1] += (frame, track) in found
    counted = [f for f in faces if not f["bystander"]]
    return {"true_faces": {k: v[0] for k, v in bins.items()}, "found": {k: v[1] for k, v in bins.items()},
            "detections": len(counted), "false_detections": sum(1 for f in counted if f["person"] is None)}


def cut_scores(video: dict, frames) -> dict:
    """False and missed cuts: a shot change between two sampled frames is true when a scene
    of the truth starts between them (after the first, up to and including the second).
    Also the cut scores of the frames (colour, structure): lowest at true cuts, highest
    inside scenes."""
    starts = [s["start_frame"] for s in video["scenes"][1:]]
    false_cuts = missed = 0
    covered = set()
    scores: dict[str, list[float]] = {}
    rows = frames.to_dicts()
    for prev, cur in zip(rows, rows[1:]):
        true = [t for t in starts if prev["frame_index"] < t <= cur["frame_index"]]
        covered.update(true)
        if cur["shot"] != prev["shot"] and not true:
            false_cuts += 1
        if true and cur["shot"] == prev["shot"]:
            missed += 1
        for name in ("cut_score", "structure_score"):
            if cur.get(name) is not None:
                scores.setdefault(f"{name}_{'cuts' if true else 'inside'}", []).append(cur[name])
    return {"true_cuts": len(covered), "false_cuts": false_cuts, "missed_cuts": missed, **scores}


def pair_scores(pairs: list[tuple[bool, float | None, bool]]) -> dict:
    """pairs: (same person, stored score or None, linked)."""
    pos = sum(1 for same, _, _ in pairs if same)
    tp = sum(1 for same, _, linked in pairs if same and linked)
    predicted = sum(1 for _, _, linked in pairs if linked)
    out = {"pairs": len(pairs), "same_person": pos, "linked": predicted,
           "precision": tp / predicted if predicted else math.nan, "recall": tp / pos if pos else math.nan,
           "unscored_same_person": sum(1 for same, s, _ in pairs if same and s is None)}
    ranked = sorted(((s, same) for same, s, _ in pairs if s is not None), key=lambda x: -x[0])
    best_f1, p_at_95, hits = 0.0, math.nan, 0
    for rank, (_, same) in enumerate(ranked, 1):
        hits += same
        precision, recall = hits / rank, hits / pos if pos else 0.0
        if precision + recall:
            best_f1 = max(best_f1, 2 * precision * recall / (precision + recall))
        if recall >= 0.95 and math.isnan(p_at_95):
            p_at_95 = precision
    out["max_recall"] = hits / pos if pos else math.nan
    out["precision_at_recall_95"] = p_at_95
    out["best_f1"] = best_f1
    return out


def bcubed(predicted: dict, truth: dict) -> dict:
    from reid_pipeline.identities.clustering import bcubed as core_bcubed

    if not truth:
        return {"precision": math.nan, "recall": math.nan, "f1": math.nan}
    p, r = core_bcubed(predicted, truth)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def score(store, truth: dict, files: list[Path]) -> dict:
    import polars as pl

    from reid_pipeline.faces.detection import asset_path
    from reid_pipeline.identities.matching import spans_overlap
    from reid_pipeline.ingest.arrivals import partition_key_for

    data_root = Path(os.environ["REID_HOME"]) / "data"
    videos = {partition_key_for(str(f.resolve())): v for f, v in zip(files, truth["videos"])}
    keys = list(videos)
    faces = store.rows("SELECT partition_key, id, frame_index, box, face_px, sequence_number, reject_reason FROM faces"
                       " WHERE partition_key = ANY(%s)", (keys,))
    sequences = store.rows("SELECT id, partition_key, sequence_number, start_frame, end_frame, face_count FROM sequences"
                           " WHERE partition_key = ANY(%s)", (keys,))
    matches = {(r["sequence_a"], r["sequence_b"]): (r["score"], r["linked"])
               for r in store.rows("SELECT sequence_a, sequence_b, score, linked FROM matches")}
    identity = {r["sequence_id"]: r["identity_id"] for r in store.rows("SELECT identity_id, sequence_id FROM identity_sequences")}
    unresolved = set()
    if store.rows("SELECT to_regclass('unresolved_sequences') AS t")[0]["t"]:
        unresolved = {r["sequence_id"] for r in store.rows("SELECT sequence_id FROM unresolved_sequences")}

    det = {"true_faces": {}, "found": {}, "detections": 0, "false_detections": 0}
    cuts = {"true_cuts": 0, "false_cuts": 0, "missed_cuts": 0}
    cut_values: dict[str, list[float]] = {}
    by_key: dict[str, list[dict]] = {}
    for f in faces:
        by_key.setdefault(f["partition_key"], []).append(f)
    for key, video in videos.items():
        vf = by_key.get(key, [])
        label_faces(vf, video)
        frames_path = asset_path(data_root, "face_sequences", key, ".frames.parquet")
        if not frames_path.exists():
            frames_path = asset_path(data_root, "frame_detections", key, ".frames.parquet")
        frames = pl.read_parquet(frames_path).sort("frame_index")
        sampled = frames["frame_index"].to_list()
        d = detection_scores(vf, video, sampled)
        for k in ("true_faces", "found"):
            for b, n in d[k].items():
                det[k][b] = det[k].get(b, 0) + n
        det["detections"] += d["detections"]
        det["false_detections"] += d["false_detections"]
        if "shot" in frames.columns:
            c = cut_scores(video, frames)
            for k in cuts:
                cuts[k] += c[k]
            for k, v in c.items():
                if k not in cuts:
                    cut_values.setdefault(k, []).extend(v)
        else:
            cuts = {k: math.nan for k in cuts}
    total_true = sum(det["true_faces"].values())
    detection = {
        "recall": sum(det["found"].values()) / total_true if total_true else math.nan,
        "recall_by_height": {b: (det["found"][b] / n if n else math.nan) for b, n in det["true_faces"].items()},
        "true_faces_by_height": det["true_faces"],
        "precision": 1 - det["false_detections"] / det["detections"] if det["detections"] else math.nan,
    }

    # sequences: their faces' people
    members: dict[tuple[str, int], list[dict]] = {}
    for f in faces:
        if f["sequence_number"] is not None:
            members.setdefault((f["partition_key"], f["sequence_number"]), []).append(f)
    seq_person, mixing, majority, in_seq = {}, 0, 0, 0
    appearances: dict[str, set] = {}
    for s in sequences:
        fs = members.get((s["partition_key"], s["sequence_number"]), [])
        labels = [f["person"] for f in fs if not f["bystander"]]
        if not labels:
            continue
        counts: dict = {}
        for lab in labels:
            counts[lab] = counts.get(lab, 0) + 1
        top, n = max(counts.items(), key=lambda kv: (kv[1], str(kv[0])))
        majority += n
        in_seq += len(labels)
        mixing += len([p for p in counts if p is not None]) > 1
        if top is not None:
            seq_person[s["id"]] = top
        for f in fs:
            if f["track"]:
                appearances.setdefault(f["track"], set()).add(s["id"])
    n_appearances = sum(len(sc["people"]) for v in videos.values() for sc in v["scenes"])
    sequencing = {
        "sequences": len(sequences),
        "labelled_sequences": len(seq_person),
        "purity": majority / in_seq if in_seq else math.nan,
        "fragmentation": float(np.mean([len(v) for v in appearances.values()])) if appearances else math.nan,
        "appearances": n_appearances,
        "appearances_without_sequence": n_appearances - len(appearances),
        "sequences_mixing_people": mixing,
        "short_sequences": sum(1 for s in sequences if s["face_count"] < 3),
        **cuts,
        # the margins of the cut tests: lowest score at a true cut, highest inside a scene
        **{f"{k}_{'min' if k.endswith('cuts') else 'max'}": (min(v) if k.endswith("cuts") else max(v))
           for k, v in cut_values.items() if v},
    }

    # pairs of labelled sequences (pairs on screen together in one video are never candidates)
    info = {s["id"]: s for s in sequences}
    ids = sorted(seq_person)
    cross, same_video = [], []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            sa, sb = info[a], info[b]
            if sa["partition_key"] == sb["partition_key"] and spans_overlap(sa["start_frame"], sa["end_frame"], sb["start_frame"], sb["end_frame"]):
                continue
            stored = matches.get((a, b))
            entry = (seq_person[a] == seq_person[b], stored[0] if stored else None, bool(stored and stored[1]))
            (same_video if sa["partition_key"] == sb["partition_key"] else cross).append(entry)

    # identities (an unresolved or missing sequence counts as its own identity)
    predicted = {s: identity.get(s, f"alone-{s}") for s in ids}
    truth_seq = {s: seq_person[s] for s in ids}
    face_pred, face_truth = {}, {}
    for s in ids:
        sk = (info[s]["partition_key"], info[s]["sequence_number"])
        for f in members.get(sk, []):
            if f["person"] is not None:
                face_pred[f["id"]], face_truth[f["id"]] = predicted[s], f["person"]
    groups: dict[str, set] = {}
    people_of: dict[str, set] = {}
    for s in ids:
        groups.setdefault(predicted[s], set()).add(truth_seq[s])
        people_of.setdefault(truth_seq[s], set()).add(predicted[s])
    merges = sorted(" + ".join(sorted(p)) for p in groups.values() if len(p) > 1)
    splits = {p: len(g) for p, g in sorted(people_of.items()) if len(g) > 1}
    identities = {
        "people": len(people_of),
        "identities": len(groups),
        "unresolved_sequences": len(unresolved & set(ids)),
        "bcubed_sequences": bcubed(predicted, truth_seq),
        "bcubed_faces": bcubed(face_pred, face_truth),
        "merges": merges,
        "splits": splits,
    }
    dump_sequences(store, [s for s in sequences if s["id"] in seq_person], seq_person)
    return {"detection": detection, "sequences": sequencing, "pairs_cross_video": pair_scores(cross),
            "pairs_same_video": pair_scores(same_video), "identities": identities}


def dump_sequences(store, sequences: list[dict], person: dict) -> None:
    """The labelled sequences with their templates, for calibrating the identities offline
    (bench/calibrate_identities.py): <REID_HOME>/sequences.npz."""
    from reid_pipeline.store import as_array

    rows = {r["id"]: r for r in store.rows(
        "SELECT id, template, mean_face_px, mean_blur FROM sequences WHERE id = ANY(%s)", ([s["id"] for s in sequences],))}
    np.savez(Path(os.environ["REID_HOME"]) / "sequences.npz",
             id=np.array([s["id"] for s in sequences]), person=np.array([person[s["id"]] for s in sequences]),
             video=np.array([s["partition_key"] for s in sequences]), start=np.array([s["start_frame"] for s in sequences]),
             end=np.array([s["end_frame"] for s in sequences]), faces=np.array([s["face_count"] for s in sequences]),
             face_px=np.array([rows[s["id"]]["mean_face_px"] for s in sequences], float),
             template=np.array([as_array(rows[s["id"]]["template"]) for s in sequences], np.float32))


# ----------------------------------------------------------------------------- reporting


def fmt(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def get(result: dict, path: str):
    for part in path.split("."):
        if part not in result:
            return math.nan  # a measure an older run did not have
        result = result[part]
    return result


ROWS = [
    ("detection recall", "detection.recall"),
    ("detection recall, faces < 50 px", "detection.recall_by_height.0-50"),
    ("detection recall, 50-80 px", "detection.recall_by_height.50-80"),
    ("detection recall, 80-120 px", "detection.recall_by_height.80-120"),
    ("detection recall, > 120 px", "detection.recall_by_height.>120"),
    ("detection precision", "detection.precision"),
    ("sequence purity (faces)", "sequences.purity"),
    ("fragmentation (sequences per appearance)", "sequences.fragmentation"),
    ("sequences mixing people", "sequences.sequences_mixing_people"),
    ("short sequences (< 3 faces)", "sequences.short_sequences"),
    ("false cuts / missed cuts / true cuts", None),
    ("colour cut score: lowest at a true cut / highest inside a scene", None),
    ("structure cut score: lowest at a true cut / highest inside a scene", None),
    ("cross-video pairs: precision / recall of `linked`", None),
    ("cross-video pairs: precision at recall 0.95 (ranked by score)", "pairs_cross_video.precision_at_recall_95"),
    ("cross-video pairs: best F1 / max recall", None),
    ("same-video pairs: precision / recall of `linked`", None),
    ("same-person pairs never scored (cross-video / same video)", None),
    ("identities / people", None),
    ("unresolved sequences", "identities.unresolved_sequences"),
    ("BCubed over sequences: precision", "identities.bcubed_sequences.precision"),
    ("BCubed over sequences: recall", "identities.bcubed_sequences.recall"),
    ("**BCubed over sequences: F1**", "identities.bcubed_sequences.f1"),
    ("BCubed over faces: precision / recall / F1", None),
]


def _pair(results: list[dict], paths: tuple[str, ...], digits: int = 3) -> str:
    return " / ".join(fmt([get(r, p) for r in results], digits) for p in paths)


def table(by_profile: dict[str, list[dict]]) -> list[str]:
    profiles = list(by_profile)
    lines = ["| | " + " | ".join(f"{p} ({len(by_profile[p])} seeds)" for p in profiles) + " |",
             "|---|" + "---|" * len(profiles)]
    combos = {
        "false cuts / missed cuts / true cuts": (("sequences.false_cuts", "sequences.missed_cuts", "sequences.true_cuts"), 1),
        "colour cut score: lowest at a true cut / highest inside a scene": (
            ("sequences.cut_score_cuts_min", "sequences.cut_score_inside_max"), 3),
        "structure cut score: lowest at a true cut / highest inside a scene": (
            ("sequences.structure_score_cuts_min", "sequences.structure_score_inside_max"), 3),
        "cross-video pairs: precision / recall of `linked`": (("pairs_cross_video.precision", "pairs_cross_video.recall"), 3),
        "cross-video pairs: best F1 / max recall": (("pairs_cross_video.best_f1", "pairs_cross_video.max_recall"), 3),
        "same-video pairs: precision / recall of `linked`": (("pairs_same_video.precision", "pairs_same_video.recall"), 3),
        "identities / people": (("identities.identities", "identities.people"), 1),
        "same-person pairs never scored (cross-video / same video)": (("pairs_cross_video.unscored_same_person",
                                                                        "pairs_same_video.unscored_same_person"), 1),
        "BCubed over faces: precision / recall / F1": (("identities.bcubed_faces.precision", "identities.bcubed_faces.recall",
                                                        "identities.bcubed_faces.f1"), 3),
    }
    for name, path in ROWS:
        cells = []
        for p in profiles:
            rs = by_profile[p]
            if path is None:
                paths, digits = combos[name]
                cells.append(_pair(rs, paths, digits))
            else:
                integer = isinstance(get(rs[0], path), int)
                cells.append(fmt([get(r, path) for r in rs], 1 if integer else 3))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for p in profiles:
        for r in by_profile[p]:
            ident = r["identities"]
            lines.append(f"- {p} seed {r['seed']}: merges {ident['merges'] or 'none'}; "
                         f"split people {ident['splits'] or 'none'}")
    return lines


def write_benchmarks(label: str, body: list[str]) -> None:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text()
    head = "## Accuracy (whole pipeline, generated videos of real people)"
    intro = [head, "", "`bench/accuracy.py` renders videos with `../shared/tools/make_videos.py` from the 31 dev people,",
             "runs them through `reid process` on a fresh embedded database and scores the stored results",
             "against the generator's truth (mean ± standard deviation over seeds). Reproduce with",
             "`.venv/bin/python bench/accuracy.py [--seeds ...] [--benchmarks LABEL]`.", ""]
    section = [f"### {label}", "", *body, ""]
    if head not in text:
        text = text.rstrip() + "\n\n" + "\n".join(intro + section)
    else:
        start = text.index(head)
        end = text.find("\n## ", start + len(head))
        end = len(text) if end < 0 else end
        block = text[start:end]
        marker = f"### {label}\n"
        if marker in block:
            s = block.index(marker)
            e = block.find("\n### ", s + len(marker))
            e = len(block) if e < 0 else e + 1
            block = block[:s] + "\n".join(section) + "\n" + block[e:].lstrip("\n")
        else:
            block = block.rstrip() + "\n\n" + "\n".join(section) + "\n"
        text = text[:start] + block + text[end:]
    path.write_text(text)


def child(args: argparse.Namespace, videos: Path, home: Path, backend: str) -> dict:
    """Run one set in a child process with its own REID_HOME (a fresh one for stage all;
    a set never run yet is run whole) and face backend."""
    stage = args.stage if (home / "pgdata").exists() else "all"
    if stage == "all" and home.exists():
        subprocess.run([sys.executable, "-m", "reid_pipeline.cli", "db", "stop"], env={**os.environ, "REID_HOME": str(home)},
                       capture_output=True)
        shutil.rmtree(home)
    print(f"{videos.name}: stage {stage} ...", flush=True)
    proc = subprocess.run([sys.executable, __file__, "--run-set", str(videos), str(home), stage],
                          capture_output=True, text=True, env={**os.environ, "REID_FACE_BACKEND": backend})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        raise SystemExit(f"{videos.name}: the run did not finish")
    return json.loads(line[len("RESULT "):])


def run_backend(args: argparse.Namespace, backend: str) -> list[str]:
    """Every set, then the dev clips, with one backend (runs under <work>/runs/<backend>/)."""
    by_profile: dict[str, list[dict]] = {}
    results = args.work / "results" / backend
    results.mkdir(parents=True, exist_ok=True)
    for profile in args.profiles:
        for seed in args.seeds:
            videos = render(args, profile, seed)
            result = child(args, videos, args.work / "runs" / backend / videos.name, backend)
            result = {"profile": profile, "seed": seed, "backend": backend, **result}
            (results / f"{videos.name}.json").write_text(json.dumps(result, indent=1))
            by_profile.setdefault(profile, []).append(result)
            s, i = result["sequences"], result["identities"]
            print(f"  {backend}: {result['seconds']:.0f} s; detection recall {result['detection']['recall']:.3f}; "
                  f"purity {s['purity']:.3f} fragmentation {s['fragmentation']:.2f} false cuts {s['false_cuts']}; "
                  f"identities {i['identities']}/{i['people']}; BCubed P/R/F1 "
                  f"{i['bcubed_sequences']['precision']:.3f}/{i['bcubed_sequences']['recall']:.3f}/{i['bcubed_sequences']['f1']:.3f}",
                  flush=True)
    body = table(by_profile) if by_profile else []
    if args.clips and Path(args.clips).is_dir():
        clips = child(args, Path(args.clips), args.work / "runs" / backend / "dev-clips", backend)
        (results / "dev-clips.json").write_text(json.dumps(clips, indent=1))
        body += ["", f"Real dev clips ({clips['clips']} clips, one different person each): {clips['false_links']} false links "
                     f"between clips (best cross-clip score {clips['best_cross_clip_score'] or 0:.3f}); identities per clip "
                     f"{[r['identities'] for r in clips['per_clip']]}, unresolved sequences {clips['unresolved']}."]
    return body


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run_set:
        videos, home, stage = args.run_set
        result = run_set(Path(videos), Path(home), stage)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    if not args.photos.is_dir() or not MAKE_VIDEOS.exists():
        print(f"accuracy: no dev data at {args.photos} (or no {MAKE_VIDEOS}); nothing to measure")
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "results").mkdir(exist_ok=True)
    facts = machine_facts("cv2", "dlib", "onnxruntime")
    t_start = time.perf_counter()
    body: list[str] = []
    for backend in args.backends:
        body += [f"#### `{backend}`", ""] if len(args.backends) > 1 else []
        body += run_backend(args, backend)
        body += [""]
    n_videos = sum(len(json.loads((args.work / "videos" / f"{p}-s{s}-n{args.videos}" / "truth.json").read_text())["videos"])
                   for p in args.profiles for s in args.seeds)
    body += [f"Workload: {n_videos} videos ({args.videos} per seed, seeds {' '.join(map(str, args.seeds))}), "
             f"backends {', '.join(args.backends)}, stage `{args.stage}`, {time.perf_counter() - t_start:.0f} s in all on "
             f"{facts['cpu']} ({facts['cores_usable']} cores), dlib {facts.get('dlib')}, opencv {facts.get('opencv')}, "
             f"onnxruntime {facts.get('onnxruntime')}."]
    print("\n".join(body))
    if args.benchmarks:
        write_benchmarks(args.benchmarks, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
