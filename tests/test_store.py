from pathlib import Path

import numpy as np
import pytest

from reid_pipeline.config import Settings
from reid_pipeline.store import Store, close_pools, hnsw_index_name, migrate


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
        assert migrate(url, sql) == ["010"]
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
