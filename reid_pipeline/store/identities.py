"""Identities, their member sequences and the unresolved sequences of each model."""

from __future__ import annotations

from collections.abc import Sequence

from reid_pipeline.store.connection import StoreBase, lock


class Identities(StoreBase):
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
