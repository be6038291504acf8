"""`cross_video_matches` (per video) and `identities` (the whole archive)."""

import time

import dagster as dg

from assets.partitions import videos
from assets.sequences import face_sequences
from reid_pipeline.archive import match_partition, recompute_identities
from reid_pipeline.gallery import write_gallery
from reid_pipeline.matching import DEFAULT_METHOD, MatchSettings, match_settings_for
from reid_pipeline.pipeline import chip_reader
from reid_pipeline.preview import markdown_image
from reid_pipeline.silhouette import sequence_sheet
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
        chip = chip_loader(storage)
        best = sorted(report.links, key=lambda r: -r["score"])[:12]
        sequences = {s["id"]: s for s in store.sequences_by_id({i for r in best for i in (r["sequence_a"], r["sequence_b"])})}
        rows = []
        for r in best:
            a, b = sequences[r["sequence_a"]], sequences[r["sequence_b"]]
            rows.append((
                f"score {r['score']:.3f}\n{a['partition_key'][:18]}:{a['sequence_id']}\n{b['partition_key'][:18]}:{b['sequence_id']}",
                [c for c in (chip(a["partition_key"], a["best_detection_id"]), chip(b["partition_key"], b["best_detection_id"])) if c],
            ))
        metadata["best_links"] = dg.MetadataValue.md(markdown_image(sequence_sheet(rows, label_w=170), "best links"))
    return dg.MaterializeResult(metadata=metadata)


def _corrections_table(report: dict[int, tuple[str, str]]) -> str:
    """Markdown list of the corrections that did not fully apply (stale, overridden)."""
    rows = [(cid, status, detail) for cid, (status, detail) in sorted(report.items()) if status != "applied"]
    if not rows:
        return "every correction applies" if report else "no corrections"
    lines = ["| correction | status | why |", "|---|---|---|"]
    lines += [f"| {cid} | {status} | {detail} |" for cid, status, detail in rows]
    return "\n".join(lines)


def _unresolved_table(rows: list[dict], limit: int = 30) -> str:
    """Markdown list of unresolved sequences (first `limit`)."""
    if not rows:
        return "every sequence belongs to an identity"
    lines = ["| video | sequence | time | faces | why |", "|---|---|---|---|---|"]
    lines += [f"| {r['partition_key']} | {r['sequence_id']} | {r['start_s']:.1f}-{r['end_s']:.1f} s | {r['face_count']} | {r['reason']} |"
              for r in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"| ... {len(rows) - limit} more | | | | |")
    return "\n".join(lines)


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
    sightings; hidden identities left out). Re-materialises by itself after new matches."""
    store = database.store()
    metadata: dict = {}
    chip = chip_loader(storage)
    models = store.models()
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
            f"{prefix}unresolved": dg.MetadataValue.md(_unresolved_table(unresolved)),
            f"{prefix}largest_identity_sequences": max((i["sequence_count"] for i in result.identities), default=0),
            f"{prefix}method": settings.method,
            f"{prefix}threshold": settings.threshold,
            f"{prefix}cluster_threshold": round(settings.cluster_threshold, 4),
            f"{prefix}gallery": dg.MetadataValue.path(str(index)),
            f"{prefix}corrections_applied": sum(1 for status, _ in result.corrections.values() if status == "applied"),
            f"{prefix}corrections_not_applied": sum(1 for status, _ in result.corrections.values() if status != "applied"),
            f"{prefix}corrections": dg.MetadataValue.md(_corrections_table(result.corrections)),
            f"{prefix}seconds": round(time.perf_counter() - t0, 3),
        })
        by_id = {}
        for s in sightings:
            by_id.setdefault(s["identity_id"], []).append(s)
        rows = []
        for ident in shown[:12]:
            seen = by_id.get(ident["identity_id"], [])[:8]
            rows.append((f"{ident['identity_id']}\n{ident['video_count']} videos\n{ident['sequence_count']} sightings",
                         [c for c in (chip(s["partition_key"], s["best_detection_id"]) for s in seen) if c]))
        if rows:
            metadata[f"{prefix}preview"] = dg.MetadataValue.md(markdown_image(sequence_sheet(rows, label_w=170), "identities"))
    if not metadata:
        metadata["identities"] = 0
    return dg.MaterializeResult(metadata=metadata)
