"""The Postgres + pgvector store: the pipeline's queries, by area.

`Store(url)` is one object with the methods of every area: `videos` (registration, status,
the inbox's skipped files, the forget log), `faces` (models, faces and their vectors),
`sequences`, `matches`, `identities` and `corrections` (people's corrections and how each
fared); `connection` holds the pools and the base class, `migrations` applies sql/.
Settings that a query needs (HNSW search depth) are `SET LOCAL`, so they end with its
transaction and never leak to the pool's next user.

The bottom of the core: imports nothing of it (the SQL files live in `sql/`). Every query of
the pipeline is here; the other packages call these methods (`tests/test_layout.py` checks
that no SQL runs elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reid_pipeline.store.connection import as_array, close_pools, connect, lock, pool
from reid_pipeline.store.corrections import Corrections
from reid_pipeline.store.faces import FACE_COLUMNS, Faces, hnsw_index_name
from reid_pipeline.store.identities import Identities
from reid_pipeline.store.matches import Matches
from reid_pipeline.store.migrations import migrate, migrations
from reid_pipeline.store.sequences import Sequences
from reid_pipeline.store.videos import Videos


@dataclass
class Store(Videos, Faces, Sequences, Matches, Identities, Corrections):
    """All database access of the pipeline (see the area modules for the methods)."""

    def migrate(self, sql_dir: str | Path) -> list[str]:
        """Bring the schema up to date with the migrations in `sql_dir` (the settings' `sql_dir`)."""
        return migrate(self.url, sql_dir)


__all__ = ["FACE_COLUMNS", "Store", "as_array", "close_pools", "connect", "hnsw_index_name", "lock", "migrate", "migrations", "pool"]
