"""reid_pipeline: the domain core of reid-pipeline (no Dagster import here, the CLI aside).

One package per stage, in the order a video goes through them, each importing only those
before it: `ingest` -> `faces` -> `sequences` -> `identities` -> `presentation`, on `store`
(the queries); `cli` is the command line on top. Three modules stay at the top, for
everyone: `config` (the settings), `database` (where Postgres is) and `storage` (the data
root). docs/architecture.md has the map.
"""

__version__ = "0.1.0"
