"""The Postgres + pgvector store: schema migrations, videos, faces and their vectors.

Connections come from one pool per process and database (psycopg_pool): opening a
connection costs 8.2 ms against 0.65 ms for a query on an open one (BENCHMARKS.md, "Scale").
Settings that a query needs (HNSW search depth) are `SET LOCAL`, so they end with its
transaction and never leak to the pool's next user. Vectors go in by binary COPY through
pgvector's psycopg adapter. Each model gets a partial
HNSW (cosine) index over `embedding::vector(dim)`; queries must use the same expression
and `model = ...` for the planner to take it (see `nearest_faces`).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from reid_pipeline.config import Settings

_MIGRATION_LOCK = 0x5E1D  # pg advisory lock key: one migrator at a time across processes

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


def as_array(value) -> np.ndarray:
    """pgvector's loader gives `Vector` objects (or numpy arrays): always a float32 array."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def connect(url: str, **kwargs) -> psycopg.Connection:
    conn = psycopg.connect(url, **kwargs)
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:
        # the extension does not exist yet (first connection, before migrations)
        pass
    return conn


_POOLS: dict[tuple[int, str], ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


def _prepare(conn: psycopg.Connection) -> None:
    """A new pooled connection: dict rows and the vector type (once the extension exists)."""
    conn.row_factory = dict_row
    try:
        register_vector(conn)
    except psycopg.ProgrammingError:
        conn.rollback()  # before the first migration; the pool is renewed after migrating
    else:
        conn.commit()  # the pool wants connections back idle


def pool(url: str) -> ConnectionPool:
    """This process's pool for `url` (a forked child gets its own)."""
    key = (os.getpid(), url)
    with _POOLS_LOCK:
        found = _POOLS.get(key)
        if found is None or found.closed:
            # check: a connection the server dropped (a restarted Postgres) is replaced, not handed out
            # timeout: a database that is down fails a step in seconds (then it is retried), not 30 s
            found = _POOLS[key] = ConnectionPool(url, min_size=1, max_size=8, configure=_prepare, timeout=10,
                                                 check=ConnectionPool.check_connection, open=True, name="reid")
        return found


def close_pools(url: str | None = None) -> None:
    """Close this process's pools (of `url`, or all): at exit, and after migrating."""
    with _POOLS_LOCK:
        for key in [k for k in _POOLS if k[0] == os.getpid() and url in (None, k[1])]:
            _POOLS.pop(key).close()


atexit.register(close_pools)


def migrations(sql_dir: Path | None = None) -> list[tuple[str, Path]]:
    """Numbered `NNN_name.sql` files in order (default: `Settings().sql_dir`; the checkout's
    sql/, or where a container installed them)."""
    sql_dir = Path(sql_dir or Settings().sql_dir)
    found = []
    for path in sorted(sql_dir.glob("*.sql")):
        match = re.match(r"^(\d+)_", path.name)
        if match:
            found.append((match.group(1), path))
    return found


def migrate(url: str, sql_dir: Path | None = None) -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction, under an advisory
    lock so concurrent processes (webserver, daemon, runs) never race. Returns the applied
    versions; idempotent."""
    sql_dir = Path(sql_dir or Settings().sql_dir)
    if not migrations(sql_dir):
        raise RuntimeError(f"no migrations found in {sql_dir}; set REID_SQL_DIR to the project's sql/ folder")
    applied_now = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, path in migrations(sql_dir):
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, path.name)
                    )
                applied_now.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    if applied_now:
        close_pools(url)  # pooled connections opened before the vector type existed
    return applied_now


def lock(conn: psycopg.Connection, *names: str) -> None:
    """A transaction-scoped advisory lock named by `names`: concurrent runs of different
    videos that write the same archive-wide rows (a model's sequences, matches and
    identities; one content hash) take turns instead of racing."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (":".join(("reid",) + names),))


def hnsw_index_name(model: str, table: str = "faces") -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:36]
    return f"{table}_hnsw_{slug}_{hashlib.sha1(model.encode()).hexdigest()[:6]}"


@dataclass
class Store:
    """All database access of the pipeline, on connections of this process's pool, each
    held for one call: safe from Dagster's run processes, threads and the sensor alike."""

    url: str

    def migrate(self) -> list[str]:
        return migrate(self.url)

    @contextlib.contextmanager
    def connection(self):
        """A pooled connection (dict rows, vector type registered) for a `with` block: the
        block's work is committed at its end (rolled back on an error), then the connection
        goes back to the pool."""
        with pool(self.url).connection() as conn:
            yield conn

    def rows(self, sql: str, params: Sequence = ()) -> list[dict]:
        """All rows of one query."""
        with self.connection() as conn:
            return conn.execute(sql, params).fetchall()

    # -- videos -------------------------------------------------------------------------
    def register_video(self, partition_key: str, source_uri: str) -> None:
        """Record a file under its partition key (a no-op when it is already there). A key
        already taken by another file is an error, never a silent swap."""
        with self.connection() as conn:
            row = conn.execute(
                "INSERT INTO videos (partition_key, source_uri) VALUES (%s, %s) ON CONFLICT (partition_key)"
                " DO UPDATE SET source_uri = videos.source_uri RETURNING source_uri",
                (partition_key, source_uri),
            ).fetchone()
        if row["source_uri"] != source_uri:
            raise ValueError(f"partition {partition_key} already belongs to {row['source_uri']}, not {source_uri}")

    def get_video(self, partition_key: str) -> dict | None:
        with self.connection() as conn:
            return conn.execute("SELECT * FROM videos WHERE partition_key = %s", (partition_key,)).fetchone()

    def record_probe(self, partition_key: str, info: dict, sha256: str) -> str | None:
        """Store the probed facts; returns the partition key of an earlier video with the
        same content (then this one is marked `duplicate`), else None."""
        with self.connection() as conn, conn.transaction():
            lock(conn, "sha256", sha256)  # two copies probed at once: one of them is the original
            original = conn.execute(
                "SELECT partition_key FROM videos WHERE sha256 = %s AND partition_key <> %s"
                " AND status NOT IN ('duplicate', 'failed') ORDER BY registered_at, partition_key LIMIT 1",
                (sha256, partition_key),
            ).fetchone()
            duplicate_of = original["partition_key"] if original else None
            conn.execute(
                "UPDATE videos SET sha256 = %s, size_bytes = %s, codec = %s, fps = %s, frame_count = %s,"
                " duration_s = %s, width = %s, height = %s, rotation = %s, duplicate_of = %s,"
                " status = %s, error = NULL, probed_at = now() WHERE partition_key = %s",
                (
                    sha256,
                    info["size_bytes"],
                    info["codec"],
                    info["fps"],
                    info["frame_count"],
                    info["duration_s"],
                    info["width"],
                    info["height"],
                    info["rotation"],
                    duplicate_of,
                    "duplicate" if duplicate_of else "processing",
                    partition_key,
                ),
            )
            if duplicate_of:
                conn.execute("DELETE FROM sequences WHERE partition_key = %s", (partition_key,))
                conn.execute("DELETE FROM faces WHERE partition_key = %s", (partition_key,))
        return duplicate_of

    def mark_ready(self, partition_key: str) -> None:
        """Every per-video asset has committed: `processing` becomes `ready`."""
        with self.connection() as conn:
            conn.execute("UPDATE videos SET status = 'ready' WHERE partition_key = %s AND status = 'processing'",
                         (partition_key,))

    def delete_video(self, partition_key: str) -> None:
        """The video's row, and with it its faces, sequences, their matches and memberships."""
        with self.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM videos WHERE partition_key = %s", (partition_key,))

    def delete_sequences(self, model: str, sequence_ids: Sequence[int], identity_id: str | None = None) -> None:
        """Sequences (row ids) and their faces' rows; with `identity_id`, that identity too."""
        with self.connection() as conn, conn.transaction():
            lock(conn, "model", model)
            conn.execute(
                "DELETE FROM faces f USING sequences s WHERE s.id = ANY(%s) AND f.partition_key = s.partition_key"
                " AND f.model = s.model AND f.sequence_number = s.sequence_number", (list(sequence_ids),))
            conn.execute("DELETE FROM sequences WHERE id = ANY(%s)", (list(sequence_ids),))
            if identity_id is not None:
                conn.execute("DELETE FROM identities WHERE model = %s AND identity_id = %s", (model, identity_id))

    def log_forget(self, kind: str, target: str, counts_json: str) -> None:
        with self.connection() as conn:
            conn.execute("INSERT INTO forget_log (kind, target, counts) VALUES (%s, %s, %s::jsonb)", (kind, target, counts_json))

    def mark_partial(self, partition_key: str, reason: str) -> None:
        """Frames ended early (a truncated file): analysed as far as it goes, and said so."""
        self._set_status(partition_key, "partial", reason)

    def mark_failed(self, partition_key: str, error: str) -> None:
        self._set_status(partition_key, "failed", error)

    def _set_status(self, partition_key: str, status: str, error: str) -> None:
        with self.connection() as conn:
            conn.execute("UPDATE videos SET status = %s, error = %s WHERE partition_key = %s", (status, error, partition_key))

    # -- faces --------------------------------------------------------------------------
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

    def replace_sequences(
        self, partition_key: str, model: str | None, sequences: pl.DataFrame, templates: np.ndarray, faces: pl.DataFrame
    ) -> int:
        """Replace the partition's sequences of `model` and set each face's sequence,
        quality weight and reject reason, in one transaction. `model` None (a video with no
        faces any more) removes the partition's sequences of every model."""
        columns = sequences.columns
        with self.connection() as conn:
            with conn.transaction():
                if model is None:
                    conn.execute("DELETE FROM sequences WHERE partition_key = %s", (partition_key,))
                    return 0
                lock(conn, "model", model)  # matches and identities of other runs read these ids
                conn.execute("DELETE FROM sequences WHERE partition_key = %s AND model = %s", (partition_key, model))
                with conn.cursor().copy(
                    f"COPY sequences (partition_key, model, {', '.join(columns)}, template) FROM STDIN"
                ) as copy:
                    for row, template in zip(sequences.iter_rows(), templates):
                        copy.write_row((partition_key, model, *row, np.asarray(template, dtype=np.float32)))
                conn.execute(
                    "CREATE TEMP TABLE face_seq (detection_id int, sequence_number int, reject_reason text,"
                    " quality_weight real) ON COMMIT DROP"
                )
                with conn.cursor().copy("COPY face_seq FROM STDIN") as copy:
                    for row in faces.select("detection_id", "sequence_number", "reject_reason", "quality_weight").iter_rows():
                        copy.write_row(row)
                conn.execute(
                    "UPDATE faces f SET sequence_number = s.sequence_number, reject_reason = s.reject_reason,"
                    " quality_weight = s.quality_weight FROM face_seq s"
                    " WHERE f.partition_key = %s AND f.model = %s AND f.detection_id = s.detection_id",
                    (partition_key, model),
                )
        return sequences.height

    # -- sequences, matches, identities --------------------------------------------------
    def sequences_for(self, partition_key: str, model: str) -> list[dict]:
        return self.rows(
            "SELECT id, partition_key, sequence_number, start_frame, end_frame, start_s, end_s, face_count, mean_face_px,"
            " best_detection_id, template FROM sequences WHERE partition_key = %s AND model = %s ORDER BY sequence_number",
            (partition_key, model),
        )

    def nearest_sequences(self, model: str, dim: int, template: np.ndarray, limit: int, min_faces: int = 1) -> list[dict]:
        """The `limit` sequences of `model` whose templates are nearest (cosine, HNSW)."""
        return self.nearest_sequences_many(model, dim, [template], limit, min_faces)[0]

    def nearest_sequences_many(
        self, model: str, dim: int, templates: Sequence[np.ndarray], limit: int, min_faces: int = 1
    ) -> list[list[dict]]:
        """`nearest_sequences` for several templates over one connection (opening one per
        query was half the cost of matching a video, BENCHMARKS.md "Scale")."""
        with self.connection() as conn, conn.transaction():
            # ef_search 100: recall@10 0.98 instead of 0.96 at 100k sequences for +0.5 ms (BENCHMARKS.md)
            conn.execute(f"SET LOCAL hnsw.ef_search = {max(100, 2 * int(limit))}")
            # the face_count filter applies after the index scan: keep scanning until enough pass
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            query = (
                f"SELECT id, partition_key, sequence_number, start_frame, end_frame, start_s, end_s, face_count, mean_face_px,"
                f" 1 - (template::vector({int(dim)}) <=> %s) AS template_similarity FROM sequences"
                f" WHERE model = %s AND face_count >= %s ORDER BY template::vector({int(dim)}) <=> %s LIMIT %s"
            )
            results = []
            for template in templates:
                vector = np.asarray(template, np.float32)
                results.append(conn.execute(query, (vector, model, min_faces, vector, limit)).fetchall())
            return results

    def sequence_faces(self, sequence_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Unit embeddings and quality weights of the usable faces of each sequence (by row id)."""
        out: dict[int, tuple[list, list]] = {}
        with self.connection() as conn:
            for row in conn.execute(
                "SELECT s.id, f.embedding, coalesce(f.quality_weight, 1) AS w FROM sequences s JOIN faces f"
                " ON f.partition_key = s.partition_key AND f.model = s.model AND f.sequence_number = s.sequence_number"
                " WHERE s.id = ANY(%s) AND f.reject_reason IS NULL ORDER BY s.id, f.detection_id",
                (list(sequence_ids),),
            ):
                vectors, weights = out.setdefault(row["id"], ([], []))
                vectors.append(as_array(row["embedding"]))
                weights.append(row["w"])
        return {k: (np.asarray(v, np.float32), np.asarray(w, np.float32)) for k, (v, w) in out.items()}

    def upsert_matches(self, model: str, method: str, rows: Iterable[dict]) -> int:
        """Store scored pairs (a pair already there gets the new score). Pairs found by other
        videos' searches stay; pairs of sequences that were re-made vanish with them
        (ON DELETE CASCADE), and so do pairs whose sequence vanished while they were scored."""
        rows = list(rows)
        with self.connection() as conn:
            with conn.transaction():
                lock(conn, "model", model)
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO matches (model, method, sequence_a, sequence_b, partition_a, partition_b, score,"
                        " template_similarity, linked) SELECT %(model)s, %(method)s, %(sequence_a)s, %(sequence_b)s,"
                        " %(partition_a)s, %(partition_b)s, %(score)s, %(template_similarity)s, %(linked)s"
                        " WHERE EXISTS (SELECT 1 FROM sequences WHERE id = %(sequence_a)s)"
                        " AND EXISTS (SELECT 1 FROM sequences WHERE id = %(sequence_b)s)"
                        " ON CONFLICT (model, method, sequence_a, sequence_b) DO UPDATE SET score = EXCLUDED.score,"
                        " template_similarity = EXCLUDED.template_similarity, linked = EXCLUDED.linked, scored_at = now()",
                        [{**r, "model": model, "method": method} for r in rows],
                    )
        return len(rows)

    def sequences_at(self, partition_key: str, time_s: float | None = None, sequence_number: int | None = None) -> list[dict]:
        """Sequences of a video on screen at `time_s`, or its sequence number `sequence_number` (all models)."""
        return self.rows(
            "SELECT s.id, s.model, m.dim, s.partition_key, s.sequence_number, s.start_s, s.end_s, s.face_count"
            " FROM sequences s JOIN face_models m USING (model) WHERE s.partition_key = %s"
            " AND (%s::float8 IS NULL OR (s.start_s <= %s + 1e-6 AND s.end_s >= %s - 1e-6))"
            " AND (%s::int IS NULL OR s.sequence_number = %s) ORDER BY s.model, s.sequence_number",
            (partition_key, time_s, time_s, time_s, sequence_number, sequence_number),
        )

    def status_summary(self) -> tuple[list[dict], list[dict]]:
        """Videos and faces per video status, and the failed videos with their errors."""
        with self.connection() as conn:
            counts = conn.execute(
                "SELECT v.status, count(DISTINCT v.partition_key) AS videos, count(f.id) AS faces"
                " FROM videos v LEFT JOIN faces f USING (partition_key) GROUP BY v.status ORDER BY v.status"
            ).fetchall()
            failed = conn.execute(
                "SELECT partition_key, status, coalesce(error, '') AS error FROM videos"
                " WHERE status IN ('failed', 'partial') ORDER BY 1"
            ).fetchall()
        return counts, failed

    def record_skipped(self, skipped: Iterable[tuple[str, str]]) -> None:
        """Files the inbox did not take, with the reason (the latest one per file)."""
        with self.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO inbox_skipped (location, reason) VALUES (%s, %s) ON CONFLICT (location)"
                " DO UPDATE SET reason = EXCLUDED.reason, seen_at = now()", list(skipped))

    def skipped_files(self) -> list[dict]:
        return self.rows("SELECT location, reason, seen_at FROM inbox_skipped ORDER BY seen_at DESC, location")

    def video_table(self, limit: int | None = None) -> list[dict]:
        """Per video (newest first): key, file, status, faces, sequences, identities,
        unresolved sequences, what it duplicates and why it failed."""
        return self.rows(
            "SELECT v.partition_key, v.source_uri, v.status, v.duplicate_of, coalesce(v.error, '') AS error,"
            " (SELECT count(*) FROM faces f WHERE f.partition_key = v.partition_key) AS faces,"
            " (SELECT count(*) FROM sequences s WHERE s.partition_key = v.partition_key) AS sequences,"
            " (SELECT count(DISTINCT m.identity_id) FROM identity_sequences m JOIN sequences s ON s.id = m.sequence_id"
            "  WHERE s.partition_key = v.partition_key) AS identities,"
            " (SELECT count(*) FROM unresolved_sequences u JOIN sequences s ON s.id = u.sequence_id"
            "  WHERE s.partition_key = v.partition_key) AS unresolved"
            " FROM videos v ORDER BY v.registered_at DESC, v.partition_key LIMIT %s", (limit,))

    def all_sequences(self, model: str) -> list[dict]:
        return self.rows(
            "SELECT id, partition_key, sequence_number, start_frame, end_frame, start_s, end_s, face_count, mean_face_px,"
            " best_detection_id, mean_quality FROM sequences WHERE model = %s ORDER BY partition_key, sequence_number",
            (model,),
        )

    def sequences_by_id(self, ids: Iterable[int]) -> list[dict]:
        """Sequence rows by row id (what a video's links need, not the whole archive)."""
        return self.rows(
            "SELECT id, partition_key, sequence_number, start_s, end_s, face_count, best_detection_id FROM sequences"
            " WHERE id = ANY(%s)", (sorted(ids),))

    def scored_pairs(self, model: str, method: str) -> list[dict]:
        return self.rows(
            "SELECT sequence_a, sequence_b, score, linked FROM matches WHERE model = %s AND method = %s"
            " ORDER BY sequence_a, sequence_b",
            (model, method),
        )

    def models(self) -> list[dict]:
        return self.rows("SELECT model, backend, dim FROM face_models ORDER BY model")

    def replace_identities(
        self, model: str, identities: list[dict], members: list[tuple[str, int]], unresolved: Sequence[tuple[int, str]] = ()
    ) -> None:
        """Replace all identities of `model`: rows (identity_id, sequence_count, video_count,
        face_count, best_sequence, optional label and hidden), members (identity_id, sequence row id) and the
        unresolved sequences (sequence row id, reason)."""
        with self.connection() as conn:
            with conn.transaction():
                lock(conn, "model", model)
                conn.execute("DELETE FROM identities WHERE model = %s", (model,))
                conn.execute("DELETE FROM unresolved_sequences WHERE model = %s", (model,))
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO identities (identity_id, model, sequence_count, video_count, face_count,"
                        " best_sequence, label, hidden) VALUES (%(identity_id)s, %(model)s, %(sequence_count)s,"
                        " %(video_count)s, %(face_count)s, (SELECT id FROM sequences WHERE id = %(best_sequence)s),"
                        " %(label)s, %(hidden)s)",
                        [{"label": None, "hidden": False, **i, "model": model} for i in identities],
                    )
                    cur.executemany(  # a sequence re-made since it was read is skipped
                        "INSERT INTO identity_sequences (model, identity_id, sequence_id) SELECT %s, %s, %s"
                        " WHERE EXISTS (SELECT 1 FROM sequences WHERE id = %s)",
                        [(model, identity, seq, seq) for identity, seq in members],
                    )
                    cur.executemany(
                        "INSERT INTO unresolved_sequences (model, sequence_id, reason) SELECT %s, %s, %s"
                        " WHERE EXISTS (SELECT 1 FROM sequences WHERE id = %s)",
                        [(model, seq, reason, seq) for seq, reason in unresolved],
                    )

    def identity_of(self, model: str, sequence_ids: Sequence[int]) -> dict[int, str]:
        with self.connection() as conn:
            return {
                r["sequence_id"]: r["identity_id"]
                for r in conn.execute(
                    "SELECT sequence_id, identity_id FROM identity_sequences WHERE model = %s AND sequence_id = ANY(%s)",
                    (model, list(sequence_ids)),
                )
            }

    def sightings(self, model: str, identity_ids: Sequence[str] | None = None) -> list[dict]:
        """Every sequence of the identities (all when None), with video and time span."""
        return self.rows(
            "SELECT m.identity_id, s.id, s.partition_key, s.sequence_number, s.start_s, s.end_s, s.face_count,"
            " s.best_detection_id, s.mean_quality, v.source_uri, v.status AS video_status FROM identity_sequences m"
            " JOIN sequences s ON s.id = m.sequence_id JOIN videos v ON v.partition_key = s.partition_key"
            " WHERE m.model = %s AND (%s::text[] IS NULL OR m.identity_id = ANY(%s))"
            " ORDER BY m.identity_id, s.partition_key, s.start_s",
            (model, None if identity_ids is None else list(identity_ids), None if identity_ids is None else list(identity_ids)),
        )

    def unresolved(self, model: str) -> list[dict]:
        """The unresolved sequences of `model`, with video, time span and reason."""
        return self.rows(
            "SELECT u.reason, s.id, s.partition_key, s.sequence_number, s.start_s, s.end_s, s.face_count,"
            " s.best_detection_id, v.source_uri, v.status AS video_status FROM unresolved_sequences u"
            " JOIN sequences s ON s.id = u.sequence_id"
            " JOIN videos v ON v.partition_key = s.partition_key WHERE u.model = %s ORDER BY s.partition_key, s.start_s",
            (model,),
        )

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
