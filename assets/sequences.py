"""`face_sequences` and `silhouette_report`: per-person tracks and how well they separate."""

import json
import time

import dagster as dg
import numpy as np
import polars as pl

from assets.faces import face_embeddings, frame_detections
from assets.partitions import videos
from reid_pipeline.evidence import evidence_at
from reid_pipeline.preview import markdown_image
from reid_pipeline.sequences import QualityGate, build_sequences, link_settings_for
from reid_pipeline.silhouette import WARN_BELOW, projection_plot, sequence_sheet, silhouette, silhouette_plot
from reid_pipeline.pipeline import write_parquet
from resources import DataStorage, ReidDatabase


class SequenceConfig(dg.Config):
    """Quality gate and linking settings; unset linking values take the model's defaults."""

    min_face_px: float = QualityGate.min_face_px
    min_blur: float = QualityGate.min_blur
    max_abs_yaw: float = QualityGate.max_abs_yaw
    max_abs_pitch: float = QualityGate.max_abs_pitch
    min_detector_score: float = QualityGate.min_detector_score
    max_appearance_distance: float | None = None
    max_centre_shift: float | None = None
    max_gap: int | None = None
    cut_threshold: float | None = None


def load_faces(storage: DataStorage, key: str) -> tuple[pl.DataFrame, np.ndarray, pl.DataFrame, str]:
    """A partition's detections, their embeddings (same row order), sampled frames, model."""
    detections = pl.read_parquet(storage.path("frame_detections", key))
    frames = pl.read_parquet(storage.path("frame_detections", key, ".frames.parquet"))
    embedded = pl.read_parquet(storage.path("face_embeddings", key))
    joined = detections.select("detection_id").join(embedded, on="detection_id", how="left", maintain_order="left")
    if joined["embedding"].null_count():
        raise dg.Failure(description=f"face_embeddings of {key} do not cover frame_detections; re-materialise face_embeddings")
    dim = embedded.schema["embedding"].size if embedded.height else 1
    vectors = joined["embedding"].to_numpy().astype(np.float32).reshape(-1, dim) if embedded.height else np.zeros((0, 1), np.float32)
    model = embedded["model"][0] if embedded.height else ""
    return detections, vectors, frames, model


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
    detections, vectors, frames, model = load_faces(storage, key)
    store = database.store()
    # the linking defaults follow the model that made these vectors, not today's setting
    family = next((m["backend"] for m in store.models() if m["model"] == model), "dlib")
    gate = QualityGate(config.min_face_px, config.min_detector_score, config.min_blur, config.max_abs_yaw, config.max_abs_pitch)
    link = link_settings_for(
        family, max_appearance_distance=config.max_appearance_distance, max_centre_shift=config.max_centre_shift,
        max_gap=config.max_gap, cut_threshold=config.cut_threshold,
    )
    result = build_sequences(detections, vectors, frames, gate, link)
    seq_df = result.sequences.with_columns(
        template=pl.Series(result.templates.tolist(), dtype=pl.Array(pl.Float32, result.templates.shape[1]))
    )
    write_parquet(seq_df, storage.path("face_sequences", key))
    write_parquet(result.faces, storage.path("face_sequences", key, ".faces.parquet"))
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
        "faces_in_sequences": int(result.faces["sequence_id"].is_not_null().sum()),
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
        metadata["sequences_table"] = dg.MetadataValue.md(_markdown_table(result.sequences.head(30)))
    return dg.MaterializeResult(metadata=metadata)


def _markdown_table(df: pl.DataFrame) -> str:
    cols = ["sequence_id", "shot", "start_s", "end_s", "face_count", "mean_quality"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.select(cols).iter_rows():
        lines.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def _chips_of(detections: pl.DataFrame, membership: pl.DataFrame, sequence_id: int, n: int = 6) -> list[bytes]:
    ids = membership.filter(pl.col("sequence_id") == sequence_id)["detection_id"]
    chips = detections.filter(pl.col("detection_id").is_in(ids.to_list()))["chip"].to_list()
    picks = np.linspace(0, len(chips) - 1, min(n, len(chips))).round().astype(int) if chips else []
    return [chips[i] for i in picks]


@dg.asset(
    partitions_def=videos,
    group_name="video",
    deps=[face_sequences],
    kinds={"html"},
    check_specs=[dg.AssetCheckSpec("silhouette_mean", asset="silhouette_report",
                                   description="Mean silhouette of the faces over their sequences: >0.7 strong, >0.5 reasonable, >0.25 weak; warns below 0.25")],
)
def silhouette_report(context: dg.AssetExecutionContext, storage: DataStorage) -> dg.MaterializeResult:
    """How well the video's sequences separate: the silhouette coefficient (cosine,
    sequences as clusters) per face, per sequence and overall, with a silhouette plot, a
    2-D projection of the faces coloured by sequence, a contact sheet of sequences and the
    sequence evidence at the busiest moment. PNG and HTML files under the data root."""
    key = context.partition_key
    detections, vectors, _, _ = load_faces(storage, key)
    membership = pl.read_parquet(storage.path("face_sequences", key, ".faces.parquet"))
    sequences = pl.read_parquet(storage.path("face_sequences", key))
    ids = membership["sequence_id"].fill_null(-1).to_numpy()
    result = silhouette(vectors, ids) if len(vectors) else silhouette(np.zeros((0, 1)), ids)
    folder = storage.folder("silhouette_report", key)
    pictures = {
        "silhouette_plot": silhouette_plot(result, ids),
        "projection": projection_plot(vectors, ids) if len(vectors) >= 2 else None,
        "contact_sheet": sequence_sheet([
            (f"sequence {s['sequence_id']}\n{s['start_s']:.1f}-{s['end_s']:.1f} s\n{s['face_count']} faces"
             + (f", s={result.per_sequence[s['sequence_id']]:.2f}" if s["sequence_id"] in result.per_sequence else ""),
             _chips_of(detections, membership, s["sequence_id"]))
            for s in sequences.head(40).iter_rows(named=True)
        ]),
    }
    if sequences.height:
        # the busiest moment: the sampled frame with the most sequences on screen
        counts = membership.drop_nulls("sequence_id").join(detections.select("detection_id", "frame_index"), on="detection_id")
        busiest = int(counts.group_by("frame_index").len().sort(["len", "frame_index"], descending=[True, False])["frame_index"][0])
        _, pictures[f"evidence_frame_{busiest}"] = evidence_at(detections, membership, sequences, frame_index=busiest)
    files = {}
    for name, png in pictures.items():
        if png is not None:
            files[name] = folder / f"{name}.png"
            files[name].write_bytes(png)
    summary = {
        "mean": result.mean, "band": result.band, "scored_faces": result.scored_faces,
        "scored_sequences": result.scored_sequences, "singleton_sequences": result.singleton_sequences,
        "note": result.note, "per_sequence": result.per_sequence,
    }
    (folder / "silhouette.json").write_text(json.dumps(summary, indent=2))
    write_parquet(
        membership.select("detection_id", "sequence_id").with_columns(silhouette=pl.Series(result.per_face, dtype=pl.Float32)),
        folder / "per_face.parquet",
    )
    html = "".join(f"<h2>{n}</h2><img src='{p.name}'>" for n, p in files.items())
    (folder / "report.html").write_text(
        f"<html><head><meta charset='utf-8'><title>silhouette {key}</title></head><body>"
        f"<h1>{key}</h1><p>mean silhouette: {result.mean if result.mean is not None else 'undefined'} ({result.band}); "
        f"{result.scored_faces} faces in {result.scored_sequences} sequences; "
        f"{result.singleton_sequences} singleton sequences left out. {result.note}</p>{html}</body></html>"
    )
    mean = result.mean
    passed = mean is None or mean >= WARN_BELOW
    check = dg.AssetCheckResult(
        check_name="silhouette_mean",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"mean": float(mean) if mean is not None else float("nan"), "band": result.band, "note": result.note},
        description=None if passed else f"mean silhouette {mean:.2f} < {WARN_BELOW}: sequences may mix people",
    )
    metadata = {
        "mean_silhouette": float(mean) if mean is not None else float("nan"),
        "band": result.band,
        "scored_faces": result.scored_faces,
        "scored_sequences": result.scored_sequences,
        "singleton_sequences": result.singleton_sequences,
        "report": dg.MetadataValue.path(str(folder / "report.html")),
    }
    for name in ("silhouette_plot", "projection", "contact_sheet"):
        if name in files:
            metadata[name] = dg.MetadataValue.md(markdown_image(pictures[name], name))
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
