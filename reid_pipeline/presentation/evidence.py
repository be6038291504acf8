"""Sequence evidence: for a moment of a video, the sequences on screen with their chips."""

from __future__ import annotations

import polars as pl

from reid_pipeline.faces.detection import ChipSource, chips_in
from reid_pipeline.presentation.pictures import SheetRow, chip_sheet, sequence_label
from reid_pipeline.sequences.tracking import active_at


def evidence_at(
    detections: pl.DataFrame,
    membership: pl.DataFrame,
    sequences: pl.DataFrame,
    frame_index: int | None = None,
    time_s: float | None = None,
    chips_per_sequence: int = 6,
    chips: ChipSource | None = None,
) -> tuple[pl.DataFrame, bytes]:
    """The sequences active at `frame_index` (or `time_s`) and a PNG: one row per sequence
    with its id, time span and the chips nearest that moment (the face at that very frame
    first when there is one). Chips come from `chips` (default: the `chip` column)."""
    active = active_at(sequences, frame_index, time_s)
    faces = detections.join(membership.select("detection_id", "sequence_number"), on="detection_id")
    moment = frame_index if frame_index is not None else None
    picked = []
    for seq in active.iter_rows(named=True):
        members = faces.filter(pl.col("sequence_number") == seq["sequence_number"])
        if moment is None:
            members = members.with_columns(d=(pl.col("timestamp_s") - time_s).abs())
        else:
            members = members.with_columns(d=(pl.col("frame_index") - moment).abs())
        ids = members.sort("d").head(chips_per_sequence).sort("frame_index")["detection_id"].to_list()
        picked.append((sequence_label(seq), ids))
    found = (chips or chips_in(detections))([i for _, ids in picked for i in ids])
    return active, chip_sheet([SheetRow([found[i] for i in ids if i in found], label) for label, ids in picked])
