"""The settings that are part of the definitions themselves, read once when the code
location loads.

Most settings reach assets through resources (`resources.build_resources`). A few cannot:
a sensor's `minimum_interval_seconds` is part of the sensor's definition (the daemon
schedules ticks from it), and a `dg.Config` field's default is part of the run config
schema that the launchpad shows; Dagster resolves neither from a resource or an `EnvVar`.
They come from this one object, the same `Settings` the resources are built from.
"""

from reid_pipeline.config import Settings

settings = Settings()
