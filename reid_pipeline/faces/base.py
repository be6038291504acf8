"""The seam between the pipeline and a face model: one small class per backend.

A backend detects faces in a frame (box, score, 5 landmarks, head pose, an aligned chip)
and embeds aligned chips into vectors. Detection and embedding are separate calls so the
pipeline can store the chips once (asset `frame_detections`) and embed them later
(asset `face_embeddings`) without decoding the video again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np


@dataclass(frozen=True)
class Detection:
    """One face found in one frame, in the frame's pixel coordinates."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float  # the detector's own confidence (not comparable across detectors)
    landmarks: np.ndarray  # (5, 2) float32, the backend's 5-point layout
    yaw: float  # degrees, 0 = frontal; sign follows the image x axis
    pitch: float  # degrees, 0 = level
    roll: float  # degrees, in-plane rotation of the eye line
    chip: np.ndarray  # aligned face, BGR uint8, the embedder's input size


class FaceBackend(Protocol):
    """What every face backend offers. See `dlib_backend` and `insightface_backend`."""

    name: str  # backend family: "dlib" or "insightface"
    model_name: str  # names the embedding model; vectors of different model_name never meet
    dim: int  # embedding dimension
    chip_size: int  # side of the aligned chip in pixels

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Faces in one BGR frame, each with an aligned chip ready for `embed`."""
        ...

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32 L2-normalised embeddings of aligned BGR chips."""
        ...

    def describe(self) -> dict:
        """Facts to record with every result: backend, model, dimension, providers."""
        ...

    # Optional (the pipeline checks with getattr):
    # detect_near(image_bgr, boxes) -> list[Detection]: faces near the given boxes only, a
    #   cheaper search used between full detections while faces are tracked;
    # full_detect_s: float: seconds of video between whole-frame searches by default (0:
    #   every sampled frame), where `REID_FULL_DETECT_S` is not set;
    # detect_threads: int: frames searched at once by default (`REID_DETECT_THREADS` unset);


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def near_crops(image: np.ndarray, boxes: Sequence[tuple[float, float, float, float]], margin: float, face_px: float,
               max_scale: float = math.inf) -> Iterator[tuple[np.ndarray, int, int, float]]:
    """For a search near known faces: per box, the region `margin` face widths around it,
    resized so the face is about `face_px` (at most `max_scale` times larger), as (crop,
    left, top, scale); a point p of the crop is at (left, top) + p / scale in the image."""
    h, w = image.shape[:2]
    for x1, y1, x2, y2 in boxes:
        side = max(x2 - x1, y2 - y1, 1.0)
        cx, cy, reach = (x1 + x2) / 2, (y1 + y2) / 2, side * (0.5 + margin)
        left, top = int(max(0, cx - reach)), int(max(0, cy - reach))
        right, bottom = int(min(w, cx + reach)), int(min(h, cy + reach))
        if right - left < 8 or bottom - top < 8:
            continue
        scale = min(max_scale, face_px / side)
        crop = cv2.resize(image[top:bottom, left:right], None, fx=scale, fy=scale,
                          interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        yield crop, left, top, scale


def suppress_overlaps(found: list[tuple[tuple[float, float, float, float], float]], iou: float = 0.4) -> list:
    """(box, score) pairs less those overlapping a higher-scoring one by more than `iou`
    (one face found from two neighbouring search regions)."""
    kept: list = []
    for box, score in sorted(found, key=lambda f: -f[1]):
        if all(box_iou(box, k[0]) <= iou for k in kept):
            kept.append((box, score))
    return kept
