"""The laptop's Dagster instance in the project's Postgres (schema `dagster`), and the
one-time import of a home that an older version kept in SQLite: its partitions, runs, events
(materialisations, the failure observations) and run times survive the switch."""

import os
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from reid_pipeline.cli import main, prepare
from reid_pipeline.cli.instance import SCHEMA, sqlite_instance, storage_url
from reid_pipeline.config import Settings
from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.ingest.sources import uri_for
from tests.conftest import build_defs
from tests.helpers import failure_message


def test_the_storage_url_keeps_the_database_and_sets_the_schema():
    from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
    from sqlalchemy.engine import make_url

    def args(url: str) -> dict:
        return PGDialect_psycopg2().create_connect_args(make_url(storage_url(url)))[1]

    assert args("postgresql://postgres:@/postgres?host=/tmp/a%20b/pgdata") == {
        "user": "postgres", "dbname": "postgres", "host": "/tmp/a b/pgdata", "options": "-csearch_path=dagster"}
    assert args("postgresql://reid:p%40ss:w@db.example:5433/reid?sslmode=require") == {
        "user": "reid", "password": "p@ss:w", "host": "db.example", "port": 5433, "dbname": "reid",
        "sslmode": "require", "options": "-csearch_path=dagster"}
    # a libpq key=value string, options of its own kept
    assert args("host=db dbname=x user=u options=-cstatement_timeout=5")["options"] == \
        "-cstatement_timeout=5 -csearch_path=dagster"
    assert storage_url("postgresql://u@h/db").startswith("postgresql+psycopg2://")


def test_reid_puts_the_instance_in_the_dagster_schema(reid_env, store, pg_url):
    prepare(Settings())
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions("videos", ["k"])
    with psycopg.connect(pg_url) as conn:
        schemas = dict(conn.execute("SELECT table_schema, count(*) FROM information_schema.tables WHERE table_name IN"
                                    " ('runs', 'event_logs', 'dynamic_partitions', 'alembic_version', 'instigators')"
                                    " GROUP BY 1").fetchall())
        assert schemas == {SCHEMA: 5}  # all of Dagster's, none among the project's tables
        assert conn.execute("SELECT partition FROM dagster.dynamic_partitions").fetchall() == [("k",)]


def test_in_an_image_the_deployments_instance_is_left_alone(reid_env, store, monkeypatch, tmp_path):
    """The Dockerfile copies deploy/dagster.yaml into DAGSTER_HOME and no repo dagster.yaml:
    `reid gallery` / `forget` in a container keep the deployment's config and storage URL."""
    from reid_pipeline.cli import environment
    from reid_pipeline.cli.instance import URL_VARIABLE

    image_root = tmp_path / "app"
    image_root.mkdir()
    monkeypatch.setattr(environment, "PROJECT_ROOT", image_root)
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True)
    deployment = "storage:\n  postgres:\n    postgres_url:\n      env: DAGSTER_POSTGRES_URL\n"
    (home / "dagster.yaml").write_text(deployment)
    monkeypatch.setenv(URL_VARIABLE, "postgresql+psycopg2://dagster@db/dagster")
    assert prepare(Settings()) == home
    assert (home / "dagster.yaml").read_text() == deployment
    assert os.environ[URL_VARIABLE] == "postgresql+psycopg2://dagster@db/dagster"


@pytest.fixture
def sqlite_home(reid_env, store, two_people_video, tmp_path):
    """A home as an older version left it: the dagster.yaml of then (no storage: SQLite files
    under DAGSTER_HOME), one video materialised and one that failed on its input."""
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    defs = build_defs()
    good, _ = two_people_video
    bad = tmp_path / "broken.mp4"
    bad.write_text("a text file under a video name")
    keys = {"good": partition_key_for(str(good)), "bad": partition_key_for(str(bad))}
    job = defs.resolve_job_def("process_video")
    results = {}
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        for name, path in (("good", good), ("bad", bad)):
            store.register_video(keys[name], uri_for(path))
            instance.add_dynamic_partitions("videos", [keys[name]])
            results[name] = job.execute_in_process(partition_key=keys[name], instance=instance, raise_on_error=False,
                                                   run_config={"ops": {"frame_detections": {"config": {"sample_fps": 2}}}})
        assert results["good"].success, failure_message(results["good"])
        assert not results["bad"].success
        before = {name: (instance.get_run_record_by_id(r.run_id), len(instance.all_logs(r.run_id)))
                  for name, r in results.items()}
        before["status"] = partition_status(instance, keys)
    assert (home / "history" / "runs.db").exists()
    return home, keys, before


def partition_status(instance, keys: dict) -> dict:
    from assets.partitions import videos

    status = instance.get_status_by_partition(dg.AssetKey("face_embeddings"), list(keys.values()), videos)
    return {k: v.value if v is not None else None for k, v in status.items()}


def test_a_sqlite_home_is_imported_once(sqlite_home, capsys):
    home, keys, before = sqlite_home
    status = before.pop("status")
    assert status == {keys["good"]: "MATERIALIZED", keys["bad"]: "FAILED"}
    prepare(Settings())  # the repo's dagster.yaml (Postgres) replaces the old one; the history moves over
    err = capsys.readouterr().err
    assert "moved the Dagster history of this home from SQLite to Postgres" in err and "2 runs" in err
    assert not (home / "history").exists() and (home / "sqlite-imported" / "history" / "runs.db").exists()

    with dg.DagsterInstance.get() as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert set(instance.get_dynamic_partitions("videos")) == set(keys.values())
        assert partition_status(instance, keys) == status
        event = instance.get_latest_materialization_event(dg.AssetKey("face_embeddings"))
        assert event.asset_materialization.partition == keys["good"]
        assert event.asset_materialization.metadata["faces"].value > 0
        for name, (record, events) in before.items():
            now = instance.get_run_record_by_id(record.dagster_run.run_id)
            assert now.dagster_run.status == record.dagster_run.status
            assert now.dagster_run.tags["dagster/partition"] == keys[name]
            assert (now.start_time, now.end_time) == pytest.approx((record.start_time, record.end_time), abs=0.01)
            assert len(instance.all_logs(now.dagster_run.run_id)) == events
            assert instance.has_snapshot(now.dagster_run.execution_plan_snapshot_id)
            assert instance.get_job_snapshot(now.dagster_run.job_snapshot_id).name == "process_video"
        # the failure hook's observation (an event outside the run) says why the bad one failed
        observed = instance.fetch_observations(dg.AssetKey("raw_video"), limit=10).records
        assert any(r.partition_key == keys["bad"] and "not a video container" in
                   r.asset_observation.metadata["reason"].value for r in observed)

    prepare(Settings())  # nothing left to import
    assert "moved the Dagster history" not in capsys.readouterr().err
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_run_records()) == 2

    # the SQLite files kept aside hold the same pictures: forgetting the video deletes its run there too
    good_run = before["good"][0].dagster_run.run_id
    with sqlite_instance(home / "sqlite-imported") as kept:
        assert kept.has_run(good_run)
    assert main(["forget", "--video", keys["good"], "--yes"]) == 0
    assert "1 Dagster runs deleted" in capsys.readouterr().out
    with sqlite_instance(home / "sqlite-imported") as kept:
        assert not kept.has_run(good_run) and kept.has_run(before["bad"][0].dagster_run.run_id)
        assert not kept.has_dynamic_partition("videos", keys["good"])
    with dg.DagsterInstance.get() as instance:
        assert not instance.has_run(good_run) and not instance.has_dynamic_partition("videos", keys["good"])
