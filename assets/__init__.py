"""Dagster assets, partitions, sensors and jobs of reid-pipeline (one module per stage)."""

from assets.faces import face_embeddings, frame_detections
from assets.ingest import raw_video
from assets.partitions import videos
from assets.sequences import face_sequences, silhouette_report
from assets.sensors import inbox_sensor, process_video

all_assets = [raw_video, frame_detections, face_embeddings, face_sequences, silhouette_report]
all_sensors = [inbox_sensor]
all_jobs = [process_video]

__all__ = ["all_assets", "all_jobs", "all_sensors", "videos", "process_video"]
