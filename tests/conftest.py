"""Shared fixtures: an embedded Postgres per test session, isolated settings, test videos.

Test videos are composed from real face photos that installed packages ship
(`tests.synthetic`); nothing here needs the dev data or the network.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from reid_pipeline.config import Settings
from reid_pipeline.database import embedded_server
from reid_pipeline.store import Store
from tests import synthetic


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Tests that start the whole stack (`e2e`) run one after another on one worker when the
    suite runs in several processes (`./reid test` runs pytest-xdist with `--dist loadgroup`):
    two stacks at once would share 2 cores between two webservers, daemons and their runs."""
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.xdist_group("stack"))


@pytest.fixture(scope="session")
def pg_url():
    """One embedded Postgres + pgvector for the session (short path: its socket lives there)."""
    folder = Path(tempfile.mkdtemp(prefix="reid-pg-", dir="/tmp"))
    server = embedded_server(folder / "pgdata")
    url = server.get_uri()
    Store(url).migrate(Settings().sql_dir)
    yield url
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def store(pg_url) -> Store:
    store = Store(pg_url)
    with store.connection() as conn:
        conn.execute("TRUNCATE videos, faces, face_models, inbox_skipped, forget_log, corrections CASCADE")
    return store


@pytest.fixture
def reid_env(tmp_path, monkeypatch, pg_url):
    """Settings pointing at tmp folders and the session database. The Dagster instance that
    `reid` commands open (the repo's dagster.yaml: storage in the database's `dagster`
    schema) starts empty: the schema is dropped, and the storage URL that `prepare` exports
    is taken back after the test."""
    from reid_pipeline.cli.instance import SCHEMA, URL_VARIABLE

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    monkeypatch.delenv(URL_VARIABLE, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("REID_HOME", str(home))
    monkeypatch.setenv("REID_DATA_ROOT", str(home / "data"))  # also restored after `reid` commands set it
    monkeypatch.setenv("REID_DATABASE_URL", pg_url)
    monkeypatch.setenv("REID_INBOX", str(tmp_path / "inbox"))
    monkeypatch.setenv("REID_FACE_BACKEND", "yunet_sface")
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    (tmp_path / "inbox").mkdir()
    return tmp_path


@pytest.fixture(scope="session")
def videos_dir():
    folder = Path(tempfile.mkdtemp(prefix="reid-videos-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def two_people_video(videos_dir):
    path = videos_dir / "two_people.avi"
    gt = synthetic.write_video(synthetic.two_people_walking(seconds=2.0), path)
    return path, gt


@pytest.fixture(scope="session")
def faceless_video(videos_dir):
    path = videos_dir / "faceless.avi"
    synthetic.write_video(synthetic.faceless(seconds=2.0), path)
    return path


LEFT = ((0.22, 0.35), (0.3, 0.4), 1.0)
RIGHT = ((0.78, 0.6), (0.7, 0.55), 0.9)
CENTRE = ((0.45, 0.5), (0.55, 0.5), 1.2)


def _fix_scene(shots):
    return synthetic.Scene([
        synthetic.Shot(10, synthetic.background_for(i + 5), [synthetic.Actor(synthetic.face_by_person(p), *place)
                                                             for p, place in people])
        for i, people in enumerate(shots)])


@pytest.fixture(scope="session")
def two_videos(videos_dir):
    """fix_a: the astronaut and Tom Hanks together; fix_b: t1_0, then the astronaut after a cut."""
    paths = {"a": videos_dir / "fix_a.avi", "b": videos_dir / "fix_b.avi"}
    synthetic.write_video(_fix_scene([[("astronaut", LEFT), ("tom_hanks", RIGHT)]]), paths["a"])
    synthetic.write_video(_fix_scene([[("t1_0", CENTRE)], [("astronaut", RIGHT)]]), paths["b"])
    return paths


def build_defs() -> dg.Definitions:
    """The project's Definitions with resources built from the current environment."""
    from definitions import build_definitions

    return build_definitions()


@pytest.fixture
def defs(reid_env):
    # built fresh per test so the resources see this test's settings
    return build_defs()


@pytest.fixture
def instance(reid_env):
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def cli_instance(reid_env):
    """The instance that `reid` commands open in this test (`prepare`: the repo's dagster.yaml,
    storage in the session database's `dagster` schema): for tests that mix runs made here
    with commands."""
    from reid_pipeline.cli import prepare

    prepare(Settings())
    with dg.DagsterInstance.get() as instance:
        yield instance


# --------------------------------------------------------------------------- S3
# A real S3-compatible server: moto's standalone server on a local port, spoken to by real
# clients (boto3, s3fs) over HTTP; nothing is mocked.


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        yield url
    finally:
        # moto keeps its state in this process: leave no buckets behind for other tests
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=5).close()
        server.stop()


@pytest.fixture
def endpoint(s3_server, monkeypatch, tmp_path):
    # dummy credentials, no profile, no instance metadata: nothing may reach the internet
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REID_S3_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("REID_HOME", str(tmp_path / "home"))
    return s3_server
