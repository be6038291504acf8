"""`face_sequences` and `silhouette_report`: per-person tracks and how well they separate."""

import time
import warnings

import dagster as dg
import polars as pl

from assets.faces import face_embeddings, frame_detections
from assets.partitions import videos
from assets.tables import table
from reid_pipeline.faces.detection import chips_from_file, load_partition_faces
from reid_pipeline.presentation.pictures import markdown_image
from reid_pipeline.presentation.report import write_silhouette_report
from reid_pipeline.sequences.silhouette import WARN_BELOW
from reid_pipeline.sequences.tracking import build_sequences, current_columns, gate_for, link_settings_for
from reid_pipeline.storage import read_parquet, write_parquet
from resources import DataStorage, ReidDatabase


class SequenceConfig(dg.Config):
    """Quality gate and linking settings; unset values take those calibrated for the model
    that made the vectors (`reid_pipeline/faces/thresholds.py`)."""

    min_face_px: float | None = None
    min_blur: float | None = None
    max_abs_yaw: float | None = None
    max_abs_pitch: float | None = None
    min_detector_score: float | None = None
    max_appearance_distance: float | None = None
    max_centre_shift: float | None = None
    max_gap: int | None = None
    cut_threshold: float | None = None


def _load(storage: DataStorage, key: str):
    try:
        return load_partition_faces(storage.root, key)
    except ValueError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


@dg.asset(partitions_def=videos, group_name="video", deps=[face_embeddings, frame_detections], kinds={"parquet", "postgres"})
def face_sequences(
    context: dg.AssetExecutionContext, config: SequenceConfig, database: ReidDatabase, storage: DataStorage
) -> dg.MaterializeResult:
    """Faces linked into per-person sequences (appearance + geometry, one assignment per
    sampled frame; a shot cut ends every sequence; gaps of a few frames bridged). Faces that
    fail the quality gate keep their reason. Each sequence has a start/end frame and time,
    face count, quality summary and a template vector (quality-weighted mean): parquet plus
    the `sequences` table (pgvector), and each face's sequence in `faces`."""
    key = context.partition_key
    t0 = time.perf_counter()
    detections, vectors, frames, model = _load(storage, key)
    store = database.store()
    # the gate and linking follow the model that made these vectors, not today's setting
    # (a video without faces has no model: any row will do, nothing is linked)
    calibrated = model or "dlib_resnet_v1"
    try:
        gate = gate_for(calibrated, min_face_px=config.min_face_px, min_detector_score=config.min_detector_score,
                        min_blur=config.min_blur, max_abs_yaw=config.max_abs_yaw, max_abs_pitch=config.max_abs_pitch)
        link = link_settings_for(
            calibrated, max_appearance_distance=config.max_appearance_distance, max_centre_shift=config.max_centre_shift,
            max_gap=config.max_gap, cut_threshold=config.cut_threshold,
        )
    except ValueError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    result = build_sequences(detections, vectors, frames, gate, link)
    seq_df = result.sequences.with_columns(
        template=pl.Series(result.templates.tolist(), dtype=pl.Array(pl.Float32, result.templates.shape[1]))
    )
    write_parquet(seq_df, storage.path("face_sequences", key))
    write_parquet(result.faces, storage.path("face_sequences", key, ".faces.parquet"))
    write_parquet(result.frames, storage.path("face_sequences", key, ".frames.parquet"))  # sampled frames with their shot
    # a video without faces (any more) keeps no sequences, so no stale sightings either
    store.replace_sequences(key, model or None, result.sequences, result.templates, result.faces)
    rejected = result.faces.filter(pl.col("reject_reason").is_not_null())
    reasons = (
        rejected.with_columns(pl.col("reject_reason").str.extract(r"^([a-z ]+)").alias("why"))
        .group_by("why").len().sort("len", descending=True)
    )
    shots = int(result.frames["shot"].max() + 1) if result.frames.height else 0
    metadata = {
        "sequences": result.sequences.height,
        "faces_in_sequences": int(result.faces["sequence_number"].is_not_null().sum()),
        "faces_rejected": rejected.height,
        "reject_reasons": dg.MetadataValue.json(dict(zip(reasons["why"].to_list(), reasons["len"].to_list()))),
        "shots": shots,
        "singleton_sequences": int((result.sequences["face_count"] == 1).sum()),
        "median_sequence_faces": float(result.sequences["face_count"].median() or 0),
        "model": model or "none (no faces)",
        "settings": dg.MetadataValue.json(result.settings),
        "seconds": round(time.perf_counter() - t0, 3),
        "table": "sequences",
    }
    if result.sequences.height:
        metadata["sequences_table"] = table(result.sequences.head(30).iter_rows(named=True), SEQUENCE_COLUMNS)
        metadata["faces_in_gallery"] = storage.video_page(key)  # the sequences' faces
    return dg.MaterializeResult(metadata=metadata)


SEQUENCE_COLUMNS = {"sequence_number": "int", "shot": "int", "start_s": "float", "end_s": "float", "face_count": "int",
                    "mean_quality": "float"}


with warnings.catch_warnings():  # a partitioned check is a "preview" feature of Dagster 1.13
    warnings.simplefilter("ignore", dg.PreviewWarning)
    # Partitioned like the asset: each evaluation belongs to its video, so the Checks tab shows
    # the check of each partition (passed/failed per video). An unpartitioned check on this
    # asset showed one status for all videos: that of the latest run, whichever video it was,
    # e.g. "Execution failed" or "Not evaluated" beside a video whose check had passed.
    SILHOUETTE_CHECK = dg.AssetCheckSpec(
        "silhouette_mean", asset="silhouette_report", partitions_def=videos,
        description="Mean silhouette of the faces over their sequences: >0.7 strong, >0.5 reasonable, >0.25 weak; "
                    "warns below 0.25")


@dg.asset(
    partitions_def=videos,
    group_name="video",
    deps=[face_sequences],
    kinds={"html"},
    check_specs=[SILHOUETTE_CHECK],
)
def silhouette_report(context: dg.AssetExecutionContext, storage: DataStorage) -> dg.MaterializeResult:
    """How well the video's sequences separate: the silhouette coefficient (cosine,
    sequences as clusters) per face, per sequence and overall, with a silhouette plot, a
    2-D projection of the faces coloured by sequence, a contact sheet of sequences and the
    sequence evidence at the busiest moment. PNG and HTML files under the data root (a folder
    or a bucket prefix); the metadata holds the numbers and the two face-free charts, and
    links to the gallery's page of the video for the faces."""
    key = context.partition_key
    detections, vectors, _, _ = _load(storage, key)
    membership = current_columns(read_parquet(storage.path("face_sequences", key, ".faces.parquet")))
    sequences = current_columns(read_parquet(storage.path("face_sequences", key)))
    folder = storage.folder("silhouette_report", key)
    chips = chips_from_file(storage.path("frame_detections", key))
    result, pictures = write_silhouette_report(folder, key, detections, vectors, membership, sequences, chips)
    mean = result.mean
    passed = mean is None or mean >= WARN_BELOW
    check = dg.AssetCheckResult(
        check_name="silhouette_mean",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"mean": float(mean) if mean is not None else float("nan"), "band": result.band, "note": result.note},
        description=None if passed else f"mean silhouette {mean:.2f} < {WARN_BELOW}: sequences look alike; expected when one person "
        "is seen in several shots, a defect when sequences mix people (see the contact sheet)",
    )
    metadata = {
        "mean_silhouette": float(mean) if mean is not None else float("nan"),
        "band": result.band,
        "scored_faces": result.scored_faces,
        "scored_sequences": result.scored_sequences,
        "singleton_sequences": result.singleton_sequences,
        "report": dg.MetadataValue.path(str(folder / "report.html")),
    }
    # charts without faces only; the contact sheet shows faces: on the gallery's page of the video
    for name in ("silhouette_plot", "projection"):
        if name in pictures:
            metadata[name] = dg.MetadataValue.md(markdown_image(pictures[name], name))
    metadata["faces_in_gallery"] = storage.video_page(key)
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
