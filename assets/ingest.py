"""`raw_video`: register a file's facts and recognise duplicates by content hash."""


import time

import dagster as dg

from assets.partitions import videos
from reid_pipeline.ingest.video import VideoError, probe, sha256_of
from resources import DataStorage, ObjectStore, ReidDatabase


def video_failure(store, partition_key: str, error: Exception) -> dg.Failure:
    """Record the error on the video's row and turn it into a run failure that says why."""
    store.mark_failed(partition_key, str(error))
    return dg.Failure(description=str(error), metadata={"partition": partition_key}, allow_retries=False)


STATUS_NOTE = ("the video's status when this was written, at ingest; not updated later: a `processing` video becomes "
               "`ready` once its matches are stored (or `failed`/`partial`, with the reason). The live status: the "
               "gallery's page of the video (`video_in_gallery`), the `archive_status` asset, `reid status`")


@dg.asset(partitions_def=videos, group_name="video", kinds={"postgres"})
def raw_video(
    context: dg.AssetExecutionContext, database: ReidDatabase, s3: ObjectStore, storage: DataStorage
) -> dg.MaterializeResult:
    """The registered video: content hash, size, codec, fps, frame count, duration,
    resolution and source URI, in the `videos` table. A file whose content hash matches an
    earlier video is marked a duplicate of it and is not analysed again downstream.
    Unreadable files (empty, truncated, not a video) fail with the reason. The metadata's
    `status_at_ingest` is the status when it was written; the live one is on the gallery's
    page of the video (`video_in_gallery`), `archive_status` and `reid status`."""
    key = context.partition_key
    store = database.store()
    row = store.get_video(key)
    if row is None:
        raise dg.Failure(description=f"partition {key!r} names no registered video (a partition is made for a file, not "
                         "typed in): register files with the inbox, the `register_archive` job (a folder in its config), "
                         "`reid process` or `reid backfill FOLDER --register-only`; remove stray partitions with the "
                         "`prune_partitions` job or `reid prune`", metadata={"partition": key}, allow_retries=False)
    t0 = time.perf_counter()
    try:
        path = s3.local_path(row["source_uri"])
        info = probe(path)
        sha256 = sha256_of(path)
    except VideoError as exc:
        raise video_failure(store, key, exc) from exc
    duplicate_of = store.record_probe(key, info.as_dict(), sha256)
    metadata = {
        "source_uri": dg.MetadataValue.url(row["source_uri"]),
        "sha256": sha256,
        "size_mb": round(info.size_bytes / 1e6, 2),
        "codec": info.codec,
        "fps": round(info.fps, 3),
        "frame_count": info.frame_count,
        "duration_s": round(info.duration_s, 2),
        "resolution": f"{info.width}x{info.height}",
        "rotation": info.rotation,
        # metadata is written once and never updated: it says only what was true then
        "status_at_ingest": "duplicate" if duplicate_of else "processing",
        "status_note": STATUS_NOTE,
        "probe_and_hash_s": round(time.perf_counter() - t0, 3),
        "video_in_gallery": storage.video_page(key),
    }
    if duplicate_of:
        metadata["duplicate_of"] = duplicate_of
        context.log.warning(f"{path.name} has the same content as partition {duplicate_of}; it will not be analysed again")
    # no thumbnail: a frame of the video may show a face, and Dagster's metadata never holds one
    return dg.MaterializeResult(metadata=metadata)
