"""How well a video's sequences separate: silhouette coefficients, plots, contact sheets.

Sequences are taken as clusters of their faces' unit embeddings, with cosine distance
(scikit-learn's `silhouette_samples`). A face of a singleton sequence has no silhouette
(scikit-learn would report 0, which reads as "on the border"): such faces are left out of
the scores and counted separately. With fewer than two sequences of two or more faces the
coefficient is undefined and the report says so.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from reid_pipeline.faces.chips import decode_jpeg


@functools.cache
def _pyplot():
    """matplotlib (headless), imported on first use: it and scikit-learn cost about two
    seconds at import, which every process that loads the Dagster definitions would pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

BANDS = ((0.7, "strong"), (0.5, "reasonable"), (0.25, "weak"))
WARN_BELOW = 0.25


NOT_SCORED = "not scored (fewer than two sequences of 2+ faces)"
# Kaufman & Rousseeuw call a mean under 0.25 "no substantial structure"; for sequences it has
# two causes, one of them expected: the same person seen in several shots (two sequences,
# one face), or sequences that mix people (the check warns; the contact sheet tells which).
LOW = "low: sequences look alike (one person in several shots, or mixed sequences)"


def band(mean: float | None) -> str:
    """A word for a mean silhouette, after Kaufman & Rousseeuw's bands."""
    if mean is None or math.isnan(mean):
        return NOT_SCORED
    for limit, name in BANDS:
        if mean > limit:
            return name
    return LOW


@dataclass
class Silhouette:
    per_face: np.ndarray  # NaN where undefined (rejected faces, singleton sequences)
    per_sequence: dict[int, float]
    mean: float | None
    scored_faces: int
    scored_sequences: int
    singleton_sequences: int
    note: str = ""
    band: str = field(init=False)

    def __post_init__(self) -> None:
        self.band = band(self.mean)


def silhouette(embeddings: np.ndarray, sequence_ids: np.ndarray, per_sequence_cap: int = 60) -> Silhouette:
    """`sequence_ids[i]` is face i's sequence, or a negative number when it has none.

    A sequence is scored on at most `per_sequence_cap` of its faces, spread evenly over it
    (the others stay NaN), and scikit-learn works in chunks of at most 64 MB: the cost of
    the score, in time and memory, does not grow with the length of the video."""
    sequence_ids = np.asarray(sequence_ids)
    per_face = np.full(len(sequence_ids), np.nan)
    ids, counts = np.unique(sequence_ids[sequence_ids >= 0], return_counts=True)
    multi = set(ids[counts >= 2].tolist())
    singletons = int((counts == 1).sum())
    mask = np.zeros(len(sequence_ids), bool)
    for s in multi:
        members = np.flatnonzero(sequence_ids == s)
        mask[members[np.linspace(0, len(members) - 1, min(per_sequence_cap, len(members))).round().astype(int)]] = True
    if len(multi) < 2:
        return Silhouette(per_face, {}, None, 0, len(multi), singletons,
                          note=f"not scored: needs two sequences of 2+ faces, found {len(multi)}")
    import sklearn
    from sklearn.metrics import silhouette_samples

    with sklearn.config_context(working_memory=64):
        per_face[mask] = silhouette_samples(embeddings[mask], sequence_ids[mask], metric="cosine")
    per_sequence = {int(s): float(np.nanmean(per_face[sequence_ids == s])) for s in sorted(multi)}
    return Silhouette(per_face, per_sequence, float(per_face[mask].mean()), int(mask.sum()), len(multi), singletons)


def _png(fig) -> bytes:
    fig.tight_layout()
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    _pyplot().close(fig)
    return cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR))[1].tobytes()


def _colour(i: int):
    return _pyplot().get_cmap("tab20")(i % 20)


def silhouette_plot(result: Silhouette, sequence_ids: np.ndarray) -> bytes:
    """The classic silhouette plot: one bar per face, grouped and sorted per sequence."""
    fig, ax = _pyplot().subplots(figsize=(6, 4), dpi=90)
    y = 0
    for sid in result.per_sequence:
        values = result.per_face[sequence_ids == sid]
        values = np.sort(values[~np.isnan(values)])
        ax.fill_betweenx(np.arange(y, y + len(values)), 0, values, color=_colour(sid), alpha=0.85)
        ax.text(-0.05, y + len(values) / 2, str(sid), fontsize=7, ha="right", va="center")
        y += len(values) + 2
    if result.mean is not None:
        ax.axvline(result.mean, color="red", linestyle="--", label=f"mean {result.mean:.2f} ({result.band})")
        ax.legend(loc="lower right", fontsize=8)
    for limit, _ in BANDS:
        ax.axvline(limit, color="grey", linewidth=0.5)
    ax.set_xlim(-0.4, 1.0)
    ax.set_yticks([])
    ax.set_xlabel("silhouette coefficient (cosine)")
    ax.set_ylabel("faces scored, grouped by sequence")
    ax.set_title(result.note or f"{result.scored_faces} faces in {result.scored_sequences} sequences")
    return _png(fig)


def projection_plot(embeddings: np.ndarray, sequence_ids: np.ndarray) -> bytes:
    """Faces projected to 2-D (PCA), coloured by sequence; grey crosses have no sequence."""
    fig, ax = _pyplot().subplots(figsize=(6, 4), dpi=90)
    if len(embeddings) >= 2:
        from sklearn.decomposition import PCA

        points = PCA(n_components=2, random_state=0).fit_transform(embeddings)
        none = sequence_ids < 0
        ax.scatter(points[none, 0], points[none, 1], c="lightgrey", marker="x", s=14, label="no sequence")
        for sid in np.unique(sequence_ids[~none]):
            sel = sequence_ids == sid
            ax.scatter(points[sel, 0], points[sel, 1], color=_colour(int(sid)), s=14)
            cx, cy = points[sel].mean(axis=0)
            ax.annotate(str(int(sid)), (cx, cy), fontsize=8, weight="bold")
        if none.any():
            ax.legend(loc="best", fontsize=7)
    ax.set_title("faces by sequence (PCA of embeddings); numbers mark each sequence's centre")
    ax.set_xlabel("first principal component")
    ax.set_ylabel("second principal component")
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)


def sequence_sheet(rows: list[tuple[str, list[bytes]]], thumb: int = 64, label_w: int = 150) -> bytes:
    """One row per sequence: its label (id, time span, count) then a few face chips."""
    cols = max([len(c) for _, c in rows] + [1])
    sheet = np.full((max(1, len(rows)) * (thumb + 4), label_w + cols * thumb, 3), 255, np.uint8)
    for r, (label, chips) in enumerate(rows):
        y = r * (thumb + 4)
        for k, line in enumerate(label.split("\n")):
            cv2.putText(sheet, line, (4, y + 16 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (30, 30, 30), 1, cv2.LINE_AA)
        for c, data in enumerate(chips):
            x = label_w + c * thumb
            sheet[y : y + thumb, x : x + thumb] = cv2.resize(decode_jpeg(data), (thumb, thumb), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".png", sheet)[1].tobytes()
