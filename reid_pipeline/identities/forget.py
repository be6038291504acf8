"""Forgetting a video or a person: every derived trace removed, and a record that it was.

Face chips and vectors are biometric data. `plan_video` / `plan_identity` say what would go
(nothing is touched); `carry_out` removes it and writes one row to `forget_log` (when, what,
counts: no vectors, no pictures). What goes:

- a video: its `videos` row and with it (ON DELETE CASCADE) its faces, sequences, the
  matches and identity memberships of those sequences; its parquet files (detections with
  chips, embeddings, sequences, frames), its silhouette report (pictures of faces), its
  cached copy of a bucket object, and the source file itself only when asked;
- a person (an identity): its sequences and their faces' rows; the rows of those faces in
  every parquet file of the videos they were in (chips included); the silhouette reports of
  those videos (their contact sheets show everyone); their sightings in people's
  corrections (a label of them goes with them). A forgotten video's corrections stay and
  are reported stale at the next recomputation.

A face model left without any face by either is retired (`Store.retire_models`: its
identities, scored pairs and indexes). The static gallery that showed them (the model's, or
every model's for a video) is deleted here and rebuilt by the next identities run. What
Dagster keeps of them (runs, their logs, its cached latest materializations; no face
pictures since those never enter its metadata) is the caller's part
(`cli.forget.forget_in_dagster`), since this module knows nothing of Dagster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from reid_pipeline.sequences.tracking import current_columns
from reid_pipeline.storage import StoragePath, asset_path, data_root, read_parquet, remove, write_parquet
from reid_pipeline.store import Store

# the per-video parquet files: (asset, suffix, column holding the face's detection id)
PARQUET_FILES = (
    ("frame_detections", ".parquet", "detection_id"),
    ("frame_detections", ".frames.parquet", None),
    ("frame_detections", ".embeddings.parquet", "detection_id"),  # made while detecting
    ("face_embeddings", ".parquet", "detection_id"),
    ("face_sequences", ".parquet", None),
    ("face_sequences", ".faces.parquet", "detection_id"),
    ("face_sequences", ".frames.parquet", None),
)


@dataclass
class ForgetPlan:
    kind: str  # "video" or "identity"
    target: str  # partition key, or "<model>/<identity id>"
    videos: list[str] = field(default_factory=list)  # partition keys touched
    sequences: list[int] = field(default_factory=list)  # sequence row ids removed
    faces: int = 0  # face rows removed
    files: list[StoragePath] = field(default_factory=list)  # files and folders removed whole
    rewrites: dict[str, list[int]] = field(default_factory=dict)  # partition key -> detection ids cut from its files
    source: Path | None = None  # the source file (a video forget), removed only on request

    def describe(self) -> list[str]:
        lines = [f"forget {self.kind} {self.target}:",
                 f"  {self.faces} faces in {len(self.sequences)} sequences of {len(self.videos)} video(s): "
                 f"{', '.join(self.videos) or 'none'}"]
        lines += [f"  delete {p}" for p in self.files]
        lines += [f"  remove {len(ids)} faces (chips, vectors) from the files of {key}" for key, ids in self.rewrites.items()]
        if self.source is not None:
            lines.append(f"  source file {self.source} (kept unless --delete-source)")
        return lines


def _report_folder(root: StoragePath, key: str) -> StoragePath:
    return data_root(root) / "silhouette_report" / key


def plan_video(store: Store, root: StoragePath, partition_key: str, cache_dir: Path | None) -> ForgetPlan:
    """What forgetting a video removes. `root`: the data root (`storage.data_root`);
    `cache_dir`: where videos in a bucket are copied (the settings' `video_cache`)."""
    from reid_pipeline.ingest.sources import cached_copy, source_file

    video = store.get_video(partition_key)
    if video is None:
        raise KeyError(f"no video with partition key {partition_key!r}")
    sequences = [s["id"] for s in store.sequences_at(partition_key)]
    plan = ForgetPlan("video", partition_key, [partition_key], sequences, store.count_faces(partition_key))
    root = data_root(root)
    plan.files = [p for asset, suffix, _ in PARQUET_FILES if (p := root / asset / f"{partition_key}{suffix}").exists()]
    if _report_folder(root, partition_key).exists():
        plan.files.append(_report_folder(root, partition_key))
    if (root / "gallery").exists():  # the static gallery shows its faces: rebuilt by the identities run that follows
        plan.files.append(root / "gallery")
    cached = cached_copy(video["source_uri"], cache_dir)
    if cached is not None and cached.exists():
        plan.files.append(cached)
    plan.source = source_file(video["source_uri"])
    return plan


def plan_identity(store: Store, root: StoragePath, model: str, identity_id: str) -> ForgetPlan:
    members = store.sightings(model, [identity_id])
    if not members:
        raise KeyError(f"no identity {identity_id!r} of model {model}")
    plan = ForgetPlan("identity", f"{model}/{identity_id}", sorted({m["partition_key"] for m in members}),
                      [m["id"] for m in members])
    for key in plan.videos:
        numbers = [m["sequence_number"] for m in members if m["partition_key"] == key]
        ids = store.detection_ids(key, model, numbers)
        plan.faces += len(ids)
        plan.rewrites[key] = ids
        if _report_folder(root, key).exists():
            plan.files.append(_report_folder(root, key))
    # the static gallery of the model shows the person (thumbnails, a page): rebuilt without
    # them by the identities run that follows
    gallery = data_root(root) / "gallery" / model
    if gallery.exists():
        plan.files.append(gallery)
    return plan


def carry_out(store: Store, root: StoragePath, plan: ForgetPlan, delete_source: bool = False) -> dict:
    """Remove what `plan` lists (database first, then files), log it; returns the counts.
    Rewritten parquet files replace the old ones atomically (`storage.write_parquet`)."""
    root = data_root(root)
    edited = 0
    if plan.kind == "video":
        models = store.face_models_of(plan.target)
        store.delete_video(plan.target)
    else:
        from reid_pipeline.identities.corrections import forget_sequences

        model = plan.target.split("/", 1)[0]
        models = [model]
        # their sightings leave every correction too (a label may be their name)
        edited = forget_sequences(store, model, plan.sequences)
        store.delete_sequences(model, plan.sequences, identity_id=plan.target.split("/", 1)[1])
    # the last faces of a model went: the model goes too (its identities, indexes, gallery)
    store.retire_models(models)
    for key, ids in plan.rewrites.items():
        for asset, suffix, column in PARQUET_FILES:
            path = asset_path(root, asset, key, suffix)
            if column and path.exists():
                write_parquet(read_parquet(path).filter(~pl.col(column).is_in(ids)), path)
        sequences = asset_path(root, "face_sequences", key)
        if sequences.exists():  # the sequences whose faces went
            kept = current_columns(read_parquet(asset_path(root, "face_sequences", key, ".faces.parquet")))
            write_parquet(current_columns(read_parquet(sequences))
                          .filter(pl.col("sequence_number").is_in(kept["sequence_number"].unique().implode())), sequences)
    for path in plan.files:
        remove(path)
    removed_source = False
    if delete_source and plan.source is not None and plan.source.exists():
        plan.source.unlink()
        removed_source = True
    counts = {"videos": len(plan.videos), "sequences": len(plan.sequences), "faces": plan.faces,
              "files": len(plan.files), "files_rewritten": sum(1 for _ in plan.rewrites), "source_deleted": removed_source,
              "corrections_edited": edited}
    store.log_forget(plan.kind, plan.target, json.dumps(counts))
    return counts
