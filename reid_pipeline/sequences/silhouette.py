"""How well a video's sequences separate: silhouette coefficients (the plots are drawn by
`presentation.pictures`).

Sequences are taken as clusters of their faces' unit embeddings, with cosine distance
(scikit-learn's `silhouette_samples`). A face of a singleton sequence has no silhouette
(scikit-learn would report 0, which reads as "on the border"): such faces are left out of
the scores and counted separately. With fewer than two sequences of two or more faces the
coefficient is undefined and the report says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

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


def silhouette(embeddings: np.ndarray, sequence_numbers: np.ndarray, per_sequence_cap: int = 60) -> Silhouette:
    """`sequence_numbers[i]` is face i's sequence, or a negative number when it has none.

    A sequence is scored on at most `per_sequence_cap` of its faces, spread evenly over it
    (the others stay NaN), and scikit-learn works in chunks of at most 64 MB: the cost of
    the score, in time and memory, does not grow with the length of the video."""
    sequence_numbers = np.asarray(sequence_numbers)
    per_face = np.full(len(sequence_numbers), np.nan)
    ids, counts = np.unique(sequence_numbers[sequence_numbers >= 0], return_counts=True)
    multi = set(ids[counts >= 2].tolist())
    singletons = int((counts == 1).sum())
    mask = np.zeros(len(sequence_numbers), bool)
    for s in multi:
        members = np.flatnonzero(sequence_numbers == s)
        mask[members[np.linspace(0, len(members) - 1, min(per_sequence_cap, len(members))).round().astype(int)]] = True
    if len(multi) < 2:
        return Silhouette(per_face, {}, None, 0, len(multi), singletons,
                          note=f"not scored: needs two sequences of 2+ faces, found {len(multi)}")
    import sklearn
    from sklearn.metrics import silhouette_samples

    with sklearn.config_context(working_memory=64):
        per_face[mask] = silhouette_samples(embeddings[mask], sequence_numbers[mask], metric="cosine")
    per_sequence = {int(s): float(np.nanmean(per_face[sequence_numbers == s])) for s in sorted(multi)}
    return Silhouette(per_face, per_sequence, float(per_face[mask].mean()), int(mask.sum()), len(multi), singletons)
