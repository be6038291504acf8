import dagster as dg

# One partition per video file; keys come from reid_pipeline.ingest.inbox.partition_key_for.
videos = dg.DynamicPartitionsDefinition(name="videos")
