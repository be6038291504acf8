"""Set-to-set similarity between face sequences, and the thresholds that make a link.

A sequence is a set of unit embeddings (with quality weights). Three measures compare two
sets; each returns a similarity where higher means "more likely the same person":

- `template`: cosine of the quality-weighted mean templates (cheap, what HNSW searches);
- `topk_mean`: mean of the k highest pairwise cosine similarities (rewards a few very
  good matches, e.g. the frontal frames of both sequences);
- `robust_hausdorff`: 1 - the robust Hausdorff distance: for every face the distance to
  its nearest face in the other set, the q-quantile of those per direction, the larger of
  the two directions (q = 0.5 is a median: a few bad frames cannot make or break a link).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reid_pipeline.faces.base import l2_normalise
from reid_pipeline.faces.thresholds import ModelThresholds, thresholds_for

METHODS = ("template", "topk_mean", "robust_hausdorff")


def template_similarity(a: np.ndarray, b: np.ndarray, wa: np.ndarray | None = None, wb: np.ndarray | None = None) -> float:
    ta = l2_normalise(np.average(a, axis=0, weights=wa)[None])[0]
    tb = l2_normalise(np.average(b, axis=0, weights=wb)[None])[0]
    return float(ta @ tb)


def topk_mean_similarity(a: np.ndarray, b: np.ndarray, k: int = 5, **_) -> float:
    sims = (a @ b.T).ravel()
    k = min(k, sims.size)
    return float(np.partition(sims, sims.size - k)[-k:].mean())


def robust_hausdorff_similarity(a: np.ndarray, b: np.ndarray, q: float = 0.5, **_) -> float:
    dist = 1.0 - a @ b.T
    forward = np.quantile(dist.min(axis=1), q)
    backward = np.quantile(dist.min(axis=0), q)
    return float(1.0 - max(forward, backward))


_MEASURES: dict[str, Callable[..., float]] = {
    "template": lambda a, b, wa=None, wb=None: template_similarity(a, b, wa, wb),
    "topk_mean": lambda a, b, wa=None, wb=None: topk_mean_similarity(a, b),
    "robust_hausdorff": lambda a, b, wa=None, wb=None: robust_hausdorff_similarity(a, b),
}


def similarity(method: str, a: np.ndarray, b: np.ndarray, wa: np.ndarray | None = None, wb: np.ndarray | None = None) -> float:
    """Similarity of two sequences' unit embeddings (rows) by `method`."""
    if method not in _MEASURES:
        raise ValueError(f"unknown matching method {method!r}; choose one of {', '.join(METHODS)}")
    return _MEASURES[method](np.asarray(a, np.float32), np.asarray(b, np.float32), wa, wb)


@dataclass(frozen=True)
class MatchSettings:
    method: str = "template"
    threshold: float = 0.938  # similarity at or above which two well-seen sequences are linked (per model: faces/thresholds.py)
    cluster_gap: float = 0.0  # two groups join while their mean similarity is >= threshold - cluster_gap
    candidates: int = 40  # nearest templates fetched per sequence (HNSW)
    min_faces: int = 1  # sequences with fewer usable faces are neither queried nor linked
    # Sequences with little evidence need a higher score to link (each side adds its margin):
    # a short one (fewer than `short_faces` usable faces) and a small one (mean face height
    # under `small_face_px`, where dlib puts different blurred people close together).
    short_faces: int = 3
    short_margin: float = 0.0
    small_face_px: float = 60.0
    small_margin: float = 0.0

    @property
    def cluster_threshold(self) -> float:
        return self.threshold - self.cluster_gap

    def margin(self, face_count: int, mean_face_px: float | None) -> float:
        """How much higher than `threshold` a pair with this sequence must score."""
        short = self.short_margin if face_count < self.short_faces else 0.0
        small = self.small_margin if mean_face_px is not None and mean_face_px < self.small_face_px else 0.0
        return short + small

    def evidence_score(self, score: float, a: dict, b: dict) -> float:
        """`score` less both sequences' margins: compared with `threshold` to link, and what
        identities cluster on (sequence rows with face_count and mean_face_px)."""
        return score - self.margin(a["face_count"], a.get("mean_face_px")) - self.margin(b["face_count"], b.get("mean_face_px"))


# The three measures tie within noise on the dev data; the simplest wins.
DEFAULT_METHOD = "template"


def match_settings_for(model: str, method: str | None = None, threshold: float | None = None, **overrides) -> MatchSettings:
    """The model's calibrated settings; `threshold` and `overrides` (None = keep) win. A
    model without a row in `thresholds.MODELS` needs an explicit `threshold` (ValueError
    without one) and gets no evidence margins."""
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise ValueError(f"unknown matching method {method!r}; choose one of {', '.join(METHODS)}")
    try:
        row = thresholds_for(model)
    except ValueError:
        if threshold is None:
            raise
        row = ModelThresholds()
    settings = {**row.evidence, **{k: v for k, v in overrides.items() if v is not None}}
    return MatchSettings(method=method, threshold=row.match[method] if threshold is None else threshold, **settings)


def spans_overlap(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    """Two sequences of one video that share a frame range are on screen together: never
    the same person (one face per person per frame)."""
    return a_start <= b_end and b_start <= a_end
