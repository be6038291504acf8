"""Aligned face chips as JPEG (how `frame_detections` stores them), and embedding them."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from reid_pipeline.faces.base import FaceBackend

CHIP_JPEG_QUALITY = 95


def encode_jpeg(image_bgr: np.ndarray, quality: int = CHIP_JPEG_QUALITY) -> bytes:
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode a face chip as JPEG")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)


def embed_jpegs(backend: FaceBackend, chips: Sequence[bytes]) -> np.ndarray:
    """(n, dim) unit vectors of JPEG-encoded aligned chips (as stored in `frame_detections`)."""
    if not chips:
        return np.zeros((0, backend.dim), dtype=np.float32)
    return backend.embed([decode_jpeg(c) for c in chips])
