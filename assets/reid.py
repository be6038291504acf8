"""`cross_video_matches` (per video) and `identities` (the whole archive)."""

import time

import dagster as dg

from assets.partitions import videos
from assets.sequences import face_sequences
from assets.tables import table
from reid_pipeline.faces.detection import chip_reader
from reid_pipeline.identities.archive import match_partition, recompute_identities
from reid_pipeline.identities.matching import DEFAULT_METHOD, MatchSettings, match_settings_for
from reid_pipeline.presentation.gallery import remove_galleries, write_gallery
from reid_pipeline.storage import read_parquet
from resources import DataStorage, ReidDatabase


class MatchConfig(dg.Config):
    """How sequences are compared; unset values take the model's calibrated ones
    (docs/calibration.md)."""

    method: str = DEFAULT_METHOD  # one of template, topk_mean, robust_hausdorff
    threshold: float | None = None  # pair similarity that links two well-seen sequences
    cluster_gap: float | None = None  # groups join while their mean similarity >= threshold - gap
    short_margin: float | None = None  # extra score a sequence of 1-2 faces needs to link
    small_margin: float | None = None  # extra score a sequence of small faces needs to link
    candidates: int = MatchSettings.candidates
    min_faces: int = MatchSettings.min_faces


def _settings(config: MatchConfig, model: str) -> MatchSettings:
    """The model's calibrated settings, overridden by the run config (ValueError if none)."""
    return match_settings_for(
        model, config.method, config.threshold, candidates=config.candidates, min_faces=config.min_faces,
        cluster_gap=config.cluster_gap, short_margin=config.short_margin, small_margin=config.small_margin,
    )


def chip_loader(storage: DataStorage):
    """chip(partition_key, detection_id) -> JPEG bytes (or None), a row group at a time."""
    return chip_reader(storage.root)


@dg.asset(partitions_def=videos, group_name="reid", deps=[face_sequences], kinds={"postgres"})
def cross_video_matches(
    context: dg.AssetExecutionContext, config: MatchConfig, database: ReidDatabase, storage: DataStorage
) -> dg.MaterializeResult:
    """Scored links between this video's sequences and sequences anywhere in the archive
    (other videos, and non-overlapping sequences of the same video): an HNSW search on
    sequence templates finds candidates, a set-to-set measure over both sequences' faces
    scores them. Every scored pair goes to the `matches` table with the method, the model
    and the score; pairs at or above the model's threshold are `linked`. The last step of a
    video: its status becomes `ready` here."""
    key = context.partition_key
    store = database.store()
    model_path = storage.path("face_embeddings", key)
    models = read_parquet(model_path, columns=["model"])["model"].unique().to_list()
    if not models:
        store.mark_ready(key)
        return dg.MaterializeResult(metadata={"links": 0, "note": "no faces in this video"})
    model = models[0]
    dim = next(m["dim"] for m in store.models() if m["model"] == model)
    try:
        settings = _settings(config, model)
    except ValueError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    report = match_partition(store, key, model, dim, settings)
    store.mark_ready(key)  # the last per-video step: everything of this video has committed
    other_videos = sorted({r["partition_b"] if r["partition_a"] == key else r["partition_a"] for r in report.links} - {key})
    metadata = {
        "sequences_queried": report.queried,
        "pairs_scored": report.candidates,
        "links": len(report.links),
        "linked_videos": dg.MetadataValue.json(other_videos),
        "model": model,
        "method": settings.method,
        "threshold": settings.threshold,
        "seconds": round(report.seconds, 3),
        "ms_per_sequence": round(1000 * report.seconds / report.queried, 1) if report.queried else 0.0,
    }
    if report.links:
        best = sorted(report.links, key=lambda r: -r["score"])[:12]
        sequences = {s["id"]: s for s in store.sequences_by_id({i for r in best for i in (r["sequence_a"], r["sequence_b"])})}
        # numbers only: the faces of these links are on the gallery's page of the video
        metadata["best_links"] = table(({
            "score": round(r["score"], 4),
            **{f"{side}_{k}": sequences[r[f"sequence_{side}"]][col] for side in ("a", "b")
               for k, col in (("video", "partition_key"), ("sequence", "sequence_number"), ("start_s", "start_s"))},
        } for r in best if r["sequence_a"] in sequences and r["sequence_b"] in sequences), LINK_COLUMNS, digits=3)
    metadata["faces_in_gallery"] = storage.video_page(key)  # the video's faces, and the faces of its links
    return dg.MaterializeResult(metadata=metadata)


# tables of the metadata: corrections that did not fully apply (stale, overridden), and the
# first unresolved sequences (their number is `unresolved_sequences`)
CORRECTION_COLUMNS = {"correction": "int", "status": "string", "why": "string"}
UNRESOLVED_COLUMNS = {"partition_key": "string", "sequence_number": "int", "start_s": "float", "end_s": "float",
                      "face_count": "int", "reason": "string"}
UNRESOLVED_SHOWN = 30
LINK_COLUMNS = {"score": "float", "a_video": "string", "a_sequence": "int", "a_start_s": "float",
                "b_video": "string", "b_sequence": "int", "b_start_s": "float"}


@dg.asset(
    group_name="reid",
    deps=[cross_video_matches],
    kinds={"postgres", "html"},
    automation_condition=(
        dg.AutomationCondition.any_deps_updated().since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("after new matches"),
)
def identities(
    context: dg.AssetExecutionContext, config: MatchConfig, database: ReidDatabase, storage: DataStorage
) -> dg.MaterializeResult:
    """Anonymous people across the whole archive, clustered from the match graph and
    recomputed from scratch each time, so the result never depends on the order videos
    arrived in. Every sequence belongs to exactly one identity, except short sequences
    linked to nobody, which are listed as unresolved. Groups join by average linkage at a
    cluster threshold below the pair threshold, only through links, never across two
    sequences on screen together. People's corrections (merges, sightings moved out,
    labels, hides: `reid gallery`, `reid identity`) are constraints obeyed on every run;
    one that no longer applies is listed under `corrections`. Writes the `identities`
    tables and a static HTML gallery (index of faces, a page per identity with its
    sightings; hidden identities left out). Identities are per face model and never mix
    models; a model left without faces (its videos re-embedded with another, or forgotten)
    is retired here with its identities and gallery. Re-materialises by itself after new
    matches."""
    store = database.store()
    metadata: dict = {}
    chip = chip_loader(storage)
    # a model whose last faces went (videos re-embedded with another, or forgotten) is retired
    # with its identities; its gallery goes too
    retired = store.retire_models()
    models = store.models()
    removed = remove_galleries(storage.folder("gallery"), {m["model"] for m in models})
    if retired or removed:
        context.log.info(f"models without faces retired: {', '.join(sorted(set(retired) | set(removed)))}")
        metadata["retired_models"] = dg.MetadataValue.json(sorted(set(retired) | set(removed)))
    for face_model in models:
        model = face_model["model"]
        t0 = time.perf_counter()
        try:
            settings = _settings(config, model)
        except ValueError as exc:  # one uncalibrated model must not stop the others
            context.log.warning(f"identities of {model} skipped: {exc}")
            metadata[f"{model}/skipped"] = str(exc)
            continue
        result = recompute_identities(store, model, settings)
        sightings = store.sightings(model)
        unresolved = store.unresolved(model)
        shown = [i for i in result.identities if not i.get("hidden")]
        index = write_gallery(storage.folder("gallery", model), shown, sightings, chip,
                              title=f"identities ({model})", unresolved=unresolved)
        multi = [i for i in result.identities if i["video_count"] > 1]
        prefix = "" if len(models) == 1 else f"{model}/"
        metadata.update({
            f"{prefix}identities": len(result.identities),
            f"{prefix}in_several_videos": len(multi),
            f"{prefix}sequences": len(result.members),
            f"{prefix}unresolved_sequences": len(unresolved),
            f"{prefix}unresolved": table(unresolved[:UNRESOLVED_SHOWN], UNRESOLVED_COLUMNS),
            f"{prefix}largest_identity_sequences": max((i["sequence_count"] for i in result.identities), default=0),
            f"{prefix}method": settings.method,
            f"{prefix}threshold": settings.threshold,
            f"{prefix}cluster_threshold": round(settings.cluster_threshold, 4),
            f"{prefix}gallery": dg.MetadataValue.path(str(index)),
            f"{prefix}corrections_applied": sum(1 for status, _ in result.corrections.values() if status == "applied"),
            f"{prefix}corrections_not_applied": sum(1 for status, _ in result.corrections.values() if status != "applied"),
            f"{prefix}corrections": table(
                ({"correction": cid, "status": status, "why": why} for cid, (status, why) in sorted(result.corrections.items())
                 if status != "applied"), CORRECTION_COLUMNS),
            f"{prefix}seconds": round(time.perf_counter() - t0, 3),
        })
        if shown:  # the faces: in the gallery app, behind its secret (never in metadata)
            metadata[f"{prefix}faces_in_gallery"] = storage.gallery_page("/")
    if not models:
        metadata["identities"] = 0
    return dg.MaterializeResult(metadata=metadata)
