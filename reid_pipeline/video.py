"""Video probing and frame sampling with OpenCV.

Frames are streamed one at a time (memory stays flat in the video's length) and sampled
at an analysis rate: `sample_fps=None` (or 0) keeps every frame. Timestamps come from the
container (CAP_PROP_POS_MSEC) when it reports them, else from the frame index and fps.
OpenCV applies the container's rotation metadata itself (CAP_PROP_ORIENTATION_AUTO), so
frames come out upright and `width`/`height` in `VideoInfo` are the upright size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".3gp", ".ogv"}
)


class VideoError(Exception):
    """A file that cannot be used as a video. The message says why, for the person."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    size_bytes: int
    codec: str
    fps: float
    frame_count: int
    duration_s: float
    width: int
    height: int
    rotation: int

    def as_dict(self) -> dict:
        return asdict(self)


def _fourcc(value: float) -> str:
    code = int(value)
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() and text.strip() else "unknown"


def _open(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path.name}: not a readable video (no decoder could open it)")
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read the container's facts and decode the first frame to prove the file is usable."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: file not found")
    size = path.stat().st_size
    if size == 0:
        raise VideoError(f"{path.name}: empty file (0 bytes)")
    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        rotation = int(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(f"{path.name}: opens but no frame decodes (truncated or corrupt video)")
        height, width = frame.shape[:2]
        codec = _fourcc(cap.get(cv2.CAP_PROP_FOURCC))
    finally:
        cap.release()
    if not (0 < fps < 1000):
        fps = 25.0  # containers without a rate (some MJPEG/AVI): assume a common one
    return VideoInfo(
        path=str(path),
        size_bytes=size,
        codec=codec,
        fps=fps,
        frame_count=max(frame_count, 0),
        duration_s=frame_count / fps if frame_count > 0 else 0.0,
        width=width,
        height=height,
        rotation=rotation % 360,
    )


def shortfall(promised_s: float | None, decoded_s: float, step_s: float) -> str | None:
    """Why a decode that stopped at `decoded_s` fell short of the `promised_s` the container
    announced, or None. Allowed: one sampling step `step_s` plus 5 % (at least 0.5 s)."""
    if not promised_s or promised_s <= 0:
        return None  # the container promised nothing to compare with
    if promised_s - decoded_s <= step_s + max(0.5, 0.05 * promised_s):
        return None
    return (f"partial video: the container announces {promised_s:.1f} s but frames could be decoded only up to "
            f"{decoded_s:.1f} s (truncated or corrupt); the faces of the first {decoded_s:.1f} s are kept")


@dataclass(frozen=True)
class Frame:
    index: int  # index in the decoded stream, 0-based
    timestamp_s: float
    image: np.ndarray  # BGR uint8, upright


def iter_frames(path: str | os.PathLike, sample_fps: float | None = None, fps: float | None = None) -> Iterator[Frame]:
    """Yield frames sampled at about `sample_fps` per second (every frame when None/0).

    Sampling keeps a frame when its timestamp reaches the next slot, so the rate holds for
    variable frame rate sources too. Frames that are skipped are grabbed, not decoded to
    BGR, which is cheaper. Stops quietly at a truncated tail; a file that yields no frame
    at all raises VideoError.
    """
    path = Path(path)
    cap = _open(path)
    try:
        fps = fps or float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (0 < fps < 1000):
            fps = 25.0
        step = 1.0 / sample_fps if sample_fps else 0.0
        next_slot = 0.0
        index = -1
        yielded = 0
        while True:
            if not cap.grab():
                break
            index += 1
            msec = cap.get(cv2.CAP_PROP_POS_MSEC)
            ts = msec / 1000.0 if msec and msec > 0 else index / fps
            if index == 0:
                ts = 0.0 if not msec or msec < 0 else ts
            if step and ts + 1e-6 < next_slot:
                continue
            ok, image = cap.retrieve()
            if not ok or image is None:
                break
            if step:
                next_slot = (int(ts / step + 1e-6) + 1) * step
            yielded += 1
            yield Frame(index=index, timestamp_s=ts, image=image)
        if yielded == 0:
            raise VideoError(f"{path.name}: no frame could be decoded (truncated or corrupt video)")
    finally:
        cap.release()
