"""Shot-cut detection on the sampled frames: a cheap colour-histogram test.

Each sampled frame gets a small HSV histogram; the Bhattacharyya distance to the previous
sampled frame is its `cut_score` (0 = same colours, 1 = nothing in common). Moving people
and camera pans change few colours, a hard cut changes most of them. A frame whose score
reaches `threshold` starts a new shot; shots are numbered from 0.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_CUT_THRESHOLD = 0.35


def colour_histogram(image_bgr: np.ndarray) -> np.ndarray:
    small = cv2.resize(image_bgr, (96, 54), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [16, 4, 4], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, hist).flatten()


def cut_score(previous: np.ndarray | None, current: np.ndarray) -> float:
    if previous is None:
        return 0.0
    return float(cv2.compareHist(previous, current, cv2.HISTCMP_BHATTACHARYYA))


def shot_ids(cut_scores: list[float] | np.ndarray, threshold: float = DEFAULT_CUT_THRESHOLD) -> np.ndarray:
    """Shot number per sampled frame: a new shot starts wherever the score reaches `threshold`."""
    scores = np.asarray(cut_scores, dtype=np.float64)
    starts = scores >= threshold
    if len(starts):
        starts[0] = False
    return np.cumsum(starts).astype(np.int32)
