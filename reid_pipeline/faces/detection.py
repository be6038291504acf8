"""The per-video processing steps, as plain functions: detect faces in sampled frames,
embed their aligned chips, and the parquet files that carry results between steps (paths
and reads through `reid_pipeline.storage`: a local folder or a bucket)."""

from __future__ import annotations

import functools
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from reid_pipeline.faces.base import FaceBackend, box_iou
from reid_pipeline.faces.chips import embed_jpegs, encode_jpeg
from reid_pipeline.faces.quality import blur_score
from reid_pipeline.ingest.shots import DEFAULT_CUT_THRESHOLD, FrameChange
from reid_pipeline.ingest.video import iter_frames
from reid_pipeline.storage import (
    ROW_GROUP,
    Staged,
    StoragePath,
    asset_path,
    data_root,
    is_local,
    open_parquet,
    read_parquet,
    stamp,
)

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
    "cut_score": pl.Float32,  # colour change from the previous sampled frame, see ingest/shots.py
    "structure_score": pl.Float32,  # layout change, blind to lighting, see ingest/shots.py
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
    embeddings: np.ndarray | None = None  # with an embedder: one unit vector per detection row


def _timed(fn: Callable, *args) -> tuple[list, float]:
    t0 = time.perf_counter()
    found = fn(*args)
    return found, time.perf_counter() - t0


# --------------------------------------------------------------------------- embedding

class ChipEmbedder:
    """Embeds chips on one thread while the video is still being detected (both face
    models run on ONNX Runtime, which releases the GIL). At most 4 batches wait, so a slow
    embedder holds the detector back instead of letting chips pile up in memory."""

    def __init__(self, backend: FaceBackend, batch: int = 16):
        self.backend, self.batch = backend, batch
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="embed")
        self._pending: list[bytes] = []
        self._futures: deque = deque()
        self._done: list[np.ndarray] = [np.zeros((0, backend.dim), dtype=np.float32)]

    def add(self, chips: Sequence[bytes]) -> None:
        self._pending.extend(chips)
        if len(self._pending) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._futures.append(self._pool.submit(embed_jpegs, self.backend, self._pending))
            self._pending = []
        while len(self._futures) > 4:
            self._done.append(self._futures.popleft().result())

    def result(self) -> np.ndarray:
        """Every vector, in the order the chips were added; shuts the thread down."""
        try:
            self._flush()
            while self._futures:
                self._done.append(self._futures.popleft().result())
            return np.concatenate(self._done)
        finally:
            self.close()

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


def embed_detections(detections: pl.DataFrame | StoragePath, backend: FaceBackend, batch: int = 64) -> np.ndarray:
    """(n, dim) unit vectors, one per detection row, from the stored aligned chips: of a
    frame in memory, or of a `frame_detections` file read `batch` rows at a time."""
    empty = np.zeros((0, backend.dim), dtype=np.float32)
    if isinstance(detections, pl.DataFrame):
        chips = detections["chip"].to_list()
        return np.concatenate([empty, *(embed_jpegs(backend, chips[i : i + batch]) for i in range(0, len(chips), batch))])
    with open_parquet(detections) as parquet:
        batches = (b.column("chip").to_pylist() for b in parquet.iter_batches(batch, columns=["chip"], use_threads=False))
        return np.concatenate([empty, *(embed_jpegs(backend, b) for b in batches)])


# --------------------------------------------------------------------------- detection


class DetectionSink:
    """Where `detect_video` puts its rows. Without a path, every column stays in memory.
    With a path, rows are written to a parquet file in row groups of `group` rows while the
    video is decoded, and only the light columns (no chips) stay in memory, so a long video
    costs no more memory than a short one. The file is a local temp file (`storage.Staged`),
    renamed over `path` at the end, or uploaded there when `path` is in a bucket."""

    def __init__(self, path: StoragePath | None = None, group: int = ROW_GROUP):
        self.path, self.group = path, group
        self.rows: dict[str, list] = {name: [] for name in DETECTION_SCHEMA}
        self.count = 0
        self._light: list[pl.DataFrame] = []
        self._writer = None
        self._stage = Staged(path) if path is not None else None

    def append(self, row: dict) -> None:
        self.rows["detection_id"].append(self.count)
        for key, value in row.items():
            self.rows[key].append(value)
        self.count += 1
        if self._stage is not None and len(self.rows["detection_id"]) >= self.group:
            self._flush()

    def _flush(self) -> None:
        df = pl.DataFrame(self.rows, schema=DETECTION_SCHEMA)
        self.rows = {name: [] for name in DETECTION_SCHEMA}
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._stage.local, df.to_arrow().schema)
        self._writer.write_table(df.to_arrow(), row_group_size=self.group)
        self._light.append(df.drop("chip"))

    def close(self) -> pl.DataFrame:
        """The detections: every column, or without `chip` when they went to the file."""
        if self._stage is None:
            return pl.DataFrame(self.rows, schema=DETECTION_SCHEMA)
        if self.rows["detection_id"] or self._writer is None:
            self._flush()
        self._writer.close()
        self._stage.commit()
        return pl.concat(self._light)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._stage is not None:
            self._stage.abort()


ChipSource = Callable[[Iterable[int]], dict[int, bytes]]  # detection ids -> their JPEG chips


def chips_in(detections: pl.DataFrame) -> ChipSource:
    """A chip source over a frame that holds its chips."""
    return lambda ids: dict(
        detections.filter(pl.col("detection_id").is_in(list(ids))).select("detection_id", "chip").iter_rows()
    )


def chips_from_file(path: StoragePath) -> ChipSource:
    """A chip source over a `frame_detections` file (`read_chips`)."""
    return functools.partial(read_chips, path)


def read_detections(path: StoragePath) -> pl.DataFrame:
    """A `frame_detections` file without its chips (the light columns)."""
    return read_parquet(path, columns=[c for c in DETECTION_SCHEMA if c != "chip"])


def _row_groups(parquet: pq.ParquetFile) -> list[tuple[float, float]]:
    """(lowest, highest) detection_id per row group, from the file's statistics (a group
    without statistics covers everything)."""
    column = parquet.schema_arrow.get_field_index("detection_id")
    ranges = []
    for g in range(parquet.metadata.num_row_groups):
        stats = parquet.metadata.row_group(g).column(column).statistics
        ranges.append((stats.min, stats.max) if stats is not None and stats.has_min_max else (-math.inf, math.inf))
    return ranges


def _chips_of_groups(parquet: pq.ParquetFile, groups: list[int]) -> dict[int, bytes]:
    # one thread: Arrow's reader threads each keep their own allocator pages, and over the
    # row groups of a long video that retained memory grew with its length
    table = parquet.read_row_groups(groups, columns=["detection_id", "chip"], use_threads=False)
    return dict(zip(table.column("detection_id").to_pylist(), table.column("chip").to_pylist()))


def read_chips(path: StoragePath, detection_ids: Iterable[int]) -> dict[int, bytes]:
    """The chips of these detections from a `frame_detections` file, reading only the row
    groups that hold them, one at a time (a preview spread over a long video touches many)."""
    wanted, path = {int(i) for i in detection_ids}, data_root(path)
    if not wanted or not path.exists():
        return {}
    found: dict[int, bytes] = {}
    with open_parquet(path) as parquet:
        for g, (lo, hi) in enumerate(_row_groups(parquet)):
            if any(lo <= i <= hi for i in wanted):  # one group at a time: memory stays that of one group
                found.update((i, chip) for i, chip in _chips_of_groups(parquet, [g]).items() if i in wanted)
    return found


def chip_reader(data_root: StoragePath, recheck_s: float = 2.0) -> Callable[[str, int], bytes | None]:
    """chip(partition_key, detection_id) -> the face chip's JPEG bytes (None when gone), for
    pages that show many chips: the last 16 row groups read stay in memory, and a file that
    changed (a re-run or a forget rewrites it) is read again. In a bucket, whether a file
    changed is asked (one HEAD) at most every `recheck_s` seconds per file."""

    @functools.lru_cache(maxsize=64)
    def ranges(path: StoragePath, version: object) -> list[tuple[float, float]]:
        with open_parquet(path) as parquet:
            return _row_groups(parquet)

    @functools.lru_cache(maxsize=16)
    def group(path: StoragePath, version: object, g: int) -> dict[int, bytes]:
        with open_parquet(path) as parquet:
            return _chips_of_groups(parquet, [g])

    @functools.lru_cache(maxsize=256)
    def remote_version(path: StoragePath, tick: int) -> object | None:
        return stamp(path)

    def chip(key: str, detection_id: int) -> bytes | None:
        path = asset_path(data_root, "frame_detections", key)
        fresh = is_local(path) or recheck_s <= 0
        version = stamp(path) if fresh else remote_version(path, int(time.monotonic() / recheck_s))
        if version is None:
            return None
        for g, (lo, hi) in enumerate(ranges(path, version)):
            if lo <= detection_id <= hi:
                return group(path, version, g).get(detection_id)
        return None

    return chip


@dataclass
class Tracking:
    """Which sampled frames are searched whole. Between full searches, a backend with
    `detect_near` searches only around the faces of the previous sampled frame, which costs
    a fraction of a whole (upsampled) frame. A frame is searched whole when it is the first,
    when `full_every` sampled frames have passed since the last whole search, and when its
    colours change as much as at a cut (the colour half of the cut test, so a change of
    lighting costs a whole search too): people who enter a shot without a cut are found at
    the next whole search, at most `full_every` - 1 sampled frames late. `full_every` 1
    searches every frame whole."""

    full_every: int = 4
    keep_frames: int = 3  # sampled frames a face that was not found again is still searched for (as max_gap)
    since_full: int | None = None  # sampled frames planned since the last whole search
    boxes: list = field(default_factory=list)  # (box, sampled frames since seen)

    def plan(self, scores: tuple[float, float]) -> bool:
        """Whether the next sampled frame (with these cut scores) is searched whole."""
        full = (
            self.full_every <= 1
            or self.since_full is None
            or self.since_full + 1 >= self.full_every
            or scores[0] >= DEFAULT_CUT_THRESHOLD
        )
        self.since_full = 0 if full else self.since_full + 1
        return full

    def update(self, found: list) -> None:
        """The faces of the last collected frame, in frame order."""
        seen = [d.box for d in found]
        # a face missed on one frame is still searched for on the next
        kept = [(b, age + 1) for b, age in self.boxes if age < self.keep_frames and all(box_iou(b, s) < 0.3 for s in seen)]
        self.boxes = [(b, 0) for b in seen] + kept


def tracking_for(sample_fps: float | None, video_fps: float | None, full_detect_s: float) -> Tracking:
    """A whole-frame search every `full_detect_s` seconds of video (0: every sampled frame)."""
    rate = sample_fps or video_fps or 25.0
    return Tracking(full_every=max(1, round(full_detect_s * rate)) if full_detect_s > 0 else 1)


def detect_video(
    path: str | Path,
    backend: FaceBackend,
    sample_fps: float | None,
    progress: Callable[[int, float], None] | None = None,
    threads: int = 1,
    tracking: Tracking | None = None,
    embedder: ChipEmbedder | None = None,
    out: StoragePath | None = None,
) -> DetectionRun:
    """Detect every face in the frames sampled at `sample_fps` (None/0: every frame).

    Frames are decoded in order here and searched whole by `threads` worker threads (dlib's
    HOG and ONNX Runtime release the GIL), up to `max(2, full_every) x threads` sampled
    frames ahead of the one being collected (that many frames wait in memory). With
    `tracking` (see `Tracking`) frames between whole searches are searched near the faces
    of the frame before, on this thread and in frame order. With an `embedder`, each frame's chips are
    embedded while later frames are detected (`run.embeddings`, in row order). With `out`,
    detections are written there as they come (`DetectionSink`) and `run.detections` lacks
    the chips. Results keep
    the frame order. `progress(frames_done, timestamp_s)` is called after each sampled
    frame. `detect_s` sums the detector's own time per frame (with threads it exceeds the
    wall time).
    """
    sink = DetectionSink(out)
    frame_rows: dict[str, list] = {name: [] for name in FRAME_SCHEMA}
    run = DetectionRun(detections=pl.DataFrame(schema=DETECTION_SCHEMA))
    tracking = tracking or Tracking(full_every=1)
    near = getattr(backend, "detect_near", None)
    if near is None:
        tracking.full_every = 1

    def collect(frame, scores: tuple[float, float], full: bool, found: list, seconds: float) -> None:
        found = sorted(found, key=lambda d: (d.box[0], d.box[1]))  # the same order however found
        tracking.update(found)
        run.detect_s += seconds
        run.frames_sampled += 1
        run.frames_with_faces += bool(found)
        run.extra["full_searches"] = run.extra.get("full_searches", 0) + full
        for key, value in zip(FRAME_SCHEMA, (frame.index, frame.timestamp_s, len(found), *scores)):
            frame_rows[key].append(value)
        chips = []
        for det in found:
            x1, y1, x2, y2 = det.box
            face_px = min(x2 - x1, y2 - y1)
            chips.append(encode_jpeg(det.chip))
            sink.append({
                "frame_index": frame.index, "timestamp_s": frame.timestamp_s, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                "detector_score": det.score, "landmarks": np.asarray(det.landmarks, dtype=np.float32).reshape(-1).tolist(),
                "yaw": det.yaw, "pitch": det.pitch, "roll": det.roll, "face_px": face_px,
                "blur": blur_score(det.chip, face_px), "chip": chips[-1],
            })
        if embedder is not None:
            embedder.add(chips)
        if progress:
            progress(run.frames_sampled, frame.timestamp_s)

    # Whole searches need nothing but their frame, so they start as soon as the frame is
    # decoded, up to `ahead` sampled frames before the one being collected; a near search
    # needs the faces of the frame before, so it runs here, in frame order, while the
    # pool's threads search later frames whole.
    ahead = max(2, tracking.full_every) * max(1, threads)
    frames = iter_frames(path, sample_fps)
    waiting: deque = deque()  # (frame, scores, full, future of a whole search or None), in frame order
    change = FrameChange()
    try:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            decoding = True
            while decoding or waiting:
                while decoding and len(waiting) < ahead:
                    t0 = time.perf_counter()
                    frame = next(frames, None)
                    run.decode_s += time.perf_counter() - t0
                    if frame is None:
                        decoding = False
                        break
                    scores = change(frame.image)  # cut scores in frame order, on this thread
                    full = tracking.plan(scores)
                    waiting.append((frame, scores, full, pool.submit(_timed, backend.detect, frame.image) if full else None))
                if waiting:
                    frame, scores, full, future = waiting.popleft()
                    found, seconds = future.result() if full else _timed(near, frame.image, [b for b, _ in tracking.boxes])
                    collect(frame, scores, full, found, seconds)
        run.detections = sink.close()
        run.embeddings = embedder.result() if embedder is not None else None
    except BaseException:
        sink.abort()
        if embedder is not None:
            embedder.close()
        raise
    run.frames = pl.DataFrame(frame_rows, schema=FRAME_SCHEMA)
    return run


def embedding_frame(detections: pl.DataFrame, vectors: np.ndarray, backend: FaceBackend) -> pl.DataFrame:
    """detection_id, model, embedding: how embeddings are stored next to their detections."""
    return pl.DataFrame(
        {
            "detection_id": detections["detection_id"],
            "model": [backend.model_name] * detections.height,
            "embedding": pl.Series("embedding", np.asarray(vectors, np.float32).reshape(-1, backend.dim),
                                   dtype=pl.Array(pl.Float32, backend.dim)),
        },
        schema={"detection_id": pl.Int32, "model": pl.String, "embedding": pl.Array(pl.Float32, backend.dim)},
    )


def embeddings_made_during_detection(path: StoragePath, detections: pl.DataFrame, backend: FaceBackend) -> np.ndarray | None:
    """The vectors `frame_detections` made while detecting, when they are this backend's and
    cover these detections row for row; else None (embed the chips again)."""
    if not path.exists():
        return None
    made = read_parquet(path)
    if made.height != detections.height or not made.height:
        return None if made.height or detections.height else np.zeros((0, backend.dim), np.float32)
    if made["model"][0] != backend.model_name or not made["detection_id"].equals(detections["detection_id"]):
        return None
    return made["embedding"].to_numpy().astype(np.float32).reshape(-1, backend.dim)


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
        for r in detections.drop("chip", "landmarks", strict=False).iter_rows(named=True)
    ]


def load_partition_faces(data_root: StoragePath, partition_key: str) -> tuple[pl.DataFrame, np.ndarray, pl.DataFrame, str]:
    """A partition's detections (without their chips: `read_chips`), their unit embeddings
    (same row order), its sampled frames and the embedding model ("" when the video has no
    faces)."""
    detections = read_detections(asset_path(data_root, "frame_detections", partition_key))
    frames = read_parquet(asset_path(data_root, "frame_detections", partition_key, ".frames.parquet"))
    embedded = read_parquet(asset_path(data_root, "face_embeddings", partition_key))
    if not embedded.height:
        return detections, np.zeros((0, 1), np.float32), frames, ""
    joined = detections.select("detection_id").join(embedded, on="detection_id", how="left", maintain_order="left")
    if joined["embedding"].null_count():
        raise ValueError(f"face_embeddings of {partition_key} do not cover its frame_detections; re-materialise face_embeddings")
    dim = embedded.schema["embedding"].size
    return detections, joined["embedding"].to_numpy().astype(np.float32).reshape(-1, dim), frames, embedded["model"][0]
