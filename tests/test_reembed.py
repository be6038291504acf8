"""A video lives in one face model: re-processing it with another removes its rows of the old
one (the store), a model left without faces is retired (identities, indexes, gallery), and
`reid reembed` brings an archive made with dlib to YuNet + SFace through the Dagster job.
Vectors of different models are never compared, also while an archive holds both."""

from pathlib import Path

import numpy as np
import pytest

from reid_pipeline.cli import main
from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.store import hnsw_index_name
from tests.test_store import _add_video, _rows

DLIB, SFACE = "dlib_resnet_v1", "sface_2021dec"


def _models_of(store, key: str) -> dict[str, set[str]]:
    """The models of a video's rows, per table."""
    return {table: {r["model"] for r in store.rows(f"SELECT DISTINCT model FROM {table} WHERE partition_key = %s", (key,))}
            for table in ("faces", "sequences")}


def _archive_models(store) -> dict[str, set[str]]:
    """The models of every table that holds them."""
    return {table: {r["model"] for r in store.rows(f"SELECT DISTINCT model FROM {table}")}
            for table in ("face_models", "faces", "sequences", "matches", "identities", "identity_sequences",
                          "unresolved_sequences", "correction_status")}


def _hnsw_indexes(store, model: str) -> list[str]:
    names = [hnsw_index_name(model, table) for table in ("faces", "sequences")]
    return [r["indexname"] for r in store.rows("SELECT indexname FROM pg_indexes WHERE indexname = ANY(%s)", (names,))]


def _cross_model_rows(store) -> dict[str, int]:
    """Rows that would mean two models were compared or mixed: a scored pair or an identity
    membership whose sequences are of another model, an identity spanning two models."""
    return store.rows(
        "SELECT (SELECT count(*) FROM matches m JOIN sequences a ON a.id = m.sequence_a JOIN sequences b"
        "  ON b.id = m.sequence_b WHERE a.model <> m.model OR b.model <> m.model) AS matches,"
        " (SELECT count(*) FROM identity_sequences i JOIN sequences s ON s.id = i.sequence_id"
        "  WHERE s.model <> i.model) AS members,"
        " (SELECT count(*) FROM (SELECT i.identity_id FROM identity_sequences i JOIN sequences s ON s.id = i.sequence_id"
        "  GROUP BY i.identity_id HAVING count(DISTINCT s.model) > 1) AS t) AS identities")[0]


# -- the store ----------------------------------------------------------------------------
def test_storing_a_video_with_another_model_removes_its_old_rows_and_retires_the_empty_model(store):
    rng = np.random.default_rng(3)
    store.ensure_model("old-m8", "test", 8)
    store.ensure_model("new-m4", "test", 4)
    people = rng.normal(size=(2, 8))
    _add_video(store, "a", "old-m8", people, rng)
    _add_video(store, "b", "old-m8", people, rng)  # the same two people: a pair scored and linked
    store.upsert_matches("old-m8", "template", [{
        "sequence_a": min(a, b), "sequence_b": max(a, b), "partition_a": "a", "partition_b": "b", "score": 0.9,
        "template_similarity": 0.9, "linked": True}
        for a, b in [(store.sequences_for("a", "old-m8")[0]["id"], store.sequences_for("b", "old-m8")[0]["id"])]])
    seq_a = [s["id"] for s in store.sequences_for("a", "old-m8")]
    seq_b = [s["id"] for s in store.sequences_for("b", "old-m8")]
    store.replace_identities("old-m8", [
        {"identity_id": "p-both", "sequence_count": 2, "video_count": 2, "face_count": 6, "best_sequence": seq_a[0]},
        {"identity_id": "p-a", "sequence_count": 1, "video_count": 1, "face_count": 3, "best_sequence": seq_a[1]},
        {"identity_id": "p-b", "sequence_count": 1, "video_count": 1, "face_count": 3, "best_sequence": seq_b[1]},
    ], [("p-both", seq_a[0]), ("p-both", seq_b[0]), ("p-a", seq_a[1]), ("p-b", seq_b[1])])
    assert store.get_video("a")["model"] == "old-m8"  # recorded with the faces

    # video a again, with the new model: its old rows go in the same transaction
    vectors = rng.normal(size=(5, 4)).astype(np.float32)
    assert store.replace_faces("a", "new-m4", _rows(5), vectors) == 5
    assert _models_of(store, "a") == {"faces": {"new-m4"}, "sequences": set()}
    assert store.get_video("a")["model"] == "new-m4"
    assert _models_of(store, "b") == {"faces": {"old-m8"}, "sequences": {"old-m8"}}  # other videos keep theirs
    assert store.scored_pairs("old-m8", "template") == []  # the pair lost its sequence of video a
    # identities of the old model keep what is left of them; one left with no sighting goes
    assert {r["identity_id"] for r in store.rows("SELECT identity_id FROM identities WHERE model = 'old-m8'")} == {
        "p-both", "p-b"}
    assert {m["model"] for m in store.models()} == {"old-m8", "new-m4"}  # b still has old-m8 faces

    # video b too: no face of old-m8 is left anywhere, so the model goes with its indexes
    assert store.replace_faces("b", "new-m4", _rows(5), vectors) == 5
    assert [m["model"] for m in store.models()] == ["new-m4"]
    assert _hnsw_indexes(store, "old-m8") == [] and len(_hnsw_indexes(store, "new-m4")) == 2
    models = _archive_models(store)
    assert all(found <= {"new-m4"} for found in models.values()), models
    assert store.model_summary() == [{"model": "new-m4", "videos": 2, "faces": 10}]

    # the model comes back as any new one does
    store.ensure_model("old-m8", "test", 8)
    _add_video(store, "c", "old-m8", people, rng)
    assert len(_hnsw_indexes(store, "old-m8")) == 2
    assert store.nearest_sequences("old-m8", 8, people[0] / np.linalg.norm(people[0]), 1)[0]["partition_key"] == "c"


def test_a_faceless_video_records_its_model_and_a_model_with_faces_is_never_retired(store):
    rng = np.random.default_rng(4)
    store.ensure_model("old-m8", "test", 8)
    store.ensure_model("new-m4", "test", 4)
    _add_video(store, "a", "old-m8", rng.normal(size=(1, 8)), rng)
    store.register_video("empty", "file:///empty.mp4")
    assert store.replace_faces("empty", "new-m4", [], np.zeros((0, 4), np.float32)) == 0
    assert store.get_video("empty")["model"] == "new-m4"
    assert store.retire_models() == ["new-m4"]  # no face anywhere: retired; old-m8 has faces
    assert [m["model"] for m in store.models()] == ["old-m8"]
    assert store.model_summary() == [{"model": "new-m4", "videos": 1, "faces": 0},
                                     {"model": "old-m8", "videos": 1, "faces": 3}]
    # a model that is not registered (or was retired meanwhile) is refused, and nothing changes
    with pytest.raises(LookupError, match="not registered"):
        store.replace_faces("a", "new-m4", _rows(2), rng.normal(size=(2, 4)).astype(np.float32))
    assert _models_of(store, "a") == {"faces": {"old-m8"}, "sequences": {"old-m8"}}


def test_reembed_plans_the_videos_of_other_models_and_leaves_those_whose_file_is_gone(store, tmp_path):
    from reid_pipeline.cli.reembed import plan_reembed
    from reid_pipeline.ingest.sources import uri_for

    rng = np.random.default_rng(5)
    store.ensure_model("old-m8", "test", 8)
    store.ensure_model("new-m4", "test", 4)
    _add_video(store, "old", "old-m8", rng.normal(size=(1, 8)), rng)
    _add_video(store, "gone", "old-m8", rng.normal(size=(1, 8)), rng)
    for key in ("new", "never", "faceless"):
        store.register_video(key, f"file:///{key}.mp4")
    for key in ("old", "gone", "new", "never", "faceless"):  # real files, but that of `gone`
        path = tmp_path / f"{key}.avi"
        path.write_bytes(b"x")
        with store.connection() as conn:
            conn.execute("UPDATE videos SET source_uri = %s WHERE partition_key = %s", (uri_for(path), key))
    (tmp_path / "gone.avi").unlink()
    store.replace_faces("new", "new-m4", _rows(2), rng.normal(size=(2, 4)).astype(np.float32))
    with store.connection() as conn:  # processed before sql/011 recorded the model, no faces found
        conn.execute("UPDATE videos SET status = 'ready' WHERE partition_key = 'faceless'")

    plan = plan_reembed(store, "new-m4")
    assert [v["partition_key"] for v in plan.stale] == ["old"] and plan.stale[0]["was"] == ["old-m8"]
    assert [v["partition_key"] for v in plan.missing] == ["gone"]  # its run would fail: kept with its vectors
    assert plan.rest == [] and plan.unrecorded == 1
    assert plan.describe(dry_run=True) == "1 video has vectors of old-m8; would re-process it with new-m4"
    everything = plan_reembed(store, "new-m4", everything=True)
    assert [v["partition_key"] for v in everything.videos] == ["old", "new", "never", "faceless"]
    assert everything.describe(dry_run=False) == (
        "1 video has vectors of old-m8, 3 more with --all; re-processing 4 videos with new-m4")
    assert plan_reembed(store, "old-m8").describe(dry_run=False) == (
        "1 video has vectors of new-m4; re-processing it with old-m8")


def test_the_migration_records_the_model_of_each_videos_newest_faces(pg_url, tmp_path):
    """sql/011 on an archive stored before it: a video takes the model of its newest faces
    (a re-run under another model could leave an old copy behind), a faceless one none; the
    old copy is still listed, so `reid reembed` finds the video."""
    import shutil

    import psycopg

    from reid_pipeline.config import Settings
    from reid_pipeline.store import Store, close_pools, migrate

    sql = Path(Settings().sql_dir)
    old = tmp_path / "sql"
    old.mkdir()
    for path in sql.glob("*.sql"):
        if path.name < "011":
            shutil.copy(path, old)
    name = "reid_migration_011"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(pg_url, dbname=name)
    try:
        migrate(url, old)
        with psycopg.connect(url, autocommit=True) as conn:
            for key in ("both", "old", "faceless"):
                conn.execute("INSERT INTO videos (partition_key, source_uri) VALUES (%s, %s)", (key, f"file:///{key}.mp4"))
            conn.execute("INSERT INTO face_models VALUES ('m-old', 'test', 2), ('m-new', 'test', 2)")
            for key, model in (("both", "m-old"), ("old", "m-old"), ("both", "m-new")):  # in this order
                conn.execute("INSERT INTO faces (partition_key, detection_id, frame_index, timestamp_s, box, model, embedding)"
                             " VALUES (%s, 0, 0, 0, '{0,0,1,1}', %s, '[1,0]')", (key, model))
        assert "011" in migrate(url, sql)
        store = Store(url)
        assert {v["partition_key"]: (v["model"], v["stored"]) for v in store.video_models()} == {
            "both": ("m-new", ["m-new", "m-old"]), "old": ("m-old", ["m-old"]), "faceless": (None, [])}
    finally:
        close_pools(url)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")


# -- the pipeline and the command line ------------------------------------------------------
def test_reembed_brings_a_dlib_archive_to_sface(reid_env, store, capsys, monkeypatch, two_videos):
    """An archive processed with dlib, then `reid reembed` with yunet_sface: every row of its
    videos is sface_2021dec, no dlib_resnet_v1 row, index or gallery is left, identities
    exist for sface_2021dec only, and a label given under dlib still names the person."""
    a, b = two_videos["a"], two_videos["b"]
    keys = {partition_key_for(str(p.resolve())) for p in (a, b)}
    monkeypatch.setenv("REID_FACE_BACKEND", "dlib")
    assert main(["process", str(a), str(b), "--sample-fps", "4"]) == 0
    capsys.readouterr()
    assert all(_models_of(store, key) == {"faces": {DLIB}, "sequences": {DLIB}} for key in keys)
    # the astronaut is in both videos: label them (a correction keyed by what survives a re-run)
    astronaut = store.rows("SELECT identity_id FROM identities WHERE model = %s AND video_count = 2", (DLIB,))
    assert len(astronaut) == 1
    assert main(["identity", "label", astronaut[0]["identity_id"], "Astro"]) == 0
    gallery = reid_env / "home" / "data" / "gallery"
    assert (gallery / DLIB / "index.html").exists()

    monkeypatch.setenv("REID_FACE_BACKEND", "yunet_sface")
    capsys.readouterr()
    assert main(["reembed", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"2 videos have vectors of {DLIB}; would re-process them with {SFACE}" in out
    assert "dry run: nothing re-processed" in out
    assert all(_models_of(store, key)["faces"] == {DLIB} for key in keys)  # untouched

    assert main(["reembed"]) == 0
    out = capsys.readouterr().out
    assert f"2 videos have vectors of {DLIB}; re-processing them with {SFACE}" in out
    assert "[2/2]" in out  # a line per video, as `reid retry` prints
    assert f"2 re-embedded with {SFACE}, 0 failed; no vectors of {DLIB} are left" in out
    for key in keys:
        assert _models_of(store, key) == {"faces": {SFACE}, "sequences": {SFACE}}
        assert store.get_video(key)["model"] == SFACE and store.get_video(key)["status"] == "ready"
    models = _archive_models(store)
    assert all(found <= {SFACE} for found in models.values()), models
    assert models["identities"] == {SFACE} and models["face_models"] == {SFACE}
    assert _hnsw_indexes(store, DLIB) == []
    assert not (gallery / DLIB).exists() and (gallery / SFACE / "index.html").exists()
    # the label followed the astronaut's sightings into the new model's identities
    [labelled] = store.rows("SELECT identity_id, video_count FROM identities WHERE label = 'Astro'")
    assert labelled["video_count"] == 2

    assert main(["reembed"]) == 0
    assert capsys.readouterr().out.strip() == f"nothing to re-embed: every video's vectors are of {SFACE}"
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"model {SFACE}: 2 videos" in out and DLIB not in out


def test_an_archive_of_two_models_never_compares_across_them(reid_env, store, capsys, monkeypatch, two_videos):
    """One video embedded with dlib, the other with SFace: matches and identities stay within
    a model (the astronaut, in both videos, is two identities, one per model), and what is
    asked of one model never returns the other's videos."""
    a, b = two_videos["a"], two_videos["b"]
    key_a, key_b = (partition_key_for(str(p.resolve())) for p in (a, b))
    monkeypatch.setenv("REID_FACE_BACKEND", "dlib")
    assert main(["process", str(a), "--sample-fps", "4"]) == 0
    monkeypatch.setenv("REID_FACE_BACKEND", "yunet_sface")
    assert main(["process", str(b), "--sample-fps", "4"]) == 0
    capsys.readouterr()

    assert _models_of(store, key_a) == {"faces": {DLIB}, "sequences": {DLIB}}
    assert _models_of(store, key_b) == {"faces": {SFACE}, "sequences": {SFACE}}
    assert {m["model"] for m in store.models()} == {DLIB, SFACE}
    assert _cross_model_rows(store) == {"matches": 0, "members": 0, "identities": 0}
    for model, key in ((DLIB, key_a), (SFACE, key_b)):
        pairs = store.rows("SELECT partition_a, partition_b FROM matches WHERE model = %s", (model,))
        assert {p for r in pairs for p in (r["partition_a"], r["partition_b"])} <= {key}
        idents = store.rows("SELECT identity_id, video_count FROM identities WHERE model = %s", (model,))
        assert idents and all(i["video_count"] == 1 for i in idents)
        assert {s["partition_key"] for s in store.sightings(model)} == {key}

    # a sighting of the dlib video is searched among dlib vectors only
    assert main(["search", "--video", key_a, "--time", "0.5"]) in (0, 1)
    out = capsys.readouterr().out
    assert f"[{DLIB}," in out and key_b not in out
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"model {DLIB}: 1 video, 8 faces" in out and f"model {SFACE}: 1 video," in out and "reid reembed" in out

    # reembed lists only the dlib video, and afterwards the archive is one model
    assert main(["reembed", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"1 video has vectors of {DLIB}; would re-process it with {SFACE}" in out
    assert key_a[:34] in out and key_b[:34] not in out
    assert main(["reembed"]) == 0
    assert {m["model"] for m in store.models()} == {SFACE}
    assert _cross_model_rows(store) == {"matches": 0, "members": 0, "identities": 0}
    assert store.rows("SELECT max(video_count) AS n FROM identities")[0]["n"] == 2  # now the astronaut is one person


def test_reembed_backfill_hands_the_videos_to_the_daemon_tagged_with_the_model(reid_env, store, cli_instance, capsys,
                                                                                 two_videos):
    """`--backfill` launches what `reid backfill` launches (one `backfill_videos` run that the
    daemon picks up: here, with no daemon, it stays queued), for the videos of other models."""
    import dagster as dg

    from reid_pipeline.ingest.sources import uri_for

    rng = np.random.default_rng(6)
    store.ensure_model(DLIB, "dlib", 128)
    _add_video(store, "old", DLIB, rng.normal(size=(1, 128)), rng)
    with store.connection() as conn:
        conn.execute("UPDATE videos SET source_uri = %s WHERE partition_key = 'old'", (uri_for(two_videos["a"]),))
    assert main(["reembed", "--backfill", "--batch", "2", "--tags", '{"who": "test"}']) == 0
    out = capsys.readouterr().out
    assert f"1 video has vectors of {DLIB}; re-processing it with {SFACE}" in out and "launched" in out
    [run] = cli_instance.get_runs(filters=dg.RunsFilter(tags={"reid/reembed": SFACE}))
    assert run.job_name == "backfill_videos" and run.tags["who"] == "test"
    assert run.status == dg.DagsterRunStatus.QUEUED
    assert run.run_config["ops"]["plan_batches"]["config"]["partition_keys"] == ["old"]
    assert cli_instance.has_dynamic_partition("videos", "old")
