"""Deployment configuration: deploy/dagster.yaml validated by Dagster itself, the compose
file, and a real run with Dagster's run and event storage in (embedded) Postgres."""

import shutil
import subprocess
from urllib.parse import parse_qs, urlparse

import dagster as dg
import psycopg
import pytest
import yaml

from reid_pipeline.config import PROJECT_ROOT
from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.ingest.sources import uri_for
from tests.helpers import failure_message

DEPLOY_ENV = {
    "REID_IMAGE": "reid-pipeline:latest",
}


def _dagster_url(pg_url: str, database: str) -> str:
    """The psycopg2 URL Dagster's Postgres storage needs, for the embedded server's socket."""
    socket_dir = parse_qs(urlparse(pg_url).query)["host"][0]
    return f"postgresql+psycopg2://postgres@/{database}?host={socket_dir}"


@pytest.fixture(scope="module")
def dagster_db(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS dagster_test")
        conn.execute("CREATE DATABASE dagster_test")
    return _dagster_url(pg_url, "dagster_test"), pg_url.replace("/postgres?", "/dagster_test?")


def test_deploy_dagster_yaml_is_a_valid_instance(tmp_path, monkeypatch, dagster_db):
    for name, value in DEPLOY_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_db[0])
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_launcher).__name__ == "DockerRunLauncher"
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
    # the laptop default stays valid too
    laptop, _ = dagster_instance_config(str(PROJECT_ROOT))
    assert laptop["concurrency"]["runs"]["max_concurrent_runs"] >= 1


def test_compose_file_declares_the_deployment():
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "user_code", "webserver", "daemon"} <= set(services)
    # base images are variables whose defaults are the official images
    assert services["postgres"]["image"] == "${REID_POSTGRES_IMAGE:-pgvector/pgvector:pg17}"
    assert services["user_code"]["build"]["args"]["PYTHON_IMAGE"] == "${REID_PYTHON_IMAGE:-python:3.11-slim-bookworm}"
    assert all(services[s].get("restart") == "on-failure" for s in ("user_code", "webserver", "daemon"))
    assert "healthcheck" in services["postgres"]
    assert all(p.startswith("127.0.0.1:") for p in services["webserver"]["ports"])
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["daemon"]["volumes"]
    assert (PROJECT_ROOT / ".env.example").exists() and ".env" in (PROJECT_ROOT / ".gitignore").read_text().split()


def test_docker_compose_config_accepts_the_file(tmp_path):
    """`docker compose config` (or Compose v1) where a Docker CLI with Compose exists."""
    commands = [["docker", "compose"], ["docker-compose"]]
    available = [c for c in commands if shutil.which(c[0]) and subprocess.run([*c, "version"], capture_output=True).returncode == 0]
    if not available:
        pytest.skip("no Docker Compose CLI on this machine")
    env_file = tmp_path / ".env"
    shutil.copy(PROJECT_ROOT / ".env.example", env_file)
    result = subprocess.run(
        [*available[0], "--env-file", str(env_file), "-f", str(PROJECT_ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr
    # the s3 profile over it: Compose merges volume lists by the path in the container, so the
    # override's tmpfs mounts replace the shared volumes in every service
    result = subprocess.run(
        [*available[0], "--env-file", str(env_file), "-f", str(PROJECT_ROOT / "docker-compose.yml"),
         "-f", str(PROJECT_ROOT / "docker-compose.s3.yml"), "config"],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert "s3" in services and services["user_code"]["depends_on"]["s3"]["condition"] == "service_healthy"
    for name in ("user_code", "webserver", "daemon"):
        mounts = [m if isinstance(m, str) else f"{m.get('source', '')}:{m['target']}" for m in services[name]["volumes"]]
        assert not [m for m in mounts if m.startswith(("reid_data:", "reid_inbox:"))], (name, mounts)
        assert services[name]["environment"]["REID_DATA_ROOT"].startswith("s3://"), name


def test_the_s3_profile_gives_run_containers_no_volume_and_every_bucket_setting():
    """The run launcher's context (deploy/dagster.yaml) merged with the code location's
    (DAGSTER_CONTAINER_CONTEXT of user_code in docker-compose.s3.yml), as Dagster merges them
    for each run: the shared profile mounts both volumes, the s3 one none; and every setting
    the s3 profile gives the services reaches the run containers."""
    import json

    from dagster_docker.container_context import DockerContainerContext

    launcher = yaml.safe_load((PROJECT_ROOT / "deploy" / "dagster.yaml").read_text())["run_launcher"]["config"]
    base = DockerContainerContext(env_vars=launcher["env_vars"], container_kwargs=launcher["container_kwargs"])
    assert {v.split(":")[0] for v in base.container_kwargs["volumes"]} == {"reid_data", "reid_inbox"}

    s3 = yaml.safe_load((PROJECT_ROOT / "docker-compose.s3.yml").read_text())
    location = json.loads(s3["services"]["user_code"]["environment"]["DAGSTER_CONTAINER_CONTEXT"])
    merged = base.merge(DockerContainerContext.create_from_config(location))
    assert merged.container_kwargs["volumes"] == []
    settings = set(s3["x-s3-env"])
    assert {"REID_DATA_ROOT", "REID_INBOX_BUCKET", "REID_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"} <= settings
    assert settings <= set(merged.env_vars), settings - set(merged.env_vars)


def test_a_run_with_postgres_instance_storage(tmp_path, monkeypatch, defs, store, dagster_db, two_people_video):
    dagster_home = tmp_path / "dagster_pg_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(
        yaml.safe_dump({"storage": {"postgres": {"postgres_url": dagster_db[0]}}, "telemetry": {"enabled": False}})
    )
    path, _ = two_people_video
    key = partition_key_for("pg_storage.avi")
    store.register_video(key, uri_for(path))
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions("videos", [key])
        result = defs.resolve_job_def("process_video").execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False,
            run_config={"ops": {"frame_detections": {"config": {"sample_fps": 2}}}},
        )
        assert result.success, failure_message(result)
        run_id = result.run_id
    with psycopg.connect(dagster_db[1]) as conn:
        events = conn.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (run_id,),
        ).fetchone()[0]
        runs = conn.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,)).fetchone()[0]
    assert events == 6 and runs == "SUCCESS"


def test_dockerfile_copies_what_exists_and_installs_the_project():
    """What can be checked without a Docker engine (deploy/smoke.py builds it for real)."""
    lines = (PROJECT_ROOT / "Dockerfile").read_text().splitlines()
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ") and "--from=" not in line]
    sources = [s for c in copies for s in c]
    assert sources and all((PROJECT_ROOT / s).exists() for s in sources), sources
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in lines
    text = "\n".join(lines)
    # the wheelhouse path installs with no index; the project goes in last, without its deps
    assert "pip install --no-index --find-links /wheels -c constraints.txt" in text
    assert "--no-deps --no-build-isolation /tmp/reid-src" in text
    import tomllib

    optional = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    default_variant = next(line.split("=", 1)[1] for line in lines if line.startswith("ARG VARIANT="))
    assert default_variant in optional and "gpu" in optional


def test_the_s3_service_image_copies_what_exists():
    lines = (PROJECT_ROOT / "deploy" / "s3.Dockerfile").read_text().splitlines()
    sources = [s for line in lines if line.startswith("COPY ") and "--from=" not in line for s in line.split()[1:-1]]
    assert sources and all((PROJECT_ROOT / s).exists() for s in sources), sources
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in lines
    assert '--no-index --find-links /wheels -c /tmp/constraints.txt "moto[server]"' in "\n".join(lines)


def test_no_certificate_or_secret_goes_into_the_build_context():
    """.dockerignore keeps the venv, the runtime home, secrets and git out; the wheelhouse is in."""
    lines = (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert {".venv", ".reid", ".env", ".git", "inbox"} <= set(ignored)
    assert not any(i.startswith("deploy") for i in ignored)
    for name in ("Dockerfile", "deploy/python-base.Dockerfile", "deploy/postgres.Dockerfile", "deploy/s3.Dockerfile"):
        text = (PROJECT_ROOT / name).read_text()
        assert "ca-certificates.crt" not in text and "PIP_CERT" not in text and "--trusted-host" not in text, name
