"""Identities, their member sequences and the unresolved sequences of each model."""

from __future__ import annotations

import json
from collections.abc import Sequence

from reid_pipeline.store.connection import StoreBase, lock


class Identities(StoreBase):
    def replace_identities(
        self, model: str, identities: list[dict], members: list[tuple[str, int]], unresolved: Sequence[tuple[int, str]] = (),
        sightings: Sequence[tuple[str, int, dict]] = (), forwards: Sequence[tuple[str, Sequence[str], str]] = (),
    ) -> None:
        """Replace all identities of `model`: rows (identity_id, sequence_count, video_count,
        face_count, best_sequence, optional label and hidden), members (identity_id, sequence row id) and the
        unresolved sequences (sequence row id, reason); the members' `sightings` (identity_id,
        sequence row id, reference that survives re-running the video) that the next
        recomputation keeps the ids by; the `forwards` (old id, new ids, reason) of the ids
        that ended. An id that is live again loses its forward."""
        with self.connection() as conn:
            with conn.transaction():
                lock(conn, "model", model)
                conn.execute("DELETE FROM identities WHERE model = %s", (model,))
                conn.execute("DELETE FROM unresolved_sequences WHERE model = %s", (model,))
                conn.execute("DELETE FROM identity_sightings WHERE model = %s", (model,))
                conn.execute("DELETE FROM identity_forwards WHERE model = %s AND old_id = ANY(%s)",
                             (model, [i["identity_id"] for i in identities] + [f[0] for f in forwards]))
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO identity_sightings (model, identity_id, sequence_id, sighting) VALUES (%s, %s, %s, %s)",
                        [(model, identity, seq, json.dumps(ref)) for identity, seq, ref in sightings],
                    )
                    cur.executemany(
                        "INSERT INTO identity_forwards (model, old_id, new_ids, reason) VALUES (%s, %s, %s, %s)",
                        [(model, old, list(new), reason) for old, new, reason in forwards],
                    )
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

    def previous_sightings(self, model: str) -> list[dict]:
        """The sightings of `model`'s identities as of the last recomputation: identity_id,
        sequence_id (the row id then), sighting (a reference that survives re-running)."""
        return self.rows("SELECT identity_id, sequence_id, sighting FROM identity_sightings WHERE model = %s"
                         " ORDER BY sequence_id", (model,))

    def forward(self, identity_id: str) -> dict | None:
        """What became of an id that ended, following forwards to live identities: {model,
        old_id, reason, new_ids (its direct successors), live (the identities holding its
        sightings now, through any later forwards), at}; None when it never ended."""
        rows = self.rows("SELECT model, old_id, new_ids, reason, at FROM identity_forwards WHERE old_id = %s"
                         " ORDER BY at DESC, model LIMIT 1", (identity_id,))
        if not rows:
            return None
        row = rows[0]
        live: list[str] = []
        seen, todo = {identity_id}, list(row["new_ids"])
        while todo:
            ident = todo.pop(0)
            if ident in seen:
                continue
            seen.add(ident)
            if self.rows("SELECT 1 FROM identities WHERE model = %s AND identity_id = %s", (row["model"], ident)):
                live.append(ident)
            else:
                todo += [n for f in self.rows("SELECT new_ids FROM identity_forwards WHERE model = %s AND old_id = %s",
                                              (row["model"], ident)) for n in f["new_ids"]]
        return {**row, "new_ids": list(row["new_ids"]), "live": live}

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

    def identity_rows(self, identity_id: str | None = None) -> list[dict]:
        """Every identity of every model (or the one of `identity_id`), biggest first:
        identity_id, model, sequence_count, video_count, face_count, label, hidden."""
        return self.rows("SELECT identity_id, model, sequence_count, video_count, face_count, label, hidden FROM identities"
                         " WHERE %s::text IS NULL OR identity_id = %s ORDER BY sequence_count DESC, video_count DESC, identity_id",
                         (identity_id, identity_id))

    def identity_members(self, identity_id: str) -> list[dict]:
        """The member sequences of an identity: model, sequence_id (row id), by row id."""
        return self.rows("SELECT model, sequence_id FROM identity_sequences WHERE identity_id = %s ORDER BY sequence_id",
                         (identity_id,))

    def members_by_identity(self, model: str) -> dict[str, set[int]]:
        """Every identity of `model` -> its member sequence row ids (empty for one stored
        without members)."""
        out: dict[str, set[int]] = {r["identity_id"]: set() for r in self.rows(
            "SELECT identity_id FROM identities WHERE model = %s", (model,))}
        for r in self.rows("SELECT identity_id, sequence_id FROM identity_sequences WHERE model = %s", (model,)):
            out.setdefault(r["identity_id"], set()).add(r["sequence_id"])
        return out

    def identity_holding(self, sequence_id: int) -> str | None:
        """The identity that holds a sequence now (None: unresolved or gone)."""
        rows = self.rows("SELECT identity_id FROM identity_sequences WHERE sequence_id = %s", (sequence_id,))
        return rows[0]["identity_id"] if rows else None

    def set_label(self, identity_id: str, label: str | None) -> None:
        """Show `label` on an identity now (the `label` correction keeps it over recomputations)."""
        with self.connection() as conn:
            conn.execute("UPDATE identities SET label = %s WHERE identity_id = %s", (label, identity_id))

    def best_faces(self, model: str | None = None) -> dict[str, tuple[str | None, int | None]]:
        """Each identity's (of `model`, else of every model) best face by quality: the highest
        quality weight among its sightings' best faces. Identity id -> (partition key,
        detection id), (None, None) when it has no face."""
        rows = self.rows(
            "SELECT i.identity_id, c.partition_key, c.detection_id FROM identities i LEFT JOIN LATERAL ("
            "SELECT f.partition_key, f.detection_id FROM identity_sequences m JOIN sequences s ON s.id = m.sequence_id"
            " JOIN faces f ON f.partition_key = s.partition_key AND f.model = s.model AND f.detection_id = s.best_detection_id"
            " WHERE m.identity_id = i.identity_id ORDER BY f.quality_weight DESC NULLS LAST, s.id LIMIT 1) c ON true"
            " WHERE %s::text IS NULL OR i.model = %s", (model, model))
        return {r["identity_id"]: (r["partition_key"], r["detection_id"]) for r in rows}

    def identity_faces_near(self, partition_key: str, time_s: float, tolerance_s: float) -> list[dict]:
        """The faces of a video within `tolerance_s` of `time_s` that belong to an identity:
        detection_id, box, timestamp_s, id (their sequence's row id), identity_id."""
        return self.rows(
            "SELECT f.detection_id, f.box, f.timestamp_s, s.id, m.identity_id FROM faces f JOIN sequences s"
            " ON s.partition_key = f.partition_key AND s.model = f.model AND s.sequence_number = f.sequence_number"
            " JOIN identity_sequences m ON m.sequence_id = s.id WHERE f.partition_key = %s AND abs(f.timestamp_s - %s) <= %s",
            (partition_key, time_s, tolerance_s))

    def unresolved(self, model: str) -> list[dict]:
        """The unresolved sequences of `model`, with video, time span and reason."""
        return self.rows(
            "SELECT u.reason, s.id, s.partition_key, s.sequence_number, s.start_s, s.end_s, s.face_count,"
            " s.best_detection_id, v.source_uri, v.status AS video_status FROM unresolved_sequences u"
            " JOIN sequences s ON s.id = u.sequence_id"
            " JOIN videos v ON v.partition_key = s.partition_key WHERE u.model = %s ORDER BY s.partition_key, s.start_s",
            (model,),
        )
