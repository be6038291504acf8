import dagster as dg

# One partition per video file; keys come from reid_pipeline.ingest.arrivals.partition_key_for.
videos = dg.DynamicPartitionsDefinition(name="videos")
