"""Face models and faces with their vectors: one partial HNSW (cosine) index per model over
`embedding::vector(dim)`; queries must use the same expression and `model = ...` for the
planner to take it (see `nearest_faces`). Vectors go in by binary COPY through pgvector's
psycopg adapter."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

import numpy as np

from reid_pipeline.store.connection import StoreBase, lock

FACE_COLUMNS = (
    "partition_key",
    "detection_id",
    "frame_index",
    "timestamp_s",
    "box",
    "detector_score",
    "face_px",
    "blur",
    "yaw",
    "pitch",
    "roll",
    "model",
    "embedding",
)


def hnsw_index_name(model: str, table: str = "faces") -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:36]
    return f"{table}_hnsw_{slug}_{hashlib.sha1(model.encode()).hexdigest()[:6]}"


class Faces(StoreBase):
    def models(self) -> list[dict]:
        return self.rows("SELECT model, backend, dim FROM face_models ORDER BY model")

    def ensure_model(self, model: str, backend: str, dim: int) -> None:
        """Register a face model and give it its own HNSW cosine indexes (faces, sequences)."""
        with self.connection() as conn:
            known = conn.execute("SELECT dim FROM face_models WHERE model = %s", (model,)).fetchone()
            if known is not None:
                # already set up: no DDL here, it would queue behind every concurrent writer
                if known["dim"] != dim:
                    raise ValueError(f"model {model!r} is registered with dimension {known['dim']}, not {dim}")
                return
        with self.connection() as conn, conn.transaction():
            lock(conn, "model", model)
            inserted = conn.execute(
                "INSERT INTO face_models (model, backend, dim) VALUES (%s, %s, %s) ON CONFLICT (model) DO NOTHING"
                " RETURNING model",
                (model, backend, dim),
            ).fetchone()
            if inserted is None:
                return self.ensure_model(model, backend, dim)  # another process registered it
            literal = model.replace("'", "''")
            for table, column in (("faces", "embedding"), ("sequences", "template")):
                conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {hnsw_index_name(model, table)} ON {table} USING hnsw "
                    f"(({column}::vector({int(dim)})) vector_cosine_ops) WHERE model = '{literal}'"
                )

    def replace_faces(self, partition_key: str, model: str, rows: Iterable[Sequence], vectors: np.ndarray) -> int:
        """Replace this partition's faces of `model` by `rows` (FACE_COLUMNS without
        partition_key, model and embedding, in that order) and their vectors, by binary COPY,
        in one transaction: re-materialising never duplicates and never leaves half a set."""
        count = 0
        with self.connection() as conn:
            with conn.transaction():
                conn.execute("DELETE FROM faces WHERE partition_key = %s AND model = %s", (partition_key, model))
                with conn.cursor().copy(
                    f"COPY faces ({', '.join(FACE_COLUMNS)}) FROM STDIN WITH (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(
                        ["text", "int4", "int4", "float8", "float4[]", "float4", "float4", "float4",
                         "float4", "float4", "float4", "text", "vector"]
                    )
                    for row, vector in zip(rows, vectors):
                        copy.write_row((partition_key, *row, model, np.asarray(vector, dtype=np.float32)))
                        count += 1
        return count

    def count_faces(self, partition_key: str | None = None) -> int:
        with self.connection() as conn:
            if partition_key is None:
                return conn.execute("SELECT count(*) AS n FROM faces").fetchone()["n"]
            return conn.execute(
                "SELECT count(*) AS n FROM faces WHERE partition_key = %s", (partition_key,)
            ).fetchone()["n"]

    def nearest_faces(self, model: str, dim: int, vector: np.ndarray, limit: int = 10) -> list[dict]:
        """The `limit` faces of `model` closest to `vector` by cosine distance (HNSW)."""
        return self.rows(
            f"SELECT id, partition_key, detection_id, frame_index, timestamp_s,"
            f" embedding::vector({int(dim)}) <=> %s AS distance FROM faces WHERE model = %s"
            f" ORDER BY embedding::vector({int(dim)}) <=> %s LIMIT %s",
            (np.asarray(vector, dtype=np.float32), model, np.asarray(vector, dtype=np.float32), limit),
        )
