"""Video probing and frame sampling with OpenCV; the container read with PyAV.

PyAV (FFmpeg's libavformat) reads the container before anything is decoded: which streams
it holds, why it cannot be opened (not a video container, audio only, an mp4 without its
index), and the duration it really presents: an edit list (what `ffmpeg -ss 1 -c copy`
writes) hides the samples before the cut, so an mp4's sample count overstates its length.

Frames are streamed one at a time (memory stays flat in the video's length) and sampled
at an analysis rate: `sample_fps=None` (or 0) keeps every frame. Timestamps come from the
container (CAP_PROP_POS_MSEC) when it reports them, else from the frame index and fps.
OpenCV applies the container's rotation metadata itself (CAP_PROP_ORIENTATION_AUTO), so
frames come out upright and `width`/`height` in `VideoInfo` are the upright size.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import av
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
        read_container(path)  # raises the specific reason when the container is the trouble
        raise VideoError(f"{path.name}: its video stream cannot be decoded here (OpenCV's FFmpeg has no decoder for it)")
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


# Top-level boxes an ISO base media file (mp4, mov, m4v, 3gp) starts with.
_ISO_FIRST_BOXES = frozenset({"ftyp", "styp", "mdat", "moov", "free", "skip", "wide", "pnot", "uuid"})


def _missing_mp4_index(path: Path) -> str | None:
    """Why an ISO base media file (mp4/mov) has no usable index, from its top-level boxes,
    or None when it is not such a file or its `moov` box is whole. The index (`moov`) says
    where every frame lies; a recorder or `ffmpeg` without faststart writes it last, so a
    file cut short (an interrupted copy or download, a camera that lost power) loses it."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            pos, kinds, moov_whole = 0, [], False
            while pos + 8 <= size and len(kinds) < 1000:
                f.seek(pos)
                head = f.read(16)
                length, kind = struct.unpack(">I4s", head[:8])
                if length == 1 and len(head) == 16:
                    length = struct.unpack(">Q", head[8:])[0]
                elif length == 0:
                    length = size - pos  # the last box runs to the end of the file
                name = kind.decode("latin-1")
                if length < 8 or not all(c.isalnum() or c in " -_©" for c in name):
                    break
                if not kinds and name not in _ISO_FIRST_BOXES:
                    return None  # not an ISO base media file
                kinds.append(name)
                if name == "moov":
                    moov_whole = pos + length <= size
                pos += length
    except OSError:
        return None
    if not kinds:
        return None
    if "moov" not in kinds:
        return "the container has no index (moov): the file is incomplete or cut"
    if not moov_whole:
        return "the container's index (moov) is cut short: the file is incomplete or cut"
    return None


@dataclass(frozen=True)
class ContainerFacts:
    """What the container says about its video stream, before anything is decoded."""

    format: str  # libavformat's name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "avi", "matroska,webm"
    codec: str  # e.g. "h264"
    duration_s: float | None  # presented duration (edit lists applied), from the first frame; None if unknown
    header_frames: int  # frame count a header announces (0 if none); an mp4's counts edit-list-hidden samples


def read_container(path: str | os.PathLike) -> ContainerFacts:
    """Open the container with PyAV and read its video stream's facts; raise VideoError with
    the specific reason when it is not a video container, has no index (an mp4 cut before
    its `moov`), or holds no video stream (audio only, a cover picture)."""
    path = Path(path)
    try:
        container = av.open(str(path))
    except av.error.InvalidDataError:
        reason = _missing_mp4_index(path) or "not a video container (no known video format recognises its content)"
        raise VideoError(f"{path.name}: {reason}") from None
    except av.error.FFmpegError as exc:
        reason = _missing_mp4_index(path) or f"the container cannot be read ({exc.strerror or exc})"
        raise VideoError(f"{path.name}: {reason}") from None
    with container:
        kinds = [s.type for s in container.streams]
        # a picture attached to an audio file (album art) is a video stream of one frame
        videos = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
        if not videos:
            if "audio" in kinds:
                raise VideoError(f"{path.name}: no video stream (audio only)")
            held = ", ".join(sorted(set(kinds))) or "none"
            raise VideoError(f"{path.name}: no video stream (streams: {held})")
        stream = videos[0]
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration and container.duration > 0:
            duration = container.duration / av.time_base
        return ContainerFacts(
            format=container.format.name,
            codec=stream.codec_context.name,
            duration_s=duration if duration and duration > 0 else None,
            header_frames=max(int(stream.frames or 0), 0),
        )


def announced_duration(facts: ContainerFacts, fps: float) -> float | None:
    """The duration the container announces for its video, the one decoded frames are
    held against. In MP4/MOV the stream's duration honours the edit list (the sample count
    includes the samples that an edit list hides, e.g. before the cut point of `ffmpeg -ss 1
    -c copy`); elsewhere a header's frame count that promises more than the demuxer's
    duration counts too (an AVI cut short keeps its header's frame count, while libavformat
    measures its duration from the frames it finds). Timestamps of decoded frames count
    from the stream's first frame, as this duration does, so a negative start time shifts
    neither."""
    by_count = facts.header_frames / fps if facts.header_frames and fps > 0 else None
    if facts.format.startswith("mov,") and facts.duration_s:
        return facts.duration_s
    candidates = [d for d in (facts.duration_s, by_count) if d]
    return max(candidates) if candidates else None


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read the container's facts and decode the first frame to prove the file is usable.
    `duration_s` is the duration the container really presents (`announced_duration`), and
    `frame_count` the frames in it."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: file not found")
    size = path.stat().st_size
    if size == 0:
        raise VideoError(f"{path.name}: empty file (0 bytes)")
    facts = read_container(path)
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
    frame_count = max(frame_count, 0)
    duration = announced_duration(facts, fps)
    if duration is None:
        duration = frame_count / fps if frame_count > 0 else 0.0
    elif facts.format.startswith("mov,") and frame_count > duration * fps + 1:
        frame_count = round(duration * fps)  # samples an edit list hides are not frames of the video
    return VideoInfo(
        path=str(path),
        size_bytes=size,
        codec=codec,
        fps=fps,
        frame_count=frame_count,
        duration_s=duration,
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
