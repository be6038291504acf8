"""Face models and faces with their vectors: one partial HNSW (cosine) index per model over
`embedding::vector(dim)`; queries must use the same expression and `model = ...` for the
planner to take it (see `nearest_faces`). Vectors go in by binary COPY through pgvector's
psycopg adapter."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

import numpy as np
import psycopg

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


# how long a retirement waits for the locks of DROP INDEX before it leaves the model to a later call
RETIRE_LOCK_TIMEOUT = "5s"


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
        """Replace this partition's faces by `rows` (FACE_COLUMNS without partition_key, model
        and embedding, in that order) and their vectors of `model`, by binary COPY, in one
        transaction: re-materialising never duplicates and never leaves half a set.

        A video lives in exactly one model: the same transaction removes its faces and
        sequences of every other model (with those sequences go, ON DELETE CASCADE, their
        scored pairs, identity memberships and unresolved listings; identities of those models
        left without a sighting go too) and records `model` on the video. A model left with
        no face anywhere is then retired (`retire_models`). `model` must be registered
        (`ensure_model`); LookupError if it is not, or was retired meanwhile."""
        count = 0
        with self.connection() as conn:
            # which other models to lock, read and committed before any lock is taken: a
            # retirement (DROP INDEX) waits for every open reader of faces while holding its
            # model's lock, so this transaction must not read faces and then wait for that lock
            others = [r["model"] for r in conn.execute(
                "SELECT model FROM faces WHERE partition_key = %s AND model <> %s UNION"
                " SELECT model FROM sequences WHERE partition_key = %s AND model <> %s ORDER BY 1",
                (partition_key, model, partition_key, model))]
            conn.commit()
            with conn.transaction():
                for other in others:  # in name order: concurrent writers take them in the same order
                    lock(conn, "model", other)  # their matches and identities are read by other runs
                # a retirement of `model` deletes this row: it waits for this lock, or went first
                if conn.execute("SELECT 1 FROM face_models WHERE model = %s FOR KEY SHARE", (model,)).fetchone() is None:
                    raise LookupError(f"face model {model!r} is not registered (Store.ensure_model first), or was"
                                      " retired by another run while this video was embedded: run it again")
                if others:
                    conn.execute("DELETE FROM sequences WHERE partition_key = %s AND model <> %s", (partition_key, model))
                    conn.execute("DELETE FROM faces WHERE partition_key = %s AND model <> %s", (partition_key, model))
                    conn.execute(
                        "DELETE FROM identities i WHERE i.model = ANY(%s) AND NOT EXISTS (SELECT 1 FROM identity_sequences m"
                        " WHERE m.model = i.model AND m.identity_id = i.identity_id)", (others,))
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
                conn.execute("UPDATE videos SET model = %s WHERE partition_key = %s", (model, partition_key))
        if others:
            self.retire_models(others)
        return count

    def retire_models(self, models: Iterable[str] | None = None) -> list[str]:
        """Retire the models (every registered one when None) that have no face left
        anywhere: their identities, unresolved sequences, scored pairs, correction statuses,
        HNSW indexes and `face_models` row go, so identities, the gallery, `reid status` and
        search stop showing them (a later video of the model registers it again). A model
        with faces is left alone. Returns the models retired.

        DROP INDEX waits for every open reader and writer of `faces` and `sequences`; a
        retirement that cannot have them within RETIRE_LOCK_TIMEOUT gives up and is left to a
        later call (the `identities` asset makes one each time), rather than stall the runs."""
        candidates = sorted(set(models)) if models is not None else [m["model"] for m in self.models()]
        retired = []
        for model in candidates:
            try:
                with self.connection() as conn, conn.transaction():
                    conn.execute(f"SET LOCAL lock_timeout = '{RETIRE_LOCK_TIMEOUT}'")
                    lock(conn, "model", model)
                    known = conn.execute("SELECT 1 FROM face_models WHERE model = %s", (model,)).fetchone()
                    if known is None or conn.execute("SELECT 1 FROM faces WHERE model = %s LIMIT 1", (model,)).fetchone():
                        continue
                    for table in ("matches", "unresolved_sequences", "identity_sequences", "identities", "sequences"):
                        conn.execute(f"DELETE FROM {table} WHERE model = %s", (model,))
                    conn.execute("DELETE FROM face_models WHERE model = %s", (model,))  # correction_status cascades
                    for table in ("faces", "sequences"):
                        conn.execute(f"DROP INDEX IF EXISTS {hnsw_index_name(model, table)}")
            except (psycopg.errors.LockNotAvailable, psycopg.errors.ForeignKeyViolation, psycopg.errors.DeadlockDetected):
                # busy tables, or faces of the model committed meanwhile (its row is referenced again)
                continue
            retired.append(model)
        return retired

    def count_faces(self, partition_key: str | None = None) -> int:
        with self.connection() as conn:
            if partition_key is None:
                return conn.execute("SELECT count(*) AS n FROM faces").fetchone()["n"]
            return conn.execute(
                "SELECT count(*) AS n FROM faces WHERE partition_key = %s", (partition_key,)
            ).fetchone()["n"]

    def faces_of_sequences(self, sequence_ids: Iterable[int], accepted_only: bool = True) -> list[dict]:
        """The faces of sequences (row ids), by sequence and time: id (the sequence's),
        detection_id, timestamp_s, box; only those not rejected by quality unless told."""
        return self.rows(
            "SELECT s.id, f.detection_id, f.timestamp_s, f.box FROM sequences s JOIN faces f ON f.partition_key = s.partition_key"
            " AND f.model = s.model AND f.sequence_number = s.sequence_number WHERE s.id = ANY(%s)"
            " AND (NOT %s OR f.reject_reason IS NULL) ORDER BY s.id, f.timestamp_s", (sorted(set(sequence_ids)), accepted_only))

    def sequenced_faces(self, model: str, partition_keys: Sequence[str]) -> list[dict]:
        """Every face of `model` in the videos that belongs to a sequence: partition_key,
        timestamp_s, box, id (the sequence's row id)."""
        return self.rows(
            "SELECT f.partition_key, f.timestamp_s, f.box, s.id FROM faces f JOIN sequences s"
            " ON s.partition_key = f.partition_key AND s.model = f.model AND s.sequence_number = f.sequence_number"
            " WHERE f.model = %s AND f.partition_key = ANY(%s)", (model, list(partition_keys)))

    def detection_ids(self, partition_key: str, model: str, sequence_numbers: Sequence[int]) -> list[int]:
        """The detections of a video's sequences (by sequence number) among its faces of `model`."""
        return [r["detection_id"] for r in self.rows(
            "SELECT detection_id FROM faces WHERE partition_key = %s AND model = %s AND sequence_number = ANY(%s)"
            " ORDER BY detection_id", (partition_key, model, list(sequence_numbers)))]

    def face_models_of(self, partition_key: str) -> list[str]:
        """The models a video's stored faces are of."""
        return [r["model"] for r in self.rows("SELECT DISTINCT model FROM faces WHERE partition_key = %s ORDER BY model",
                                              (partition_key,))]

    def nearest_faces(self, model: str, dim: int, vector: np.ndarray, limit: int = 10) -> list[dict]:
        """The `limit` faces of `model` closest to `vector` by cosine distance (HNSW)."""
        return self.rows(
            f"SELECT id, partition_key, detection_id, frame_index, timestamp_s,"
            f" embedding::vector({int(dim)}) <=> %s AS distance FROM faces WHERE model = %s"
            f" ORDER BY embedding::vector({int(dim)}) <=> %s LIMIT %s",
            (np.asarray(vector, dtype=np.float32), model, np.asarray(vector, dtype=np.float32), limit),
        )
