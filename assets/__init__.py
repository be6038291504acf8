"""Dagster assets, partitions, sensors and jobs of reid-pipeline (one module per stage)."""

from assets.archive import archive_sensor, archive_status, archive_status_sensor, prune_partitions, register_archive
from assets.backfill import backfill_videos
from assets.faces import face_embeddings, frame_detections
from assets.ingest import raw_video
from assets.partitions import videos
from assets.reid import cross_video_matches, identities
from assets.sensors import identities_automation, inbox_sensor, process_video, rebuild_identities
from assets.sequences import face_sequences, silhouette_report

all_assets = [raw_video, frame_detections, face_embeddings, face_sequences, silhouette_report, cross_video_matches, identities,
              archive_status]
all_sensors = [inbox_sensor, identities_automation, archive_sensor, archive_status_sensor]
all_jobs = [process_video, rebuild_identities, backfill_videos, register_archive, prune_partitions]

__all__ = ["all_assets", "all_jobs", "all_sensors", "videos", "process_video"]
