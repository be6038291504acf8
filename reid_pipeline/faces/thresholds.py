"""Every calibrated number, per face model: one table, read by `sequences` and `matching`.

Similarities of different models live on different scales (dlib puts different people at
cosine 0.71-0.95, SFace at -0.1-0.5), so nothing that compares vectors may be a constant:
each embedding model has one row here with

- `gate`: the quality gate a face must pass to join a sequence (`sequences.tracking.QualityGate`);
- `linking`: how faces of consecutive frames are linked (`sequences.tracking.LinkSettings`: the
  appearance limit, and the stricter one that lets a sequence continue across a cut);
- `match`: per set-to-set measure, the pair similarity at or above which two well-seen
  sequences are the same person (also the search threshold of `reid search` and the gallery);
- `evidence`: how identities are formed (`matching.MatchSettings`: the cluster gap, and the
  extra score a short or small-faced sequence needs).

How each row was calibrated, with the numbers behind it: docs/calibration.md. A model
without a row gets no defaults: its vectors can be stored, but linking and matching ask
for explicit thresholds (ValueError), so an uncalibrated model is never run on another
model's numbers by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelThresholds:
    gate: dict = field(default_factory=dict)  # QualityGate fields that differ from its defaults
    linking: dict = field(default_factory=dict)  # LinkSettings fields that differ from its defaults
    match: dict = field(default_factory=dict)  # method -> pair threshold
    evidence: dict = field(default_factory=dict)  # cluster_gap, short_margin, small_margin
    calibrated: str = ""  # where the numbers come from


MODELS: dict[str, ModelThresholds] = {
    # dlib's ResNet descriptor: docs/calibration.md, "Calibration of the sequence defaults",
    # "Matching thresholds" and "Identities" (LFW dev people, tune/held-out split)
    "dlib_resnet_v1": ModelThresholds(
        gate={},
        linking={"max_appearance_distance": 0.07, "cut_appearance_distance": 0.035},
        match={"template": 0.938, "topk_mean": 0.941, "robust_hausdorff": 0.939},
        evidence={"cluster_gap": 0.005, "short_margin": 0.02, "small_margin": 0.02},
        calibrated="bench/calibrate_sequences.py, calibrate_matching.py, calibrate_identities.py (2026-11)",
    ),
    # SFace (YuNet detections, ArcFace alignment): docs/calibration.md, "YuNet + SFace"
    "sface_2021dec": ModelThresholds(
        gate={},
        linking={"max_appearance_distance": 0.40, "cut_appearance_distance": 0.20},
        match={"template": 0.44, "topk_mean": 0.464, "robust_hausdorff": 0.441},
        evidence={"cluster_gap": 0.02, "short_margin": 0.16, "small_margin": 0.0},
        calibrated="bench/calibrate_identities.py on bench/accuracy.py tune runs (2026-12)",
    ),
}

# ArcFace-family vectors (insightface packs, `insightface_<pack>_<file>`): NOT calibrated
# here (no pack is available offline); the usual published operating points for ArcFace
# cosine similarity, evidence scaled from dlib's (ArcFace similarities spread about five
# times wider). Re-calibrate with bench/calibrate_identities.py where a pack is installed.
ARCFACE = ModelThresholds(
    linking={"max_appearance_distance": 0.55, "cut_appearance_distance": 0.3},
    match={"template": 0.45, "topk_mean": 0.55, "robust_hausdorff": 0.40},
    evidence={"cluster_gap": 0.05, "short_margin": 0.05, "small_margin": 0.05},
    calibrated="not calibrated: published ArcFace operating points",
)


def thresholds_for(model: str) -> ModelThresholds:
    """The row of `model` (an embedding model name, as stored with every vector)."""
    if model in MODELS:
        return MODELS[model]
    if model.startswith("insightface"):
        return ARCFACE
    raise ValueError(f"no calibrated thresholds for face model {model!r} (known: {', '.join(MODELS)}); pass them explicitly")
