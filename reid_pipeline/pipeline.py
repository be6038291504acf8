"""The per-video processing steps, as plain functions: detect faces in sampled frames,
embed their aligned chips, and the parquet files that carry results between steps."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import polars as pl

from reid_pipeline.faces.base import FaceBackend
from reid_pipeline.quality import blur_score
from reid_pipeline.shots import FrameChange
from reid_pipeline.video import iter_frames

CHIP_JPEG_QUALITY = 95

DETECTION_SCHEMA = {
    "detection_id": pl.Int32,
    "frame_index": pl.Int32,
    "timestamp_s": pl.Float64,
    "x1": pl.Float32,
    "y1": pl.Float32,
    "x2": pl.Float32,
    "y2": pl.Float32,
    "detector_score": pl.Float32,
    "landmarks": pl.List(pl.Float32),  # 5 points as x0, y0, ..., x4, y4
    "yaw": pl.Float32,
    "pitch": pl.Float32,
    "roll": pl.Float32,
    "face_px": pl.Float32,  # shorter side of the box
    "blur": pl.Float32,  # variance of the Laplacian of the chip: higher is sharper
    "chip": pl.Binary,  # aligned face, JPEG
}


FRAME_SCHEMA = {
    "frame_index": pl.Int32,
    "timestamp_s": pl.Float64,
    "faces": pl.Int32,
    "cut_score": pl.Float32,  # colour change from the previous sampled frame, see shots.py
    "structure_score": pl.Float32,  # layout change, blind to lighting, see shots.py
}


@dataclass
class DetectionRun:
    detections: pl.DataFrame
    frames: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=FRAME_SCHEMA))
    frames_sampled: int = 0
    frames_with_faces: int = 0
    decode_s: float = 0.0
    detect_s: float = 0.0
    extra: dict = field(default_factory=dict)


def encode_jpeg(image_bgr: np.ndarray, quality: int = CHIP_JPEG_QUALITY) -> bytes:
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode a face chip as JPEG")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)


def _timed_detect(backend: FaceBackend, image: np.ndarray) -> tuple[list, float]:
    t0 = time.perf_counter()
    found = backend.detect(image)
    return found, time.perf_counter() - t0


def detect_video(
    path: str | Path,
    backend: FaceBackend,
    sample_fps: float | None,
    progress: Callable[[int, float], None] | None = None,
    threads: int = 1,
) -> DetectionRun:
    """Detect every face in the frames sampled at `sample_fps` (None/0: every frame).

    Frames are decoded in order here and detected by `threads` worker threads (dlib's HOG
    and ONNX Runtime release the GIL, so 2 threads nearly halve the time on 2 cores); at
    most 2 x `threads` frames wait in memory. Results keep the frame order.
    `progress(frames_done, timestamp_s)` is called after each sampled frame. `detect_s` sums
    the detector's own time per frame (with threads it exceeds the wall time).
    """
    rows: dict[str, list] = {name: [] for name in DETECTION_SCHEMA}
    frame_rows: dict[str, list] = {name: [] for name in FRAME_SCHEMA}
    run = DetectionRun(detections=pl.DataFrame(schema=DETECTION_SCHEMA))

    def collect(frame, scores: tuple[float, float], future) -> None:
        found, seconds = future.result()
        run.detect_s += seconds
        run.frames_sampled += 1
        run.frames_with_faces += bool(found)
        for key, value in zip(FRAME_SCHEMA, (frame.index, frame.timestamp_s, len(found), *scores)):
            frame_rows[key].append(value)
        for det in found:
            x1, y1, x2, y2 = det.box
            rows["detection_id"].append(len(rows["detection_id"]))
            rows["frame_index"].append(frame.index)
            rows["timestamp_s"].append(frame.timestamp_s)
            for key, value in zip(("x1", "y1", "x2", "y2"), det.box):
                rows[key].append(value)
            rows["detector_score"].append(det.score)
            rows["landmarks"].append(np.asarray(det.landmarks, dtype=np.float32).reshape(-1).tolist())
            rows["yaw"].append(det.yaw)
            rows["pitch"].append(det.pitch)
            rows["roll"].append(det.roll)
            rows["face_px"].append(min(x2 - x1, y2 - y1))
            rows["blur"].append(blur_score(det.chip, min(x2 - x1, y2 - y1)))
            rows["chip"].append(encode_jpeg(det.chip))
        if progress:
            progress(run.frames_sampled, frame.timestamp_s)

    frames = iter_frames(path, sample_fps)
    waiting: deque = deque()
    change = FrameChange()
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        while True:
            t0 = time.perf_counter()
            frame = next(frames, None)
            run.decode_s += time.perf_counter() - t0
            if frame is None:
                break
            # cut scores in frame order, on this thread
            waiting.append((frame, change(frame.image), pool.submit(_timed_detect, backend, frame.image)))
            while len(waiting) > 2 * max(1, threads):
                collect(*waiting.popleft())
        while waiting:
            collect(*waiting.popleft())
    run.detections = pl.DataFrame(rows, schema=DETECTION_SCHEMA)
    run.frames = pl.DataFrame(frame_rows, schema=FRAME_SCHEMA)
    return run


def embed_detections(detections: pl.DataFrame, backend: FaceBackend, batch: int = 64) -> np.ndarray:
    """(n, dim) unit vectors, one per detection row, from the stored aligned chips."""
    chips = detections["chip"].to_list()
    out = [np.zeros((0, backend.dim), dtype=np.float32)]
    for start in range(0, len(chips), batch):
        out.append(backend.embed([decode_jpeg(c) for c in chips[start : start + batch]]))
    return np.concatenate(out)


def face_rows(detections: pl.DataFrame) -> list[tuple]:
    """Rows for `Store.replace_faces` (FACE_COLUMNS less partition_key, model, embedding)."""
    return [
        (
            r["detection_id"],
            r["frame_index"],
            r["timestamp_s"],
            [r["x1"], r["y1"], r["x2"], r["y2"]],
            r["detector_score"],
            r["face_px"],
            r["blur"],
            r["yaw"],
            r["pitch"],
            r["roll"],
        )
        for r in detections.drop("chip", "landmarks").iter_rows(named=True)
    ]


def asset_path(data_root: str | Path, asset: str, partition_key: str, suffix: str = ".parquet") -> Path:
    """One file per asset and partition under the data root."""
    path = Path(data_root) / asset / f"{partition_key}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_parquet(df: pl.DataFrame, path: Path) -> Path:
    """Write atomically (temp file + rename) so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    df.write_parquet(tmp)
    tmp.replace(path)
    return path


def load_partition_faces(data_root: str | Path, partition_key: str) -> tuple[pl.DataFrame, np.ndarray, pl.DataFrame, str]:
    """A partition's detections, their unit embeddings (same row order), its sampled
    frames and the embedding model ("" when the video has no faces)."""
    detections = pl.read_parquet(asset_path(data_root, "frame_detections", partition_key))
    frames = pl.read_parquet(asset_path(data_root, "frame_detections", partition_key, ".frames.parquet"))
    embedded = pl.read_parquet(asset_path(data_root, "face_embeddings", partition_key))
    if not embedded.height:
        return detections, np.zeros((0, 1), np.float32), frames, ""
    joined = detections.select("detection_id").join(embedded, on="detection_id", how="left", maintain_order="left")
    if joined["embedding"].null_count():
        raise ValueError(f"face_embeddings of {partition_key} do not cover its frame_detections; re-materialise face_embeddings")
    dim = embedded.schema["embedding"].size
    return detections, joined["embedding"].to_numpy().astype(np.float32).reshape(-1, dim), frames, embedded["model"][0]
