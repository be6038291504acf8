"""Scored pairs of sequences (`matches`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from reid_pipeline.store.connection import StoreBase, lock


class Matches(StoreBase):
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

    def scored_pairs(self, model: str, method: str) -> list[dict]:
        return self.rows(
            "SELECT sequence_a, sequence_b, score, linked FROM matches WHERE model = %s AND method = %s"
            " ORDER BY sequence_a, sequence_b",
            (model, method),
        )

    def pairs_touching(self, model: str, method: str, sequence_ids: Sequence[int]) -> list[dict]:
        """The scored pairs with a side among `sequence_ids`, best first."""
        ids = list(sequence_ids)
        return self.rows(
            "SELECT sequence_a, sequence_b, score, linked FROM matches WHERE model = %s AND method = %s"
            " AND (sequence_a = ANY(%s) OR sequence_b = ANY(%s)) ORDER BY score DESC", (model, method, ids, ids))
