"""The silhouette report of one video, as files: plots, a contact sheet of sequences, the
sequence evidence at the busiest moment, per-face scores and an HTML page that shows them."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from reid_pipeline.faces.detection import ChipSource, chips_in
from reid_pipeline.presentation.evidence import evidence_at
from reid_pipeline.presentation.pages import render, spread
from reid_pipeline.presentation.pictures import SheetRow, chip_sheet, projection_plot, sequence_label, silhouette_plot
from reid_pipeline.sequences.silhouette import Silhouette, silhouette
from reid_pipeline.storage import StoragePath, write_bytes, write_parquet, write_text


def chip_ids_of(membership: pl.DataFrame, sequence_number: int, n: int = 6) -> list[int]:
    """Up to `n` detections of a sequence, spread over its span."""
    ids = membership.filter(pl.col("sequence_number") == sequence_number)["detection_id"].sort().to_list()
    return [ids[i] for i in spread(len(ids), n)]


def write_silhouette_report(
    folder: StoragePath,
    partition_key: str,
    detections: pl.DataFrame,
    vectors: np.ndarray,
    membership: pl.DataFrame,
    sequences: pl.DataFrame,
    chips: ChipSource | None = None,
) -> tuple[Silhouette, dict[str, bytes]]:
    """Score the sequences and write the report's files into `folder`; returns the scores
    and the pictures (PNG bytes by name) that were written: the silhouette and projection
    plots only where there is a silhouette (two sequences of 2+ faces). `folder` is local or in a bucket
    (`reid_pipeline.storage`). Chips come from `chips`
    (default: the detections' `chip` column)."""
    chips = chips or chips_in(detections)
    ids = membership["sequence_number"].fill_null(-1).to_numpy()
    result = silhouette(vectors, ids)
    pictures = {}
    if result.mean is not None:  # with fewer than two sequences the plots would compare nothing (and cost ~1 s)
        pictures["silhouette_plot"] = silhouette_plot(result, ids)
        pictures["projection"] = projection_plot(vectors, ids)
    shown = [(s, chip_ids_of(membership, s["sequence_number"])) for s in sequences.head(40).iter_rows(named=True)]
    found = chips([i for _, ids in shown for i in ids])
    scores = {n: f", s={v:.2f}" for n, v in result.per_sequence.items()}
    pictures["contact_sheet"] = chip_sheet([
        SheetRow([found[i] for i in ids if i in found], sequence_label(s, scores.get(s["sequence_number"], ""))) for s, ids in shown
    ])
    if sequences.height:
        # the busiest moment: the sampled frame with the most sequences on screen
        counts = membership.drop_nulls("sequence_number").join(detections.select("detection_id", "frame_index"), on="detection_id")
        busiest = int(counts.group_by("frame_index").len().sort(["len", "frame_index"], descending=[True, False])["frame_index"][0])
        _, pictures[f"evidence_frame_{busiest}"] = evidence_at(detections, membership, sequences, frame_index=busiest, chips=chips)
    for name, png in pictures.items():
        write_bytes(folder / f"{name}.png", png)
    summary = {
        "mean": result.mean, "band": result.band, "scored_faces": result.scored_faces,
        "scored_sequences": result.scored_sequences, "singleton_sequences": result.singleton_sequences,
        "note": result.note, "per_sequence": result.per_sequence,
    }
    write_text(folder / "silhouette.json", json.dumps(summary, indent=2))
    write_parquet(
        membership.select("detection_id", "sequence_number").with_columns(silhouette=pl.Series(result.per_face, dtype=pl.Float32)),
        folder / "per_face.parquet",
    )
    write_text(folder / "report.html", render(
        "silhouette", title=f"silhouette {partition_key}", mean=f"{result.mean:.3f}" if result.mean is not None else "none",
        band=result.band, faces=result.scored_faces, sequences=result.scored_sequences,
        singletons=result.singleton_sequences, note=result.note, pictures=list(pictures),
    ))
    return result, pictures
