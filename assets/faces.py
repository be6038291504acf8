"""`frame_detections` and `face_embeddings`: faces in sampled frames, then their vectors."""


import os
import time

import dagster as dg
import polars as pl

from assets.ingest import raw_video, video_failure
from assets.partitions import videos
from assets.settings import settings
from reid_pipeline.faces.chips import decode_jpeg
from reid_pipeline.faces.detection import (
    DETECTION_SCHEMA,
    FRAME_SCHEMA,
    ChipEmbedder,
    detect_video,
    embed_detections,
    embedding_frame,
    embeddings_made_during_detection,
    face_rows,
    read_chips,
    read_detections,
    tracking_for,
)
from reid_pipeline.ingest.video import VideoError, shortfall
from reid_pipeline.storage import write_parquet
from resources import DataStorage, FaceModel, ReidDatabase


class DetectionConfig(dg.Config):
    sample_fps: float = settings.sample_fps  # frames taken per second of video; 0 = every frame
    detect_threads: int | None = settings.detect_threads  # frames detected at once (whole-frame searches); unset: the backend's own
    # whole-frame search every N s of video; 0 = every sampled frame; unset: the backend's own
    full_detect_s: float | None = settings.full_detect_s


# `FaceBackend.describe()` keys that mean the same under another name in some backends
BACKEND_FIELD_NAMES = {"recognition": "recogniser", "descriptor_runtime": "runtime"}
BACKEND_FIELD_ORDER = ("backend", "detector", "recogniser", "runtime", "providers", "source")


def backend_fields(facts: dict) -> dict[str, str]:
    """The face backend's facts (`describe()`) as separate text fields of the metadata, in
    the order detector, recogniser, runtime, providers, source, then any others the backend
    gives (the model is its own field already; the dimension is `face_embeddings`')."""
    named = {BACKEND_FIELD_NAMES.get(k, k): str(v) for k, v in facts.items() if k not in ("model", "dim")}
    order = [k for k in BACKEND_FIELD_ORDER if k in named] + [k for k in named if k not in BACKEND_FIELD_ORDER]
    return {k: named[k] for k in order}


def rates_note(sample_fps: float, frames: int, duration_s: float, processing_s: float, whole_searches: int) -> str:
    """What `sample_fps` and `frames_per_processing_s` measure, with this run's numbers: the
    first is a rate in the video's time, the second a speed in the machine's."""
    taken = f"{sample_fps:g} frames per second of video" if sample_fps else "every frame of the video"
    speed = frames / processing_s if processing_s else 0.0
    searched = ("each searched whole" if whole_searches >= frames else
                f"{whole_searches} searched whole, the others around the faces of the frame before (tracking: cheaper, "
                "still analysed)")
    return (f"sample_fps is the requested sampling, in the video's time: {taken} (never more than the video has), "
            f"{frames} frames of the {duration_s:.1f} s video. frames_per_processing_s ({speed:.2f}) is this step's "
            f"speed, in the machine's time: those {frames} frames analysed in {processing_s:.1f} s of wall-clock time "
            "(decoding, face search, alignment, quality, embedding, writing); it depends on the machine and the backend, "
            f"and no sampled frame is left out ({searched}).")


@dg.asset(partitions_def=videos, group_name="video", deps=[raw_video], kinds={"parquet"}, pool="face_model")
def frame_detections(
    context: dg.AssetExecutionContext,
    config: DetectionConfig,
    database: ReidDatabase,
    face_model: FaceModel,
    storage: DataStorage,
) -> dg.MaterializeResult:
    """One row per face detected in the sampled frames: frame index, timestamp, box,
    detector score, 5 landmarks, head pose (yaw, pitch, roll), quality measures (face size,
    blur) and an aligned face chip (JPEG). Written to parquet under the data root, with a
    second file (`.frames.parquet`) listing every sampled frame and its shot-cut score.
    A duplicate video is skipped with its reason; a faceless video yields zero rows; a video
    whose frames end well before the duration its container announces is marked `partial`."""
    key = context.partition_key
    store = database.store()
    video = store.get_video(key)
    out = storage.path("frame_detections", key)
    if video["status"] == "duplicate":
        write_parquet(pl.DataFrame(schema=DETECTION_SCHEMA), out)
        write_parquet(pl.DataFrame(schema=FRAME_SCHEMA), storage.path("frame_detections", key, ".frames.parquet"))
        return dg.MaterializeResult(
            metadata={"faces": 0, "skipped": f"duplicate of partition {video['duplicate_of']}", "path": str(out)}
        )
    backend = face_model.get()
    context.log.info(f"face backend: {backend.describe()}")
    expected = max(1, int((video["duration_s"] or 0) * (config.sample_fps or video["fps"] or 25)))
    last_logged = [time.monotonic()]

    def progress(done: int, ts: float) -> None:
        if time.monotonic() - last_logged[0] > 3:
            last_logged[0] = time.monotonic()
            context.log.info(f"{done}/{expected} frames analysed ({ts:.1f} s into the video)")

    full_detect_s = config.full_detect_s if config.full_detect_s is not None else getattr(backend, "full_detect_s", 1.0)
    threads = config.detect_threads or min(getattr(backend, "detect_threads", 2), os.cpu_count() or 1)
    t0 = time.perf_counter()
    try:
        run = detect_video(
            storage.s3.local_path(video["source_uri"]),
            backend,
            config.sample_fps,
            progress,
            threads,
            tracking_for(config.sample_fps, video["fps"], full_detect_s),
            ChipEmbedder(backend),
            out,
        )
    except VideoError as exc:
        raise video_failure(store, key, exc) from exc
    wall = time.perf_counter() - t0
    frame_s = 1.0 / (video["fps"] or 25.0)
    decoded_s = float(run.frames["timestamp_s"].max() or 0.0) + frame_s if run.frames.height else 0.0
    partial = shortfall(video["duration_s"], decoded_s, 1.0 / config.sample_fps if config.sample_fps else frame_s)
    if partial:
        store.mark_partial(key, partial)
        context.log.warning(partial)
    write_parquet(run.frames, storage.path("frame_detections", key, ".frames.parquet"))
    write_parquet(embedding_frame(run.detections, run.embeddings, backend), storage.path("frame_detections", key, ".embeddings.parquet"))
    df = run.detections
    metadata = {
        "faces": df.height,
        "frames_sampled": run.frames_sampled,
        "frames_with_faces": run.frames_with_faces,
        "sample_fps": config.sample_fps,
        "frames_per_processing_s": round(run.frames_sampled / wall, 2) if wall else 0.0,
        "rates": rates_note(config.sample_fps, run.frames_sampled, video["duration_s"] or decoded_s, wall,
                            run.extra.get("full_searches", 0)),
        "model": backend.model_name,
        **backend_fields(backend.describe()),
        "decode_s": round(run.decode_s, 3),
        "detect_s": round(run.detect_s, 3),
        "processing_s": round(wall, 3),
        "detect_threads": threads,
        "whole_frame_searches": run.extra.get("full_searches", 0),
        "decoded_s": round(decoded_s, 2),
        "path": str(out),
    }
    if partial:
        metadata["partial"] = partial
    if df.height:
        metadata["median_face_px"] = float(df["face_px"].median())
        metadata["median_blur"] = round(float(df["blur"].median()), 1)
        # the faces themselves: on the gallery's page of the video, behind its secret (never in metadata)
        metadata["faces_in_gallery"] = storage.video_page(key)
    else:
        context.log.warning(f"no faces found in {run.frames_sampled} sampled frames")
        metadata["note"] = f"no faces found in {run.frames_sampled} sampled frames"
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(partitions_def=videos, group_name="video", deps=[frame_detections], kinds={"parquet", "postgres"}, pool="face_model")
def face_embeddings(
    context: dg.AssetExecutionContext, database: ReidDatabase, face_model: FaceModel, storage: DataStorage
) -> dg.MaterializeResult:
    """One unit vector per detected face, with the model's name and dimension: parquet
    under the data root and rows in the `faces` table (pgvector, binary COPY, per-model
    HNSW cosine index). Re-materialising replaces the partition's rows."""
    key = context.partition_key
    store = database.store()
    path = storage.path("frame_detections", key)
    detections = read_detections(path)
    backend = face_model.get()
    first = detections["detection_id"][0] if detections.height else None
    if first is not None and decode_jpeg(read_chips(path, [first])[first]).shape[0] != backend.chip_size:
        raise dg.Failure(
            description=f"frame_detections of {key} were made by another face backend than {backend.model_name}; "
            "re-materialise frame_detections first",
            allow_retries=False,
        )
    t0 = time.perf_counter()
    vectors = embeddings_made_during_detection(storage.path("frame_detections", key, ".embeddings.parquet"), detections, backend)
    reused = vectors is not None
    if vectors is None:
        vectors = embed_detections(path, backend)
    embed_s = time.perf_counter() - t0
    write_parquet(embedding_frame(detections, vectors, backend), storage.path("face_embeddings", key))
    t1 = time.perf_counter()
    store.ensure_model(backend.model_name, backend.name, backend.dim)
    stored = store.replace_faces(key, backend.model_name, face_rows(detections), vectors)
    metadata = {
        "faces": stored,
        "model": backend.model_name,
        "dim": backend.dim,
        "embedded_during_detection": reused,
        "embed_s": round(embed_s, 3),
        "ms_per_face": round(1000 * embed_s / stored, 1) if stored and not reused else 0.0,
        "db_write_s": round(time.perf_counter() - t1, 3),
        "table": "faces",
    }
    if detections.height:
        metadata["faces_in_gallery"] = storage.video_page(key)
    return dg.MaterializeResult(metadata=metadata)
