from pathlib import Path

import numpy as np
import pytest

from reid_pipeline.config import Settings
from reid_pipeline.store import Store, close_pools, hnsw_index_name, migrate, migrations


def _rows(n):
    return [(i, i * 2, i * 0.2, [0, 0, 10, 10], 1.0, 10.0, 50.0, 0.0, 0.0, 0.0) for i in range(n)]


def test_migrations_are_idempotent(pg_url):
    sql = Settings().sql_dir
    assert migrate(pg_url, sql) == []  # the session fixture applied them already
    assert migrate(pg_url, sql) == []


def test_the_sequence_number_migration_keeps_every_row(pg_url, tmp_path):
    """sql/010 renames the number within a video to sequence_number and the references to a
    sequence row to sequence_id, on a database that holds data of the old names."""
    import shutil

    import psycopg

    sql = Path(Settings().sql_dir)
    old = tmp_path / "sql"
    old.mkdir()
    for path in sql.glob("*.sql"):
        if path.name < "010":
            shutil.copy(path, old)
    name = "reid_migration_010"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(pg_url, dbname=name)
    try:
        migrate(url, old)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO videos (partition_key, source_uri) VALUES ('v', 'file:///v.mp4')")
            conn.execute("INSERT INTO face_models VALUES ('m', 'test', 2)")
            conn.execute("INSERT INTO faces (partition_key, detection_id, frame_index, timestamp_s, box, model, embedding,"
                         " sequence_id) VALUES ('v', 0, 0, 0, '{0,0,1,1}', 'm', '[1,0]', 3)")
            conn.execute("INSERT INTO sequences (id, partition_key, model, sequence_id, shot, start_frame, end_frame, start_s,"
                         " end_s, face_count, template) VALUES (41, 'v', 'm', 3, 0, 0, 0, 0, 0, 1, '[1,0]')")
            conn.execute("INSERT INTO identities (identity_id, model, sequence_count, video_count, face_count, best_sequence)"
                         " VALUES ('p', 'm', 1, 1, 1, 41)")
            conn.execute("INSERT INTO identity_sequences (model, identity_id, sequence) VALUES ('m', 'p', 41)")
            conn.execute("INSERT INTO unresolved_sequences (model, sequence, reason) VALUES ('m', 41, 'r')")
        assert migrate(url, sql) == [v for v, _ in migrations(sql) if v >= "010"]
        store = Store(url)
        [seq] = store.sequences_at("v", sequence_number=3)
        assert seq["id"] == 41
        assert store.sequence_faces([41])[41][0].shape == (1, 2)  # faces found by their sequence number
        assert store.identity_of("m", [41]) == {41: "p"}
        assert [u["id"] for u in store.unresolved("m")] == [41]
        assert store.rows("SELECT indexname FROM pg_indexes WHERE indexname = 'faces_sequence_number_idx'")
    finally:
        close_pools(url)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")


def test_replacing_faces_never_duplicates_and_uses_the_model_index(store):
    store.register_video("v1", "file:///v1.mp4")
    store.ensure_model("m8", "test", 8)
    store.ensure_model("m8", "test", 8)  # a second call is a no-op
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    assert store.replace_faces("v1", "m8", _rows(30), vectors) == 30
    assert store.replace_faces("v1", "m8", _rows(30), vectors) == 30
    assert store.count_faces("v1") == 30
    hits = store.nearest_faces("m8", 8, vectors[7], limit=3)
    assert hits[0]["detection_id"] == 7 and hits[0]["distance"] == pytest.approx(0, abs=1e-5)
    with store.connection() as conn:
        # on 30 rows the planner prefers a scan + sort; forbid both to see that the
        # per-model HNSW index can serve the query (its expression and predicate match)
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_sort = off")
        plan = "\n".join(
            r["QUERY PLAN"]
            for r in conn.execute(
                "EXPLAIN SELECT id FROM faces WHERE model = 'm8' ORDER BY embedding::vector(8) <=> %s LIMIT 3",
                (vectors[0],),
            )
        )
    assert hnsw_index_name("m8") in plan


def test_a_model_keeps_its_dimension(store):
    store.ensure_model("m4", "test", 4)
    with pytest.raises(ValueError, match="dimension 4"):
        store.ensure_model("m4", "test", 5)


def test_same_content_is_a_duplicate_of_the_first(store):
    info = dict(size_bytes=1, codec="MJPG", fps=10.0, frame_count=1, duration_s=0.1, width=2, height=2, rotation=0)
    store.register_video("first", "file:///a.mp4")
    store.register_video("second", "file:///b.mp4")
    assert store.record_probe("first", info, "abc") is None
    assert store.record_probe("second", info, "abc") == "first"
    assert store.get_video("second")["status"] == "duplicate"
    assert store.record_probe("first", info, "abc") is None  # re-materialising the original


def _add_video(store, key: str, model: str, centres: np.ndarray, rng, faces_per_sequence: int = 3) -> None:
    """A video of one sequence per row of `centres` (one after the other), each of
    `faces_per_sequence` faces near its centre, as `face_embeddings` and `face_sequences`
    store them."""
    import polars as pl

    n, dim = centres.shape
    vectors = centres.repeat(faces_per_sequence, axis=0) + rng.normal(scale=0.05, size=(n * faces_per_sequence, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    store.register_video(key, f"file:///{key}.mp4")
    store.replace_faces(key, model, _rows(len(vectors)), vectors)
    templates = np.stack([vectors[i * faces_per_sequence:(i + 1) * faces_per_sequence].mean(axis=0) for i in range(n)])
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    first = [i * faces_per_sequence for i in range(n)]
    sequences = pl.DataFrame({
        "sequence_number": list(range(n)), "shot": [0] * n, "start_frame": [f * 2 for f in first],
        "end_frame": [(f + faces_per_sequence - 1) * 2 for f in first], "start_s": [f * 0.2 for f in first],
        "end_s": [(f + faces_per_sequence - 1) * 0.2 for f in first], "face_count": [faces_per_sequence] * n,
        "mean_face_px": [50.0] * n, "mean_blur": [10.0] * n, "mean_abs_yaw": [0.0] * n, "mean_quality": [1.0] * n,
        "best_detection_id": first,
    })
    faces = pl.DataFrame({
        "detection_id": list(range(len(vectors))), "sequence_number": [i // faces_per_sequence for i in range(len(vectors))],
        "reject_reason": pl.Series([None] * len(vectors), dtype=pl.String), "quality_weight": [1.0] * len(vectors),
    })
    store.replace_sequences(key, model, sequences, templates, faces)


def test_matching_a_video_reads_its_own_rows_and_candidates_never_the_archive(store, pg_url, tmp_path, monkeypatch):
    """`cross_video_matches` (per video) on an archive of 600 sequences and 1,800 faces: no
    query returns more rows than this video's sequences, their nearest candidates and those
    candidates' faces (the link sheet once read every sequence of the archive); the HNSW
    search settings end with their transaction, so pooled connections go back unchanged."""
    import dagster as dg
    import polars as pl
    import psycopg

    from assets.reid import MatchConfig, cross_video_matches
    from reid_pipeline.storage import write_parquet
    from resources import DataStorage, ObjectStore, ReidDatabase

    model, dim, rng = "test-m8", 8, np.random.default_rng(7)
    store.ensure_model(model, "test", dim)
    archive = rng.normal(size=(600, dim))
    for v in range(60):
        _add_video(store, f"archive-{v:02d}", model, archive[v * 10:(v + 1) * 10], rng)
    # the new video: the person of one archive sequence, and two people nobody has seen
    _add_video(store, "new", model, np.vstack([archive[123], rng.normal(size=(2, dim))]), rng)
    storage = DataStorage(data_root=str(tmp_path / "data"), s3=ObjectStore(video_cache=str(tmp_path / "cache")))
    write_parquet(pl.DataFrame({"model": [model] * 9}), storage.path("face_embeddings", "new"))
    database = ReidDatabase(database_url=pg_url, pgdata=str(tmp_path / "unused"), sql_dir=str(Settings().sql_dir))

    queries = []  # (SQL, rows it returned, connection)
    execute = psycopg.Cursor.execute

    def counted(cursor, query, params=None, **kwargs):
        out = execute(cursor, query, params, **kwargs)
        queries.append((str(query), cursor.rowcount if cursor.description else 0, cursor.connection))
        return out

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    candidates = 5
    result = cross_video_matches(dg.build_asset_context(partition_key="new"), config=MatchConfig(threshold=0.9, candidates=candidates),
                                 database=database, storage=storage)
    monkeypatch.undo()

    metadata = result.metadata
    assert metadata["sequences_queried"] == 3 and metadata["links"] >= 1 and "best_links" in metadata
    # 3 sequences, (candidates + 1) nearest each, 3 faces per sequence: never the archive's 600 or 1,800
    most = max(queries, key=lambda q: q[1])
    assert most[1] <= 3 * (candidates + 1) * 3, most[0]
    assert sum(rows for _, rows, _ in queries) < 200
    searches = {id(conn): conn for sql, _, conn in queries if sql.startswith("SET") and "hnsw." in sql}
    assert searches
    for conn in searches.values():  # back in the pool: the server's default again
        assert conn.execute("SHOW hnsw.ef_search").fetchone()["hnsw.ef_search"] == "40"
        assert conn.execute("SHOW hnsw.iterative_scan").fetchone()["hnsw.iterative_scan"] == "off"
        conn.rollback()
