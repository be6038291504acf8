"""Aligned face chips as JPEG, and embedding them in worker processes.

Kept small on purpose: an embedding worker process imports only this module, the face
backend and OpenCV, so it starts in well under a second."""

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


_worker_backend: FaceBackend | None = None


def init_worker(spec: dict) -> None:
    """Initializer of an embedding worker process: load the backend `spec` names, once."""
    global _worker_backend
    from reid_pipeline.faces import load_backend

    _worker_backend = load_backend(**spec)


def embed_in_worker(chips: list[bytes]) -> np.ndarray:
    if _worker_backend is None:
        raise RuntimeError("embed_in_worker runs in a process started with init_worker")
    return embed_jpegs(_worker_backend, chips)


def ready() -> bool:
    """A no-op task: submitted once per worker so the workers start (and load the model)
    while the first frames are still being detected."""
    return _worker_backend is not None
