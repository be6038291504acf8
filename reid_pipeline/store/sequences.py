"""Sequences of a video and their faces: replacing them, the HNSW search on templates (with
`SET LOCAL` search settings, so they end with the transaction), lookups by video, time,
number and row id."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from reid_pipeline.store.connection import StoreBase, as_array, lock


class Sequences(StoreBase):
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

    def sequences_for(self, partition_key: str, model: str) -> list[dict]:
        return self.rows(
            "SELECT id, partition_key, sequence_number, start_frame, end_frame, start_s, end_s, face_count, mean_face_px,"
            " best_detection_id, template FROM sequences WHERE partition_key = %s AND model = %s ORDER BY sequence_number",
            (partition_key, model),
        )

    def sequences_at(self, partition_key: str, time_s: float | None = None, sequence_number: int | None = None) -> list[dict]:
        """Sequences of a video on screen at `time_s`, or its sequence number `sequence_number` (all models)."""
        return self.rows(
            "SELECT s.id, s.model, m.dim, s.partition_key, s.sequence_number, s.start_s, s.end_s, s.face_count"
            " FROM sequences s JOIN face_models m USING (model) WHERE s.partition_key = %s"
            " AND (%s::float8 IS NULL OR (s.start_s <= %s + 1e-6 AND s.end_s >= %s - 1e-6))"
            " AND (%s::int IS NULL OR s.sequence_number = %s) ORDER BY s.model, s.sequence_number",
            (partition_key, time_s, time_s, time_s, sequence_number, sequence_number),
        )

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

    def sequences_with_source(self, ids: Iterable[int]) -> list[dict]:
        """Sequence rows by row id with their video's file, by file and time: id, model,
        partition_key, sequence_number, start_s, end_s, face_count, best_detection_id, source_uri."""
        return self.rows(
            "SELECT s.id, s.model, s.partition_key, s.sequence_number, s.start_s, s.end_s, s.face_count, s.best_detection_id,"
            " v.source_uri FROM sequences s JOIN videos v USING (partition_key) WHERE s.id = ANY(%s)"
            " ORDER BY v.source_uri, s.start_s, s.id", (sorted(set(ids)),))

    def sighting_anchors(self, ids: Iterable[int]) -> list[dict]:
        """What a sighting is remembered by, per sequence row id (by video and time): id,
        partition_key, start_s, end_s and its best face's timestamp_s and box (None when the
        face is gone)."""
        return self.rows(
            "SELECT s.id, s.partition_key, s.start_s, s.end_s, f.timestamp_s, f.box FROM sequences s"
            " LEFT JOIN faces f ON f.partition_key = s.partition_key AND f.model = s.model"
            " AND f.detection_id = s.best_detection_id WHERE s.id = ANY(%s) ORDER BY s.partition_key, s.start_s, s.id",
            (sorted(set(ids)),))

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
