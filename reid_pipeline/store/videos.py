"""Videos: registration, probe facts and duplicates, status; the inbox's skipped files and
the forget log."""

from __future__ import annotations

from collections.abc import Iterable

from reid_pipeline.store.connection import StoreBase, lock


class Videos(StoreBase):
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

    def video_rows(self, keys: Iterable[str] | None = None, statuses: Iterable[str] | None = None) -> list[dict]:
        """Registered videos (those of `keys`, of `statuses`, or all), oldest first:
        partition_key, source_uri, status."""
        keys = None if keys is None else list(keys)
        statuses = None if statuses is None else list(statuses)
        return self.rows("SELECT partition_key, source_uri, status FROM videos WHERE (%s::text[] IS NULL OR partition_key"
                         " = ANY(%s::text[])) AND (%s::text[] IS NULL OR status = ANY(%s::text[]))"
                         " ORDER BY registered_at, partition_key", (keys, keys, statuses, statuses))

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
                conn.execute("UPDATE videos SET model = NULL WHERE partition_key = %s", (partition_key,))
        return duplicate_of

    def mark_ready(self, partition_key: str) -> None:
        """Every per-video asset has committed: `processing` becomes `ready`."""
        with self.connection() as conn:
            conn.execute("UPDATE videos SET status = 'ready' WHERE partition_key = %s AND status = 'processing'",
                         (partition_key,))

    def mark_partial(self, partition_key: str, reason: str) -> None:
        """Frames ended early (a truncated file): analysed as far as it goes, and said so."""
        self._set_status(partition_key, "partial", reason)

    def mark_failed(self, partition_key: str, error: str) -> None:
        self._set_status(partition_key, "failed", error)

    def _set_status(self, partition_key: str, status: str, error: str) -> None:
        with self.connection() as conn:
            conn.execute("UPDATE videos SET status = %s, error = %s WHERE partition_key = %s", (status, error, partition_key))

    def delete_video(self, partition_key: str) -> None:
        """The video's row, and with it its faces, sequences, their matches and memberships."""
        with self.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM videos WHERE partition_key = %s", (partition_key,))

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

    def model_summary(self) -> list[dict]:
        """Per face model: the videos it embedded (`videos.model`, faceless ones included) and
        its faces. A model with neither is not listed."""
        return self.rows(
            "SELECT model, sum(videos)::int AS videos, sum(faces)::bigint AS faces FROM ("
            " SELECT model, count(*) AS videos, 0 AS faces FROM videos WHERE model IS NOT NULL GROUP BY model"
            " UNION ALL SELECT model, 0, count(*) FROM faces GROUP BY model) AS t GROUP BY model ORDER BY model")

    def video_models(self) -> list[dict]:
        """Every registered video (oldest first): key, source, status, the model recorded for
        it (`model`, NULL before its first embedding) and the models its stored faces and
        sequences are of (`stored`, sorted; more than one only in an archive stored before
        sql/011, whose re-runs could leave another model's copy behind)."""
        return self.rows(
            "SELECT v.partition_key, v.source_uri, v.status, v.model, coalesce(s.models, '{}') AS stored FROM videos v"
            " LEFT JOIN (SELECT partition_key, array_agg(model ORDER BY model) AS models FROM"
            " (SELECT DISTINCT partition_key, model FROM faces UNION SELECT DISTINCT partition_key, model FROM sequences) AS u"
            " GROUP BY partition_key) AS s ON s.partition_key = v.partition_key ORDER BY v.registered_at, v.partition_key")

    def video_table(self, limit: int | None = None, statuses: Iterable[str] | None = None) -> list[dict]:
        """Per video (newest first; only those of `statuses` when given): key, file, status,
        model, faces, sequences, identities, unresolved sequences, what it duplicates and why
        it failed."""
        return self.rows(
            "SELECT v.partition_key, v.source_uri, v.status, v.model, v.duplicate_of, coalesce(v.error, '') AS error,"
            " (SELECT count(*) FROM faces f WHERE f.partition_key = v.partition_key) AS faces,"
            " (SELECT count(*) FROM sequences s WHERE s.partition_key = v.partition_key) AS sequences,"
            " (SELECT count(DISTINCT m.identity_id) FROM identity_sequences m JOIN sequences s ON s.id = m.sequence_id"
            "  WHERE s.partition_key = v.partition_key) AS identities,"
            " (SELECT count(*) FROM unresolved_sequences u JOIN sequences s ON s.id = u.sequence_id"
            "  WHERE s.partition_key = v.partition_key) AS unresolved"
            " FROM videos v WHERE %s::text[] IS NULL OR v.status = ANY(%s::text[])"
            " ORDER BY v.registered_at DESC, v.partition_key LIMIT %s",
            (None if statuses is None else list(statuses), None if statuses is None else list(statuses), limit))

    def record_skipped(self, skipped: Iterable[tuple[str, str]]) -> None:
        """Files the inbox did not take, with the reason (the latest one per file)."""
        with self.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO inbox_skipped (location, reason) VALUES (%s, %s) ON CONFLICT (location)"
                " DO UPDATE SET reason = EXCLUDED.reason, seen_at = now()", list(skipped))

    def skipped_files(self) -> list[dict]:
        return self.rows("SELECT location, reason, seen_at FROM inbox_skipped ORDER BY seen_at DESC, location")

    def log_forget(self, kind: str, target: str, counts_json: str) -> None:
        with self.connection() as conn:
            conn.execute("INSERT INTO forget_log (kind, target, counts) VALUES (%s, %s, %s::jsonb)", (kind, target, counts_json))
