#!/usr/bin/env python
"""Calibrate how identities are formed, per face model: the pair threshold, the cluster gap and the evidence margins.

Reads the labelled sequences that `bench/accuracy.py` leaves in each run
(<work>/runs/<set>/sequences.npz: templates, face counts, face sizes, the true person) and
replays the identities step offline with the core's own functions
(`MatchSettings.evidence_score`, `archive.cannot_links`, `identities.clustering.cluster`) over every
pair of sequences. First the pair threshold (`--threshold-grid`): the lowest threshold at
which pairs of well-seen sequences (>= 3 faces, faces >= 60 px on average) reach pairwise
precision >= 0.995 on the sets given; then, at that threshold, a grid of

- `short_margin`: how much more a pair with a sequence of fewer than 3 faces must score;
- `small_margin`: the same for a sequence whose faces are under 60 px on average;
- `cluster_gap`: how far below the pair threshold the mean similarity of two groups may
  fall and still join them.

It prints the score distributions per kind of pair (same / different person; well seen,
short, small) and the BCubed precision / recall / F1 of each setting on every set, and
picks the setting with the best mean F1 among those that keep precision >= 0.995 on every
standard set and >= 0.97 on every hard set. Calibrate on the tune seeds, then check the
choice with bench/accuracy.py on seeds never used here.

    .venv/bin/python bench/calibrate_identities.py --work /tmp/reid-accuracy --model sface_2021dec [--sets standard-s1-n4 ...]

Runs are read from <work>/runs/<backend>/ (bench/accuracy.py --backends) or <work>/runs/.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from reid_pipeline.identities.archive import cannot_links
from reid_pipeline.identities.clustering import Link, bcubed, cluster
from reid_pipeline.identities.matching import match_settings_for

BACKEND = {"dlib_resnet_v1": "dlib", "sface_2021dec": "yunet_sface"}
# grids in units of the model's spread: dlib's similarities of different people sit within
# 0.71-0.95, SFace's within -0.1-0.6 (about four times wider)
STEP = {"dlib_resnet_v1": 0.01, "sface_2021dec": 0.04}
SHORT = (0, 0.5, 1, 2, 3, 4)  # x STEP
SMALL = (0, 0.5, 1, 2, 3, 4, 5, 6)
GAP = (0, 0.5, 1, 1.5, 2, 3)
MIN_PRECISION = {"standard": 0.995, "hard": 0.97}
PAIR_PRECISION = 0.995


def load(path: Path) -> dict:
    data = dict(np.load(path))
    data["sim"] = data["template"] @ data["template"].T
    return data


def sequences_of(d: dict) -> list[dict]:
    return [{"id": int(i), "partition_key": str(v), "start_frame": int(s), "end_frame": int(e), "face_count": int(n),
             "mean_face_px": float(px)}
            for i, v, s, e, n, px in zip(d["id"], d["video"], d["start"], d["end"], d["faces"], d["face_px"])]


def replay(d: dict, settings) -> dict:
    seqs = sequences_of(d)
    cannot = set(cannot_links(seqs))
    n = len(seqs)
    links = []
    for i in range(n):
        for j in range(i + 1, n):
            a, b = seqs[i], seqs[j]
            if (a["id"], b["id"]) in cannot or (b["id"], a["id"]) in cannot:
                continue
            links.append(Link(a["id"], b["id"], settings.evidence_score(float(d["sim"][i, j]), a, b)))
    labels = cluster([s["id"] for s in seqs], links, settings.threshold, cluster_threshold=settings.cluster_threshold,
                     cannot_link=cannot)
    # a short sequence alone is unresolved: its own identity for BCubed, counted apart
    sizes: dict[int, int] = {}
    for lab in labels.values():
        sizes[lab] = sizes.get(lab, 0) + 1
    unresolved = sum(1 for s in seqs if sizes[labels[s["id"]]] == 1 and s["face_count"] < settings.short_faces)
    truth = {int(i): str(p) for i, p in zip(d["id"], d["person"])}
    p, r = bcubed(labels, truth)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r), "unresolved": unresolved,
            "identities": len(set(labels.values())) - unresolved}


def distributions(d: dict, settings) -> dict:
    seqs = sequences_of(d)
    cannot = set(cannot_links(seqs))
    out: dict[str, list[float]] = {}
    for i, j in itertools.combinations(range(len(seqs)), 2):
        a, b = seqs[i], seqs[j]
        if (a["id"], b["id"]) in cannot:
            continue
        kind = "short" if min(a["face_count"], b["face_count"]) < settings.short_faces else "solid"
        kind += "/small" if min(a["mean_face_px"], b["mean_face_px"]) < settings.small_face_px else ""
        same = "same" if d["person"][i] == d["person"][j] else "diff"
        out.setdefault(f"{same} {kind}", []).append(float(d["sim"][i, j]))
    return out


def pair_threshold(data: dict[str, dict], base, grid: np.ndarray) -> tuple[float, list[str]]:
    """The lowest threshold at which well-seen pairs (pooled over the sets) reach
    `PAIR_PRECISION`, with a line per grid step around it."""
    same, diff = [], []
    for d in data.values():
        for k, v in distributions(d, base).items():
            if k.endswith("solid"):
                (same if k.startswith("same") else diff).extend(v)
    same, diff = np.array(same), np.array(diff)
    lines, chosen = [], None
    for t in grid:
        tp, fp = int((same >= t).sum()), int((diff >= t).sum())
        precision = tp / max(tp + fp, 1)
        if chosen is None and precision >= PAIR_PRECISION:
            chosen = float(t)
        lines.append(f"| {t:.3f} | {precision:.4f} | {tp / max(len(same), 1):.4f} | {tp} | {fp} |")
    return (chosen if chosen is not None else float(grid[-1])), lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/reid-accuracy"))
    ap.add_argument("--model", default="sface_2021dec", choices=sorted(BACKEND))
    ap.add_argument("--sets", nargs="*", help="run folders under <work>/runs[/<backend>] (default: all)")
    ap.add_argument("--keep-threshold", action="store_true", help="keep the model's pair threshold; grid only the rest")
    args = ap.parse_args(argv)
    model, step = args.model, STEP[args.model]
    folder = args.work / "runs" / BACKEND[model]
    folder = folder if folder.is_dir() else args.work / "runs"
    runs = sorted(p for p in folder.iterdir() if (p / "sequences.npz").exists())
    if args.sets:
        runs = [r for r in runs if r.name in args.sets]
    if not runs:
        print(f"no runs with sequences.npz under {folder}: run bench/accuracy.py first")
        return 0
    data = {r.name: load(r / "sequences.npz") for r in runs}
    base = match_settings_for(model)
    if not args.keep_threshold:
        grid = np.round(np.arange(base.threshold - 25 * step / 4, base.threshold + 25 * step / 4, step / 8), 4)
        threshold, lines = pair_threshold(data, base, grid)
        print("pair threshold (well-seen pairs, pooled): | threshold | precision | recall | TP | FP |\n|---|---|---|---|---|")
        print("\n".join(lines))
        print(f"\nchosen pair threshold {threshold:.4f} (current {base.threshold})\n")
        base = match_settings_for(model, threshold=threshold)
    print(f"pair threshold {base.threshold}; sets: {', '.join(data)}\n")
    print("| pairs | n | min | p05 | p50 | p95 | max |\n|---|---|---|---|---|---|---|")
    pooled: dict[str, list[float]] = {}
    for d in data.values():
        for k, v in distributions(d, base).items():
            pooled.setdefault(k, []).extend(v)
    for k, v in sorted(pooled.items()):
        q = np.quantile(v, [0, 0.05, 0.5, 0.95, 1])
        print(f"| {k} | {len(v)} | " + " | ".join(f"{x:.3f}" for x in q) + " |")
    rows = []
    for short, small, gap in itertools.product(*((round(x * step, 4) for x in grid) for grid in (SHORT, SMALL, GAP))):
        settings = match_settings_for(model, threshold=base.threshold, short_margin=short, small_margin=small, cluster_gap=gap)
        per_set = {name: replay(d, settings) for name, d in data.items()}
        ok = all(r["precision"] >= MIN_PRECISION[name.split("-")[0]] for name, r in per_set.items())
        rows.append((ok, float(np.mean([r["f1"] for r in per_set.values()])), short, small, gap, per_set))
    rows.sort(key=lambda r: (not r[0], round(-r[1], 4), -(r[2] + r[3]), r[4]))  # ties: the safer setting
    print("\n| short margin | small margin | cluster gap | meets precision | mean F1 | " +
          " | ".join(f"{n} P/R" for n in data) + " |")
    print("|---|---|---|---|---|" + "---|" * len(data))
    current = (base.short_margin, base.small_margin, base.cluster_gap)
    for ok, f1, short, small, gap, per_set in rows[:15] + [r for r in rows if r[2:5] == current]:
        cells = " | ".join(f"{r['precision']:.3f}/{r['recall']:.3f}" for r in per_set.values())
        print(f"| {short} | {small} | {gap} | {'yes' if ok else 'no'} | {f1:.3f} | {cells} |")
    best = rows[0]
    print(f"\nchosen: short_margin {best[2]}, small_margin {best[3]}, cluster_gap {best[4]} (mean F1 {best[1]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
