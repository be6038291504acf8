"""People's corrections (`corrections`) and how each fared at the last recomputation of
each model (`correction_status`). What a correction means, and how its sightings are found
again, is `identities.corrections`; here are only its rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from reid_pipeline.store.connection import StoreBase, lock


class Corrections(StoreBase):
    def add_correction(self, kind: str, side_a: Sequence[dict], side_b: Sequence[dict], value: str | None, note: str,
                       source: str) -> int:
        """Store one correction and return its id; the same kind, sides and value as the
        newest correction (a form posted twice) is not stored again: its id is returned."""
        with self.connection() as conn, conn.transaction():
            lock(conn, "corrections")  # two posts at once: the second sees the first
            newest = conn.execute("SELECT id, kind, side_a, side_b, value FROM corrections ORDER BY id DESC LIMIT 1").fetchone()
            if newest is not None and (newest["kind"], newest["side_a"], newest["side_b"], newest["value"]) == (
                    kind, json.loads(json.dumps(list(side_a))), json.loads(json.dumps(list(side_b))), value):
                return newest["id"]
            return conn.execute(
                "INSERT INTO corrections (kind, side_a, side_b, value, note, source) VALUES (%s, %s, %s, %s, %s, %s)"
                " RETURNING id", (kind, json.dumps(list(side_a)), json.dumps(list(side_b)), value, note, source),
            ).fetchone()["id"]

    def delete_correction(self, correction_id: int) -> bool:
        """Remove a correction (undo); True when there was one."""
        with self.connection() as conn:
            return conn.execute("DELETE FROM corrections WHERE id = %s RETURNING id", (correction_id,)).fetchone() is not None

    def corrections(self, kind: str | None = None, newest_first: bool = False) -> list[dict]:
        """Every correction (of `kind` when given): id, kind, side_a, side_b, value; oldest
        first, or newest first."""
        order = "created_at DESC, id DESC" if newest_first else "id"
        return self.rows(f"SELECT id, kind, side_a, side_b, value FROM corrections WHERE %s::text IS NULL OR kind = %s"
                         f" ORDER BY {order}", (kind, kind))

    def rewrite_corrections(self, sides: dict[int, tuple[list[dict], list[dict]]], deleted: Iterable[int]) -> None:
        """New sides for some corrections (id -> (side A, side B)), others deleted; one transaction."""
        with self.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM corrections WHERE id = ANY(%s)", (list(deleted),))
            with conn.cursor() as cur:
                cur.executemany("UPDATE corrections SET side_a = %s, side_b = %s WHERE id = %s",
                                [(json.dumps(a), json.dumps(b), cid) for cid, (a, b) in sides.items()])

    def correction_listing(self) -> list[dict]:
        """Every correction, newest first, with the sizes of its sides (`a`, `b`) and its
        status per model (`statuses`: list of {model, status, detail}; empty before the
        first recomputation)."""
        return self.rows(
            "SELECT c.id, c.kind, c.value, c.note, c.source, c.created_at, jsonb_array_length(c.side_a) AS a,"
            " jsonb_array_length(c.side_b) AS b, coalesce(json_agg(json_build_object('model', s.model, 'status', s.status,"
            " 'detail', s.detail) ORDER BY s.model) FILTER (WHERE s.model IS NOT NULL), '[]') AS statuses"
            " FROM corrections c LEFT JOIN correction_status s ON s.correction = c.id GROUP BY c.id ORDER BY c.id DESC")

    def correction_status(self, correction_id: int) -> list[dict]:
        """How a correction fared at the last recomputation: model, status, detail per model."""
        return self.rows("SELECT model, status, detail FROM correction_status WHERE correction = %s ORDER BY model",
                         (correction_id,))

    def corrections_with_detail(self, kind: str, detail: str) -> list[int]:
        """The ids of the corrections of `kind` whose last status says `detail` (in any model)."""
        return [r["id"] for r in self.rows(
            "SELECT DISTINCT c.id FROM corrections c JOIN correction_status s ON s.correction = c.id"
            " WHERE c.kind = %s AND s.detail = %s ORDER BY c.id", (kind, detail))]

    def replace_correction_status(self, model: str, report: dict[int, tuple[str, str]]) -> None:
        """Replace the statuses of `model`'s last recomputation (correction id -> (status, detail))."""
        with self.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM correction_status WHERE model = %s", (model,))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO correction_status (correction, model, status, detail) SELECT %s, %s, %s, %s"
                    " WHERE EXISTS (SELECT 1 FROM corrections WHERE id = %s)",  # one undone meanwhile is skipped
                    [(cid, model, status, detail, cid) for cid, (status, detail) in sorted(report.items())])
