"""Face sequences: the faces of one person while they stay on screen.

Faces of consecutive sampled frames are linked by solving an assignment per frame
(scipy's `linear_sum_assignment`) over a cost that mixes appearance (cosine distance of the
embedding to the sequence's recent template) and geometry (how far the face's centre is
from where the sequence's motion predicts it, in face widths). Rules:

- a face must pass the quality gate to join or start a sequence; rejected faces keep the
  reason (`reject_reason`) so the gate can be inspected and tuned;
- a shot cut ends every open sequence, except one whose face is on the frame after the
  cut in the same place (half a face width), at the same size and with nearly the same
  appearance (half the usual appearance limit): a cut that leaves a person where they were
  is not the end of their sequence;
- two faces of one frame never share a sequence (the assignment is one-to-one);
- a sequence may miss up to `max_gap` sampled frames and continue (a face missed once does
  not split it).

Each sequence gets a template: the quality-weighted mean of its unit embeddings,
re-normalised.

Names: a sequence's `sequence_number` is its number within the video (0, 1, ...);
`sequence_id` is always the row id the database gives it (`sequences.id`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
from scipy.optimize import linear_sum_assignment

from reid_pipeline.faces.base import l2_normalise
from reid_pipeline.faces.thresholds import thresholds_for
from reid_pipeline.ingest.shots import DEFAULT_CUT_THRESHOLD, DEFAULT_STRUCTURE_THRESHOLD, shot_ids

_INFEASIBLE = 1e6


@dataclass(frozen=True)
class QualityGate:
    """Limits a face must meet to join or start a sequence."""

    # Calibrated for dlib on real faces (docs/calibration.md): its 5-point pose estimate
    # overshoots (a three-quarter face reads 50-90 degrees), so the pose limits are wide.
    min_face_px: float = 40.0
    min_detector_score: float = -1e9  # detector scores are not comparable across backends
    min_blur: float = 5.0  # variance of the Laplacian on the 112-px chip
    max_abs_yaw: float = 70.0
    max_abs_pitch: float = 50.0

    def reasons(self, detections: pl.DataFrame) -> list[str | None]:
        out = []
        for r in detections.select("face_px", "detector_score", "blur", "yaw", "pitch").iter_rows():
            face_px, score, blur, yaw, pitch = r
            if face_px < self.min_face_px:
                out.append(f"small face ({face_px:.0f} px < {self.min_face_px:.0f})")
            elif score < self.min_detector_score:
                out.append(f"low detector score ({score:.2f} < {self.min_detector_score:.2f})")
            elif blur < self.min_blur:
                out.append(f"blurred ({blur:.0f} < {self.min_blur:.0f})")
            elif abs(yaw) > self.max_abs_yaw:
                out.append(f"turned away (yaw {yaw:.0f})")
            elif abs(pitch) > self.max_abs_pitch:
                out.append(f"tilted (pitch {pitch:.0f})")
            else:
                out.append(None)
        return out


@dataclass(frozen=True)
class LinkSettings:
    """How faces of consecutive sampled frames are linked. The appearance limits depend on
    the model (`link_settings_for`, `thresholds.MODELS`); dlib's values are the defaults."""

    max_appearance_distance: float = 0.07  # cosine distance to the sequence's recent template
    max_centre_shift: float = 2.0  # face widths per sampled frame, after motion prediction
    max_gap: int = 3  # sampled frames a sequence may miss and continue
    geometry_weight: float = 0.5  # weight of the geometry term against appearance
    template_momentum: float = 0.5  # how much of the running template survives each new face
    cut_threshold: float = DEFAULT_CUT_THRESHOLD
    structure_threshold: float = DEFAULT_STRUCTURE_THRESHOLD
    # across a cut a sequence continues only with a face this close in appearance, within
    # `cut_centre_shift` face widths of where it was and at `cut_size_ratio` of its size
    cut_appearance_distance: float = 0.035
    cut_centre_shift: float = 0.5
    cut_size_ratio: float = 1.25


def link_settings_for(model: str, **overrides) -> LinkSettings:
    """The linking settings calibrated for embedding model `model` (`thresholds.MODELS`);
    `overrides` that are not None win."""
    base = thresholds_for(model).linking
    return LinkSettings(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


def gate_for(model: str, **overrides) -> QualityGate:
    """The quality gate calibrated for `model`; `overrides` that are not None win."""
    base = thresholds_for(model).gate
    return QualityGate(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


def quality_weight(face_px: np.ndarray, blur: np.ndarray, yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """A face's weight in its sequence's template, in (0, 1]: bigger, sharper, more frontal
    faces count more."""
    size = np.clip(np.asarray(face_px, float) / 80.0, 0.1, 1.0)
    sharp = np.clip(np.asarray(blur, float) / 100.0, 0.1, 1.0)
    frontal = np.clip(np.cos(np.radians(np.asarray(yaw, float))) * np.cos(np.radians(np.asarray(pitch, float))), 0.1, 1.0)
    return size * sharp * frontal


@dataclass
class _Open:
    sequence_number: int
    template: np.ndarray  # running appearance, unit vector
    box: np.ndarray  # last x1, y1, x2, y2
    velocity: np.ndarray  # centre motion per sampled frame
    last_pos: int  # position (sampled-frame ordinal) of the last face


@dataclass
class SequenceResult:
    faces: pl.DataFrame  # detection_id, quality_weight, reject_reason, sequence_number, shot
    sequences: pl.DataFrame  # one row per sequence, with its template
    templates: np.ndarray  # (n_sequences, dim), row i = sequence i
    frames: pl.DataFrame  # sampled frames with their shot
    settings: dict = field(default_factory=dict)


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def build_sequences(
    detections: pl.DataFrame,
    embeddings: np.ndarray,
    frames: pl.DataFrame,
    gate: QualityGate = QualityGate(),
    link: LinkSettings = LinkSettings(),
) -> SequenceResult:
    """Link faces into sequences. `detections` rows and `embeddings` rows correspond;
    `frames` lists every sampled frame (frame_index, timestamp_s, cut_score)."""
    embeddings = l2_normalise(embeddings) if len(embeddings) else np.zeros((0, 1), np.float32)
    frames = frames.sort("frame_index")
    structure = frames["structure_score"].to_numpy() if "structure_score" in frames.columns else None
    frames = frames.with_columns(
        shot=pl.Series(shot_ids(frames["cut_score"].to_numpy(), link.cut_threshold, structure, link.structure_threshold))
    )
    position = {f: i for i, f in enumerate(frames["frame_index"].to_list())}
    shot_of = dict(zip(frames["frame_index"].to_list(), frames["shot"].to_list()))
    reasons = gate.reasons(detections)
    weights = quality_weight(detections["face_px"], detections["blur"], detections["yaw"], detections["pitch"])
    boxes = detections.select("x1", "y1", "x2", "y2").to_numpy().astype(np.float64)
    sequence_of = np.full(detections.height, -1, dtype=np.int64)

    by_frame: dict[int, list[int]] = {}
    for row, (frame_index, reason) in enumerate(zip(detections["frame_index"].to_list(), reasons)):
        if reason is None:
            by_frame.setdefault(frame_index, []).append(row)

    open_: list[_Open] = []
    next_id = 0
    current_shot = None
    for frame_index in frames["frame_index"].to_list():
        pos, shot = position[frame_index], shot_of[frame_index]
        at_cut = current_shot is not None and shot != current_shot
        current_shot = shot
        if at_cut:  # only a sequence seen on the frame before the cut may go on
            open_ = [s for s in open_ if s.last_pos == pos - 1]
        open_ = [s for s in open_ if pos - s.last_pos - 1 <= link.max_gap]
        rows = by_frame.get(frame_index, [])
        matched: dict[int, int] = {}
        if open_ and rows:
            max_appearance = link.cut_appearance_distance if at_cut else link.max_appearance_distance
            cost = np.full((len(open_), len(rows)), _INFEASIBLE)
            for i, seq in enumerate(open_):
                steps = pos - seq.last_pos
                predicted = _centre(seq.box) + seq.velocity * steps
                width = max(seq.box[2] - seq.box[0], 1.0)
                max_shift = link.cut_centre_shift if at_cut else link.max_centre_shift * steps
                for j, row in enumerate(rows):
                    appearance = 1.0 - float(embeddings[row] @ seq.template)
                    shift = float(np.linalg.norm(_centre(boxes[row]) - predicted)) / width
                    size = max(boxes[row][2] - boxes[row][0], 1.0) / width
                    if at_cut and not 1 / link.cut_size_ratio <= size <= link.cut_size_ratio:
                        continue
                    if appearance <= max_appearance and shift <= max_shift:
                        cost[i, j] = appearance / max_appearance + link.geometry_weight * shift / max_shift
            for i, j in zip(*linear_sum_assignment(cost)):
                if cost[i, j] < _INFEASIBLE:
                    matched[j] = i
        for j, row in enumerate(rows):
            if j in matched:
                seq = open_[matched[j]]
                steps = pos - seq.last_pos
                seq.velocity = (_centre(boxes[row]) - _centre(seq.box)) / steps
                seq.box = boxes[row]
                seq.template = l2_normalise(
                    (link.template_momentum * seq.template + (1 - link.template_momentum) * embeddings[row])[None]
                )[0]
                seq.last_pos = pos
            else:
                seq = _Open(next_id, embeddings[row].copy(), boxes[row], np.zeros(2), pos)
                next_id += 1
                open_.append(seq)
            sequence_of[row] = seq.sequence_number
        if at_cut:  # the sequences that did not go on across the cut end here
            open_ = [s for s in open_ if s.last_pos == pos]

    faces = pl.DataFrame(
        {
            "detection_id": detections["detection_id"],
            "quality_weight": pl.Series(weights, dtype=pl.Float32),
            "reject_reason": pl.Series(reasons, dtype=pl.Utf8),
            "sequence_number": pl.Series([int(s) if s >= 0 else None for s in sequence_of], dtype=pl.Int32),
            "shot": pl.Series([shot_of.get(f) for f in detections["frame_index"].to_list()], dtype=pl.Int32),
        }
    )
    dim = embeddings.shape[1]
    templates = np.zeros((next_id, dim), dtype=np.float32)
    seq_rows = []
    for sid in range(next_id):
        members = np.flatnonzero(sequence_of == sid)
        w = weights[members]
        templates[sid] = l2_normalise((w[:, None] * embeddings[members]).sum(axis=0)[None])[0]
        sub = detections[members.tolist()]
        best = int(members[int(np.argmax(w))])
        seq_rows.append(
            {
                "sequence_number": sid,
                "shot": int(shot_of[int(sub["frame_index"][0])]),
                "start_frame": int(sub["frame_index"].min()),
                "end_frame": int(sub["frame_index"].max()),
                "start_s": float(sub["timestamp_s"].min()),
                "end_s": float(sub["timestamp_s"].max()),
                "face_count": len(members),
                "mean_face_px": float(sub["face_px"].mean()),
                "mean_blur": float(sub["blur"].mean()),
                "mean_abs_yaw": float(sub["yaw"].abs().mean()),
                "mean_quality": float(w.mean()),
                "best_detection_id": int(detections["detection_id"][best]),
            }
        )
    sequences = pl.DataFrame(
        seq_rows,
        schema={
            "sequence_number": pl.Int32, "shot": pl.Int32, "start_frame": pl.Int32, "end_frame": pl.Int32,
            "start_s": pl.Float64, "end_s": pl.Float64, "face_count": pl.Int32, "mean_face_px": pl.Float32,
            "mean_blur": pl.Float32, "mean_abs_yaw": pl.Float32, "mean_quality": pl.Float32,
            "best_detection_id": pl.Int32,
        },
    )
    return SequenceResult(
        faces=faces,
        sequences=sequences,
        templates=templates,
        frames=frames,
        settings={"gate": asdict(gate), "link": asdict(link)},
    )


# Parquet files written before the rename (sql/010) call the number within the video
# `sequence_id`; they stay in a data root until their video is sequenced again.
_RENAMED = {"sequence_id": "sequence_number"}


def current_columns(table: pl.DataFrame) -> pl.DataFrame:
    """A `face_sequences` table (sequences or faces) read from parquet, with today's column
    names whichever version wrote it."""
    return table.rename({old: new for old, new in _RENAMED.items() if old in table.columns and new not in table.columns})


def active_at(sequences: pl.DataFrame, frame_index: int | None = None, time_s: float | None = None) -> pl.DataFrame:
    """The sequences on screen at a frame (or a time): those whose span covers it."""
    if frame_index is not None:
        return sequences.filter((pl.col("start_frame") <= frame_index) & (pl.col("end_frame") >= frame_index))
    if time_s is None:
        raise ValueError("give a frame index or a time")
    return sequences.filter((pl.col("start_s") <= time_s + 1e-6) & (pl.col("end_s") >= time_s - 1e-6))


def purity_and_fragmentation(
    sequence_numbers: list[int | None], persons: list[str | None], shots: list[int | None]
) -> dict:
    """Ground-truth scores of a sequencing. purity: share of faces (in sequences) whose
    sequence's majority person is theirs; fragmentation: sequences per (person, shot) that
    has any sequenced face (1.0 is ideal)."""
    by_seq: dict[int, list[str]] = {}
    pairs: dict[tuple, set] = {}
    for sid, person, shot in zip(sequence_numbers, persons, shots):
        if sid is None or person is None:
            continue
        by_seq.setdefault(sid, []).append(person)
        pairs.setdefault((person, shot), set()).add(sid)
    total = sum(len(v) for v in by_seq.values())
    majority = sum(max(v.count(p) for p in set(v)) for v in by_seq.values())
    return {
        "faces": total,
        "sequences": len(by_seq),
        "purity": majority / total if total else math.nan,
        "fragmentation": float(np.mean([len(s) for s in pairs.values()])) if pairs else math.nan,
        "impure_sequences": sum(1 for v in by_seq.values() if len(set(v)) > 1),
    }
