#!/usr/bin/env python
"""Calibrate how identities are formed (dlib): the cluster gap and the evidence margins.

Reads the labelled sequences that `bench/accuracy.py` leaves in each run
(<work>/runs/<set>/sequences.npz: templates, face counts, face sizes, the true person) and
replays the identities step offline with the core's own functions
(`MatchSettings.evidence_score`, `archive.cannot_links`, `identities.cluster`) over every
pair of sequences, for a grid of settings:

- `short_margin`: how much more a pair with a sequence of fewer than 3 faces must score;
- `small_margin`: the same for a sequence whose faces are under 60 px on average;
- `cluster_gap`: how far below the pair threshold the mean similarity of two groups may
  fall and still join them.

It prints the score distributions per kind of pair (same / different person; well seen,
short, small) and the BCubed precision / recall / F1 of each setting on every set, and
picks the setting with the best mean F1 among those that keep precision >= 0.995 on every
standard set and >= 0.97 on every hard set. Calibrate on the tune seeds, then check the
choice with bench/accuracy.py on seeds never used here.

    .venv/bin/python bench/calibrate_identities.py --work /tmp/reid-accuracy [--sets standard-s1-n4 ...]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from reid_pipeline.archive import cannot_links
from reid_pipeline.identities import Link, bcubed, cluster
from reid_pipeline.matching import match_settings_for

MODEL = "dlib_resnet_v1"
SHORT = (0.0, 0.01, 0.02, 0.03, 0.04)
SMALL = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06)
GAP = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03)
MIN_PRECISION = {"standard": 0.995, "hard": 0.97}


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/reid-accuracy"))
    ap.add_argument("--sets", nargs="*", help="run folders under <work>/runs (default: all)")
    args = ap.parse_args(argv)
    runs = sorted(p for p in (args.work / "runs").iterdir() if (p / "sequences.npz").exists())
    if args.sets:
        runs = [r for r in runs if r.name in args.sets]
    if not runs:
        print(f"no runs with sequences.npz under {args.work / 'runs'}: run bench/accuracy.py first")
        return 0
    data = {r.name: load(r / "sequences.npz") for r in runs}
    base = match_settings_for(MODEL)
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
    for short, small, gap in itertools.product(SHORT, SMALL, GAP):
        settings = match_settings_for(MODEL, short_margin=short, small_margin=small, cluster_gap=gap)
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
