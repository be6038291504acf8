"""The compose deployment, run for real on this machine, end to end, and left as found.

    .venv/bin/python deploy/smoke.py [--profile s3]   # or deploy/smoke.sh; as root on Debian
    REID_DOCKER_SMOKE=1 ./reid test tests/test_deploy_smoke.py

Two profiles: `shared` (default; docker-compose.yml: the inbox and the data root are the
volumes reid_inbox and reid_data, which every run container mounts) and `s3`
(+ docker-compose.s3.yml: both are buckets of a moto server in a container, and the run
containers mount no volume at all, only the environment).

What it does, in order (each step prints one line with its numbers):

1. installs docker.io and docker-compose (and debootstrap, chromium) where missing, and
   starts dockerd if none runs (stopped again at the end);
2. base images: the official ones when present or pullable, else local ones: Debian
   bookworm and trixie by `debootstrap --variant=minbase` from the mirror apt uses, `docker
   import`, then deploy/python-base.Dockerfile and deploy/postgres.Dockerfile;
3. the wheelhouse (deploy/wheelhouse.sh, on the host) and the project image from it (and,
   for `s3`, the S3 service's image, deploy/s3.Dockerfile, from the same base and wheelhouse);
4. clean run: `docker-compose up -d`, waits for health, puts two generated clips in the
   inbox (`shared`: copied into the inbox volume; `s3`: uploaded to the inbox bucket), waits
   until the DockerRunLauncher has run one container per video and the identities are
   built; checks the run containers' mounts (`shared`: the two volumes; `s3`: none), the
   data root's files (a parquet file per asset per video, in the volume or the bucket),
   counts rows (videos, faces, sequences, identities), Dagster's runs and events, times each
   run, and screenshots the UI (127.0.0.1 only);
5. fault run: a fresh stack, the same clips, one run container killed (SIGKILL) mid-run:
   run monitoring marks the run failed, run retries launch it again; the rows must equal
   the clean run's;
6. `docker-compose down -v` and the run containers: no container, volume or network of
   the smoke run stays (nor any the engine did not have before the run), nor a dockerd it
   started. Images stay (the next build is warm);
   `--remove-images` removes them too.

Exit status 0 when every check held. `--json PATH` writes the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OFFICIAL_PYTHON = "python:3.11-slim-bookworm"
OFFICIAL_POSTGRES = "pgvector/pgvector:pg17"
LOCAL_DEBIAN = "reid-local/debian:{suite}"
LOCAL_PYTHON = "reid-local/python:3.11-bookworm"
LOCAL_POSTGRES = "reid-local/pgvector:pg17"
IMAGE = "reid-pipeline:smoke"
S3_IMAGE = "reid-s3:smoke"
PROFILES = ("shared", "s3")
# the s3 profile's buckets (made by the S3 service at start) and its endpoint in the network
INBOX_BUCKET, INBOX_PREFIX = "reid-inbox", "incoming"
DATA_BUCKET, DATA_PREFIX = "reid-data", "archive"
# the per-video assets that write one parquet file per partition under the data root
PARQUET_ASSETS = ("frame_detections", "face_embeddings", "face_sequences")
PROJECT = "reidsmoke"
# named in docker-compose.yml and deploy/dagster.yaml (run containers mount them by name)
SHARED_VOLUMES = ("reid_data", "reid_inbox")
NETWORK = "reid_pipeline_network"
CLIPS = ("walk.avi", "return.avi")
WAIT_S = 600


class SmokeFailure(Exception):
    pass


def log(message: str) -> None:
    print(f"[smoke {time.strftime('%H:%M:%S')}] {message}", flush=True)


def sh(*cmd: str, check: bool = True, capture: bool = True, timeout: float | None = None, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise SmokeFailure(f"{' '.join(cmd)} exited {result.returncode}: {(result.stderr or '')[-2000:]}")
    return result


def ok(*cmd: str, timeout: float | None = None) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# ------------------------------------------------------------------ machine: packages, dockerd


def apt_install(*packages: str) -> None:
    log(f"apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sh("apt-get", "update", "-q", env=env)
    sh("apt-get", "install", "-y", "-q", *packages, env=env)


def ensure_tools(need_debootstrap: bool) -> None:
    missing = []
    if not shutil.which("dockerd"):
        missing.append("docker.io")
    if not (shutil.which("docker-compose") or ok("docker", "compose", "version")):
        missing.append("docker-compose")
    if not shutil.which("chromium"):
        missing.append("chromium")
    if need_debootstrap and not shutil.which("debootstrap"):
        missing.append("debootstrap")
    if missing:
        apt_install(*missing)


class Dockerd:
    """The Docker engine: the running one, or one started here and stopped at the end."""

    def __init__(self, workdir: Path):
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "dockerd.log"

    def ensure(self) -> None:
        if ok("docker", "info", timeout=20):
            log("dockerd: already running (left running at the end)")
            return
        log("dockerd: none running; starting one")
        self.proc = subprocess.Popen(["dockerd"], stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while not ok("docker", "info", timeout=10):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SmokeFailure(f"dockerd did not start; {self.log_path}: {self.log_path.read_text()[-1500:]}")
            time.sleep(1)
        log(f"dockerd: started, pid {self.proc.pid}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)  # dockerd stops the containerd it started
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        log(f"dockerd: stopped (pid {self.proc.pid}, exit {self.proc.returncode})")


# ------------------------------------------------------------------ images


def image_exists(name: str) -> bool:
    return ok("docker", "image", "inspect", name)


def pullable(name: str) -> bool:
    log(f"trying docker pull {name}")
    return ok("docker", "pull", name, timeout=90)


def debian_mirror() -> str:
    """The Debian mirror apt uses here (deb822 .sources first, then one-line lists)."""
    candidates: list[tuple[str, str]] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, re.M))
            for uri in fields.get("URIs", "").split():
                candidates.extend((uri, s) for s in fields.get("Suites", "").split())
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
                if m:
                    candidates.append((m.group(1), m.group(2)))
    for uri, suite in candidates:
        if suite in ("bookworm", "trixie", "stable") and "security" not in uri:
            return uri
    return "http://deb.debian.org/debian"


def local_debian(suite: str, workdir: Path) -> str:
    name = LOCAL_DEBIAN.format(suite=suite)
    if image_exists(name):
        return name
    mirror = debian_mirror()
    rootfs = workdir / f"rootfs-{suite}"
    t0 = time.monotonic()
    sh("debootstrap", "--variant=minbase", suite, str(rootfs), mirror)
    # the mirror may be a dated snapshot whose Release files have expired
    (rootfs / "etc/apt/apt.conf.d/99reid-local").write_text('Acquire::Check-Valid-Until "false";\n')
    for leftover in [*(rootfs / "var/cache/apt/archives").glob("*.deb"), *(rootfs / "var/lib/apt/lists").glob("*_*")]:
        leftover.unlink()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    sh("docker", "import", "-", name, stdin=tar.stdout)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)
    log(f"base image {name}: debootstrap {suite} from {mirror} + docker import, {time.monotonic() - t0:.0f} s")
    return name


def docker_build(tag: str, dockerfile: str, context: Path, args: dict[str, str], no_cache: bool = False) -> float:
    cmd = ["docker", "build", "-q", "-f", dockerfile, "-t", tag]
    for key, value in args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    if no_cache:
        cmd.append("--no-cache")
    t0 = time.monotonic()
    sh(*cmd, str(context), timeout=3600, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    return time.monotonic() - t0


def base_images(mode: str, workdir: Path) -> tuple[str, str]:
    if mode == "official" or (mode == "auto" and all(image_exists(i) or pullable(i) for i in (OFFICIAL_PYTHON, OFFICIAL_POSTGRES))):
        log(f"base images: official ({OFFICIAL_PYTHON}, {OFFICIAL_POSTGRES})")
        return OFFICIAL_PYTHON, OFFICIAL_POSTGRES
    log("base images: no registry reachable (or --base local): building local ones")
    if not image_exists(LOCAL_PYTHON):
        seconds = docker_build(LOCAL_PYTHON, str(ROOT / "deploy/python-base.Dockerfile"), ROOT / "deploy",
                               {"DEBIAN_IMAGE": local_debian("bookworm", workdir)})
        log(f"base image {LOCAL_PYTHON}: {seconds:.0f} s")
    if not image_exists(LOCAL_POSTGRES):
        seconds = docker_build(LOCAL_POSTGRES, str(ROOT / "deploy/postgres.Dockerfile"), ROOT / "deploy",
                               {"DEBIAN_IMAGE": local_debian("trixie", workdir)})
        log(f"base image {LOCAL_POSTGRES}: {seconds:.0f} s")
    return LOCAL_PYTHON, LOCAL_POSTGRES


def image_size_mb(name: str) -> float:
    return int(sh("docker", "image", "inspect", "-f", "{{.Size}}", name).stdout) / 1e6


# ------------------------------------------------------------------ the compose stack


class Stack:
    def __init__(self, workdir: Path, python_image: str, postgres_image: str, port: int, profile: str = "shared"):
        self.port = port
        self.profile = profile
        self.base = f"http://127.0.0.1:{port}"
        self.env_file = workdir / "smoke.env"
        s3 = [
            f"REID_S3_IMAGE={S3_IMAGE}",
            f"REID_S3_BUCKETS={INBOX_BUCKET} {DATA_BUCKET}",
            f"REID_INBOX_BUCKET=s3://{INBOX_BUCKET}/{INBOX_PREFIX}",
            f"REID_DATA_ROOT=s3://{DATA_BUCKET}/{DATA_PREFIX}",
            "REID_S3_ENDPOINT_URL=http://s3:5000",
            "AWS_ACCESS_KEY_ID=smoke",
            f"AWS_SECRET_ACCESS_KEY={secrets.token_urlsafe(18)}",  # moto takes any; a real store checks them
        ] if profile == "s3" else []
        self.env_file.write_text("\n".join([
            "POSTGRES_USER=reid",
            f"POSTGRES_PASSWORD={secrets.token_urlsafe(18)}",
            "POSTGRES_DB=reid",
            f"REID_IMAGE={IMAGE}",
            f"REID_PYTHON_IMAGE={python_image}",
            f"REID_POSTGRES_IMAGE={postgres_image}",
            f"REID_UI_PORT={port}",
            "REID_FACE_BACKEND=dlib",
            "REID_SETTLE_SECONDS=2",
            "REID_SENSOR_INTERVAL=5",
            *s3,
        ]) + "\n")
        self.env_file.chmod(0o600)
        v1 = shutil.which("docker-compose")
        self.compose = ["docker-compose"] if v1 else ["docker", "compose"]
        self.compose += ["-p", PROJECT, "--env-file", str(self.env_file), "-f", str(ROOT / "docker-compose.yml")]
        if profile == "s3":
            self.compose += ["-f", str(ROOT / "docker-compose.s3.yml")]

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return sh(*self.compose, *args, cwd=ROOT, **kw)

    def container(self, service: str) -> str:
        return self.run("ps", "-q", service).stdout.strip()

    def up(self) -> float:
        for name in SHARED_VOLUMES:
            if ok("docker", "volume", "inspect", name):
                raise SmokeFailure(f"volume {name} exists already (another deployment?); the smoke run would delete it")
        t0 = time.monotonic()
        self.run("up", "-d", "--no-build", timeout=600)
        self.wait_healthy()
        return time.monotonic() - t0

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + 300
        while True:
            pg = sh("docker", "inspect", "-f", "{{.State.Health.Status}}", self.container("postgres"), check=False).stdout.strip()
            if self.profile == "s3":  # the S3 service (its buckets made) too
                s3 = sh("docker", "inspect", "-f", "{{.State.Health.Status}}", self.container("s3"), check=False).stdout.strip()
                pg = pg if s3 == "healthy" else f"{pg}, s3: {s3 or 'none'}"
            loaded = False
            if pg == "healthy":
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    entries = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
                    loaded = bool(entries) and all(
                        e["loadStatus"] == "LOADED" and e["locationOrLoadError"]["__typename"] == "RepositoryLocation" for e in entries
                    )
            if loaded:
                restarts = {svc: sh("docker", "inspect", "-f", "{{.RestartCount}}", self.container(svc)).stdout.strip()
                            for svc in ("user_code", "webserver", "daemon")}
                if any(n != "0" for n in restarts.values()):
                    log(f"restarts while starting: {restarts}")
                return
            if time.monotonic() > deadline:
                raise SmokeFailure(f"stack not healthy in 300 s (postgres: {pg}, code location loaded: {loaded})\n{self.logs()}")
            time.sleep(2)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.base}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        if body.get("errors"):
            raise ValueError(body["errors"])
        return body["data"]

    def logs(self, tail: int = 40) -> str:
        return self.run("logs", "--no-color", f"--tail={tail}", check=False).stdout

    def env(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.env_file.read_text().splitlines() if "=" in line)

    def ip(self, service: str) -> str:
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return sh("docker", "inspect", "-f", fmt, self.container(service)).stdout.strip()

    def db_url(self) -> str:
        return f"postgresql://reid:{self.env()['POSTGRES_PASSWORD']}@{self.ip('postgres')}:5432/reid"

    def s3_client(self):
        """A boto3 client for the S3 service, from this host (its address in the network)."""
        from reid_pipeline.storage import S3Options

        env = self.env()
        return S3Options(endpoint_url=f"http://{self.ip('s3')}:5000", region_name="us-east-1", use_ssl=False,
                         access_key_id=env["AWS_ACCESS_KEY_ID"], secret_access_key=env["AWS_SECRET_ACCESS_KEY"]).client()

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.db_url(), connect_timeout=10) as conn:
            return conn.execute(sql, params).fetchall()

    def drop(self, clips: list[Path]) -> float:
        """Put the clips in the inbox: copied into the inbox volume (through the user code
        container, which mounts it), or uploaded to the inbox bucket."""
        if self.profile == "s3":
            client = self.s3_client()
            t0 = time.time()
            for clip in clips:
                client.upload_file(str(clip), INBOX_BUCKET, f"{INBOX_PREFIX}/{clip.name}")
            return t0
        container = self.container("user_code")
        t0 = time.time()
        for clip in clips:
            sh("docker", "cp", str(clip), f"{container}:/inbox/{clip.name}")
        return t0

    def data_files(self) -> dict[str, int]:
        """Every file under the data root, relative to it, with its size: in the reid_data
        volume (through the user code container) or in the data-root bucket."""
        if self.profile == "s3":
            client, files = self.s3_client(), {}
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=DATA_BUCKET, Prefix=f"{DATA_PREFIX}/"):
                files.update({o["Key"][len(DATA_PREFIX) + 1:]: o["Size"] for o in page.get("Contents", [])})
            return files
        out = sh("docker", "exec", self.container("user_code"), "find", "/data", "-type", "f", "-printf", "%P\t%s\n").stdout
        return {path: int(size) for path, size in (line.split("\t") for line in out.splitlines())}

    def run_containers(self) -> list[dict]:
        ids = sh("docker", "ps", "-aq", "--filter", "label=dagster/run_id", "--filter", f"network={NETWORK}").stdout.split()
        if not ids:
            return []
        return json.loads(sh("docker", "inspect", *ids).stdout)

    def down(self) -> None:
        """Run containers first (Dagster's, not compose's: `down` does not know them; in the
        shared profile they hold the volumes)."""
        for c in self.run_containers():
            sh("docker", "rm", "-f", c["Id"], check=False)
        self.run("down", "-v", "--remove-orphans", check=False, timeout=300)


WORKSPACE_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


# ------------------------------------------------------------------ waiting and measuring


def runs(stack: Stack) -> list[dict]:
    rows = stack.query("SELECT run_id, pipeline_name, status, create_timestamp FROM runs ORDER BY create_timestamp")
    tags: dict[str, dict] = {}
    for run_id, key, value in stack.query("SELECT run_id, key, value FROM run_tags"):
        tags.setdefault(run_id, {})[key] = value
    return [{"run_id": run_id, "job": job, "status": status, "created": created, "tags": tags.get(run_id, {})}
            for run_id, job, status, created in rows]


def wait_until_done(stack: Stack, videos: int, t_drop: float, label: str) -> tuple[list[dict], float]:
    """Until every video is `ready`, no run is queued or in progress, and an identities run
    succeeded after the last video run ended. Returns the runs and the drop-to-identities time."""
    import psycopg

    deadline = time.monotonic() + WAIT_S
    last = ""
    while True:
        all_runs = runs(stack)
        try:
            ready = stack.query("SELECT count(*) FROM videos WHERE status = 'ready'")[0][0]
        except psycopg.errors.UndefinedTable:  # the first run applies sql/ (migrations)
            ready = 0
        busy = [r for r in all_runs if r["status"] in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")]
        video_ends = stack.query(
            "SELECT max(timestamp) FROM event_logs e JOIN runs r USING (run_id) WHERE r.pipeline_name = 'process_video'"
            " AND e.dagster_event_type IN ('PIPELINE_SUCCESS', 'PIPELINE_FAILURE')"
        )[0][0]
        identities_done = stack.query(
            "SELECT max(e.timestamp) FROM event_logs e WHERE e.dagster_event_type = 'ASSET_MATERIALIZATION'"
            " AND e.asset_key LIKE '%%identities%%'"
        )[0][0]
        state = f"{ready}/{videos} ready, {len(busy)} busy, runs: " + ", ".join(f"{r['job']}={r['status']}" for r in all_runs)
        if state != last:
            log(f"{label}: {state}")
            last = state
        if ready == videos and not busy and video_ends and identities_done and identities_done > video_ends:
            t_identities = identities_done.timestamp() if identities_done.tzinfo else _utc_epoch(identities_done)
            return all_runs, t_identities - t_drop
        if time.monotonic() > deadline:
            raise SmokeFailure(f"{label}: not done in {WAIT_S} s: {state}\n{stack.logs()}")
        time.sleep(2)


def _utc_epoch(naive) -> float:
    import datetime as dt

    return naive.replace(tzinfo=dt.UTC).timestamp()


def row_counts(stack: Stack) -> dict:
    counts = {t: stack.query(f"SELECT count(*) FROM {t}")[0][0] for t in ("videos", "faces", "sequences", "identities", "matches")}
    counts["faces_by_video"] = dict(stack.query("SELECT partition_key, count(*) FROM faces GROUP BY 1 ORDER BY 1"))
    counts["sequences_by_video"] = dict(stack.query("SELECT partition_key, count(*) FROM sequences GROUP BY 1 ORDER BY 1"))
    return counts


def run_timings(stack: Stack, run_id: str) -> dict:
    """Seconds from Dagster's event log: queued -> starting -> started (container start,
    imports, code load) -> steps -> end, and the steps' own time."""
    events = stack.query(
        "SELECT dagster_event_type, step_key, timestamp FROM event_logs WHERE run_id = %s AND dagster_event_type IS NOT NULL ORDER BY id",
        (run_id,),
    )
    first = {}
    for kind, step, ts in events:
        first.setdefault((kind, step), ts)
    t = {kind: ts for (kind, step), ts in first.items() if step is None}
    steps = 0.0
    for (kind, step), ts in first.items():
        if kind == "STEP_START":
            end = first.get(("STEP_SUCCESS", step)) or first.get(("STEP_FAILURE", step))
            if end:
                steps += (end - ts).total_seconds()
    end = t.get("PIPELINE_SUCCESS") or t.get("PIPELINE_FAILURE")
    out = {"events": len(events), "steps_s": round(steps, 2)}
    if t.get("PIPELINE_ENQUEUED") and t.get("PIPELINE_STARTING"):
        out["queued_s"] = round((t["PIPELINE_STARTING"] - t["PIPELINE_ENQUEUED"]).total_seconds(), 2)
    if t.get("PIPELINE_STARTING") and t.get("PIPELINE_START"):
        out["container_start_s"] = round((t["PIPELINE_START"] - t["PIPELINE_STARTING"]).total_seconds(), 2)
    if t.get("PIPELINE_START") and end:
        out["run_wall_s"] = round((end - t["PIPELINE_START"]).total_seconds(), 2)
        out["in_run_overhead_s"] = round(out["run_wall_s"] - steps, 2)
    if t.get("PIPELINE_ENQUEUED") and end:
        out["total_s"] = round((end - t["PIPELINE_ENQUEUED"]).total_seconds(), 2)
        out["overhead_s"] = round(out["total_s"] - steps, 2)
    return out


def engine_messages(stack: Stack, run_id: str) -> list[str]:
    rows = stack.query(
        "SELECT dagster_event_type, event FROM event_logs WHERE run_id = %s"
        " AND dagster_event_type IN ('ENGINE_EVENT', 'PIPELINE_FAILURE') ORDER BY id", (run_id,),
    )
    out = []
    for kind, body in rows:
        entry = json.loads(body)
        message = entry.get("user_message") or (entry.get("dagster_event") or {}).get("message") or ""
        out.append(f"{kind}: {' '.join(message.split())[:240]}")
    return out


def check_mounts(stack: Stack, containers: list[dict]) -> dict:
    """What the run containers and the services mount. `shared`: every run container mounts
    reid_data and reid_inbox. `s3`: no run container mounts anything, and no service mounts
    reid_data or reid_inbox (only Postgres keeps a volume, its own)."""
    def mounts(c: dict) -> list[str]:
        return sorted(f"{m['Type']}:{m.get('Name') or m.get('Source') or ''}:{m['Destination']}" for m in c["Mounts"])

    runs_ = {c["Config"]["Labels"]["dagster/run_id"]: mounts(c) for c in containers}
    services = {svc: mounts(json.loads(sh("docker", "inspect", stack.container(svc)).stdout)[0])
                for svc in ("postgres", "user_code", "webserver", "daemon", *(("s3",) if stack.profile == "s3" else ()))}
    if stack.profile == "s3":
        if any(runs_.values()):
            raise SmokeFailure(f"s3 profile: run containers mount something: {runs_}")
        sharing = {svc: m for svc, m in services.items() if any(f"volume:{v}:" in x for v in SHARED_VOLUMES for x in m)}
        if sharing:
            raise SmokeFailure(f"s3 profile: services mount the shared volumes: {sharing}")
    else:
        lacking = {r: m for r, m in runs_.items() if not all(any(f"volume:{v}:" in x for x in m) for v in SHARED_VOLUMES)}
        if lacking:
            raise SmokeFailure(f"shared profile: run containers without the data and inbox volumes: {lacking}")
    return {"run_containers": runs_, "services": services}


def check_data_root(stack: Stack, label: str) -> dict:
    """A parquet file per per-video asset per video under the data root (the volume or the
    bucket); the number of files and bytes per top folder."""
    keys = [k for (k,) in stack.query("SELECT partition_key FROM videos ORDER BY 1")]
    files = stack.data_files()
    missing = [f"{a}/{k}.parquet" for a in PARQUET_ASSETS for k in keys if f"{a}/{k}.parquet" not in files]
    if missing:
        raise SmokeFailure(f"{label}: missing under the data root: {missing}; there: {sorted(files)}")
    folders: dict[str, list[int]] = {}
    for path, size in files.items():
        if "/" in path:
            entry = folders.setdefault(path.split("/", 1)[0], [0, 0])
            entry[0] += 1
            entry[1] += size
    where = f"s3://{DATA_BUCKET}/{DATA_PREFIX}/" if stack.profile == "s3" else "the reid_data volume"
    log(f"{label}: data root ({where}): {len(files)} files, {sum(p.endswith('.parquet') for p in files)} parquet; "
        f"a parquet file for each of {', '.join(PARQUET_ASSETS)} x {len(keys)} videos; "
        + ", ".join(f"{f}/ {n} files {b // 1000} kB" for f, (n, b) in sorted(folders.items())))
    return {"files": len(files), "parquet": sum(p.endswith(".parquet") for p in files), "folders": folders}


def run_container_caches(containers: list[dict]) -> dict:
    """s3 profile: the files each process_video run container downloaded into its own
    $REID_HOME/cache/s3 (its writable layer: `docker diff` of the stopped container)."""
    out = {}
    for c in containers:
        if c["Config"]["Labels"].get("dagster/job_name", "process_video") != "process_video":
            continue
        changed = sh("docker", "diff", c["Id"]).stdout.split("\n")
        out[c["Config"]["Labels"]["dagster/run_id"]] = [line[2:] for line in changed
                                                        if line.startswith("A /data/cache/s3/") and line.endswith(".avi")]
    return out


def screenshot(stack: Stack, path: Path) -> int:
    with contextlib.suppress(OSError, ValueError):
        stack.graphql("mutation { setNuxSeen }")  # the one-time "join the community" dialog, as "Skip" does
    sh("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,900",
       "--virtual-time-budget=20000", f"--screenshot={path}", f"{stack.base}/runs", timeout=120)
    if not path.exists() or path.stat().st_size < 10_000:
        raise SmokeFailure(f"no screenshot of the UI at {path}")
    return path.stat().st_size


def make_clips(folder: Path) -> list[Path]:
    """Two clips of real people (package photos): one person is in both."""
    from tests import synthetic

    folder.mkdir(parents=True, exist_ok=True)
    walk, back = folder / CLIPS[0], folder / CLIPS[1]
    synthetic.write_video(synthetic.two_people_walking(seconds=8.0), walk)
    synthetic.write_video(synthetic.cut_and_return(seconds_per_shot=3.0), back)
    return [walk, back]


# ------------------------------------------------------------------ the two runs


def clean_run(stack: Stack, clips: list[Path], workdir: Path, report: dict) -> None:
    report["clean_up_s"] = round(stack.up(), 1)
    published = sh("docker", "port", stack.container("webserver"), "3000").stdout.split()
    if not published or any(not p.startswith("127.0.0.1:") for p in published):
        raise SmokeFailure(f"the UI is published beyond localhost: {published}")
    log(f"clean run: stack up and healthy in {report['clean_up_s']} s; UI published on {published}")
    t_drop = stack.drop(clips)
    all_runs, drop_to_identities = wait_until_done(stack, len(clips), t_drop, "clean run")
    counts = row_counts(stack)
    containers = stack.run_containers()
    video_runs = [r for r in all_runs if r["job"] == "process_video"]
    by_run = {c["Config"]["Labels"]["dagster/run_id"]: c for c in containers}
    if len(video_runs) != len(clips) or any(r["run_id"] not in by_run for r in video_runs):
        raise SmokeFailure(f"expected one run container per video: runs {video_runs}, containers {list(by_run)}")
    if any(r["status"] != "SUCCESS" for r in all_runs):
        raise SmokeFailure(f"a run did not succeed: {[(r['run_id'], r['status']) for r in all_runs]}")
    timings = {r["run_id"]: {"job": r["job"], "partition": r["tags"].get("dagster/partition"), **run_timings(stack, r["run_id"])}
               for r in all_runs}
    report["mounts"] = check_mounts(stack, containers)
    for run_id, mounts in report["mounts"]["run_containers"].items():
        log(f"clean run: run container of {run_id} mounts {mounts or 'nothing'}")
    if stack.profile == "s3":
        caches = run_container_caches([by_run[r["run_id"]] for r in video_runs])
        if any(not files for files in caches.values()):
            raise SmokeFailure(f"a process_video run container did not download its video into its own cache: {caches}")
        for run_id, files in caches.items():
            log(f"clean run: run container of {run_id} downloaded {files} (its own layer)")
        report["run_container_caches"] = caches
    report["clean_data_root"] = check_data_root(stack, "clean run")
    events = stack.query("SELECT count(*) FROM event_logs")[0][0]
    enqueued = stack.query("SELECT min(timestamp) FROM event_logs WHERE dagster_event_type = 'PIPELINE_ENQUEUED'")[0][0]
    report.update(clean_counts=counts, clean_runs=timings, clean_events=events,
                  drop_to_identities_s=round(drop_to_identities, 1),
                  drop_to_first_run_s=round(_utc_epoch(enqueued) - t_drop, 1))  # the inbox sensor's settle + ticks
    log(f"clean run: rows videos={counts['videos']} faces={counts['faces']} sequences={counts['sequences']} "
        f"identities={counts['identities']} matches={counts['matches']}; faces by video {counts['faces_by_video']}")
    log(f"clean run: {len(all_runs)} runs, {events} events in Dagster's Postgres storage; "
        f"{len(containers)} run containers ({len(video_runs)} process_video); drop -> first run queued "
        f"{report['drop_to_first_run_s']} s, -> identities {drop_to_identities:.1f} s")
    for run_id, t in timings.items():
        log(f"  run {run_id} {t['job']} {t['partition'] or ''}: {t}")
    shot = workdir / "ui_runs.png"
    log(f"clean run: UI screenshot {shot} ({screenshot(stack, shot)} bytes)")
    report["screenshot"] = str(shot)


def fault_run(stack: Stack, clips: list[Path], report: dict) -> None:
    report["fault_up_s"] = round(stack.up(), 1)
    log(f"fault run: fresh stack up in {report['fault_up_s']} s")
    t_drop = stack.drop(clips)
    deadline = time.monotonic() + WAIT_S
    victim = None
    while victim is None:  # the first process_video run container inside a model step
        for r in runs(stack):
            if r["job"] != "process_video" or r["status"] != "STARTED":
                continue
            steps = stack.query(
                "SELECT step_key FROM event_logs WHERE run_id = %s AND dagster_event_type = 'STEP_START'"
                " AND step_key IN ('frame_detections', 'face_embeddings')", (r["run_id"],))
            if steps:
                victim = (r, steps[-1][0])
                break
        if time.monotonic() > deadline:
            raise SmokeFailure(f"no run reached a model step in {WAIT_S} s\n{stack.logs()}")
        time.sleep(0.3)
    run, step = victim
    container = run["tags"].get("docker/container_id") or next(
        c["Id"] for c in stack.run_containers() if c["Config"]["Labels"]["dagster/run_id"] == run["run_id"])
    t_kill = time.time()
    sh("docker", "kill", container)
    log(f"fault run: killed run container {container[:12]} of run {run['run_id']} "
        f"({run['tags'].get('dagster/partition')}) during step {step}")
    all_runs, drop_to_identities = wait_until_done(stack, len(clips), t_drop, "fault run")
    killed = next(r for r in all_runs if r["run_id"] == run["run_id"])
    retries = [r for r in all_runs if r["tags"].get("dagster/parent_run_id") == run["run_id"]]
    failure_at = stack.query(
        "SELECT max(timestamp) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'PIPELINE_FAILURE'", (run["run_id"],))[0][0]
    messages = engine_messages(stack, run["run_id"])
    log(f"fault run: killed run is {killed['status']}; marked failed {_utc_epoch(failure_at) - t_kill:.0f} s after the kill"
        if failure_at else f"fault run: killed run is {killed['status']}")
    for m in messages[-4:]:
        log(f"  {m}")
    for r in retries:
        log(f"fault run: retry {r['run_id']} (retry number {r['tags'].get('dagster/retry_number')}): {r['status']}")
    counts = row_counts(stack)
    report["fault_data_root"] = check_data_root(stack, "fault run")
    report.update(fault_counts=counts, fault_killed_run=run["run_id"], fault_killed_step=step, fault_killed_status=killed["status"],
                  fault_retries=[(r["run_id"], r["status"]) for r in retries], fault_messages=messages,
                  fault_detect_s=round(_utc_epoch(failure_at) - t_kill, 1) if failure_at else None,
                  fault_drop_to_identities_s=round(drop_to_identities, 1),
                  fault_run_containers=len(stack.run_containers()))
    log(f"fault run: rows videos={counts['videos']} faces={counts['faces']} sequences={counts['sequences']} "
        f"identities={counts['identities']} matches={counts['matches']}; drop -> identities {drop_to_identities:.1f} s; "
        f"{report['fault_run_containers']} run containers")
    if killed["status"] != "FAILURE" or not retries or not any(s == "SUCCESS" for _, s in report["fault_retries"]):
        raise SmokeFailure(f"the killed run was not failed and retried: {killed['status']}, retries {retries}")
    clean = report["clean_counts"]
    same = {k: (clean[k], counts[k]) for k in ("videos", "faces", "sequences", "identities", "faces_by_video", "sequences_by_video")}
    if any(a != b for a, b in same.values()):
        raise SmokeFailure(f"rows after the fault differ from the clean run: {same}")
    log("fault run: rows equal the clean run's (videos, faces, sequences, identities, per video)")


def engine_objects() -> dict[str, set[str]]:
    return {
        "containers": set(sh("docker", "ps", "-aq", "--no-trunc").stdout.split()),
        "volumes": set(sh("docker", "volume", "ls", "-q").stdout.split()),
        "networks": set(sh("docker", "network", "ls", "--format", "{{.Name}}").stdout.split()),
    }


def leftovers(before: dict[str, set[str]]) -> dict:
    """What the smoke run left: its own (by project, image and name), and anything else the
    engine did not hold before it started."""
    now = engine_objects()
    own = {
        "containers": set(sh("docker", "ps", "-aq", "--no-trunc", "--filter", f"label=com.docker.compose.project={PROJECT}").stdout.split()
                          + sh("docker", "ps", "-aq", "--no-trunc", "--filter", f"ancestor={IMAGE}").stdout.split()
                          + sh("docker", "ps", "-aq", "--no-trunc", "--filter", f"ancestor={S3_IMAGE}").stdout.split()),
        "volumes": {v for v in now["volumes"] if v in SHARED_VOLUMES or v.startswith(PROJECT)},
        "networks": {n for n in now["networks"] if n == NETWORK or n.startswith(PROJECT)},
    }
    return {kind: sorted(own[kind] | (now[kind] - before[kind])) for kind in now}


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="shared",
                        help="shared: inbox and data root in volumes every run container mounts (docker-compose.yml); "
                             "s3: both in buckets of an S3 service, run containers mount nothing (+ docker-compose.s3.yml)")
    parser.add_argument("--base", choices=("auto", "official", "local"), default="auto",
                        help="base images: official when present or pullable (auto), or always local")
    parser.add_argument("--cold", action="store_true", help="also time a project image build without the layer cache")
    parser.add_argument("--skip-fault", action="store_true", help="only the clean run")
    parser.add_argument("--remove-images", action="store_true", help="remove the images it built at the end")
    parser.add_argument("--port", type=int, default=3300, help="UI port on 127.0.0.1")
    parser.add_argument("--workdir", help="where clips, logs and the screenshot go (default: a new folder under /tmp)")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("smoke: run as root (it installs packages and starts dockerd)", file=sys.stderr)
        return 2

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="reid-smoke-", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict = {"date": time.strftime("%Y-%m-%d"), "profile": args.profile, "workdir": str(workdir)}
    t_all = time.monotonic()
    ensure_tools(need_debootstrap=args.base != "official")
    dockerd = Dockerd(workdir)
    stack = None
    rc = 1
    try:
        dockerd.ensure()
        before = engine_objects()
        log(f"profile {args.profile}; the engine holds {', '.join(f'{len(v)} {k}' for k, v in before.items())} before the run")
        python_image, postgres_image = base_images(args.base, workdir)
        report.update(python_image=python_image, postgres_image=postgres_image)

        t0 = time.monotonic()
        sh(str(ROOT / "deploy/wheelhouse.sh"), timeout=3600)
        report["wheelhouse_s"] = round(time.monotonic() - t0, 1)
        wheels = list((ROOT / "deploy/wheelhouse").glob("*.whl"))
        log(f"wheelhouse: {len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 1e6:.0f} MB, {report['wheelhouse_s']} s")
        build_args = {"PYTHON_IMAGE": python_image}
        if args.cold:
            report["build_cold_s"] = round(docker_build(IMAGE, str(ROOT / "Dockerfile"), ROOT, build_args, no_cache=True), 1)
            log(f"project image, cold (no layer cache): {report['build_cold_s']} s")
        report["build_s"] = round(docker_build(IMAGE, str(ROOT / "Dockerfile"), ROOT, build_args), 1)
        report["image_mb"] = round(image_size_mb(IMAGE))
        log(f"project image {IMAGE}: {report['image_mb']} MB, build {report['build_s']} s (with the layer cache)")
        if args.profile == "s3":
            report["s3_build_s"] = round(docker_build(S3_IMAGE, str(ROOT / "deploy/s3.Dockerfile"), ROOT, build_args), 1)
            report["s3_image_mb"] = round(image_size_mb(S3_IMAGE))
            log(f"S3 service image {S3_IMAGE} (moto server): {report['s3_image_mb']} MB, build {report['s3_build_s']} s")

        clips = make_clips(workdir / "clips")
        log(f"clips: {', '.join(f'{c.name} ({c.stat().st_size // 1000} kB)' for c in clips)} in {clips[0].parent}")
        stack = Stack(workdir, python_image, postgres_image, args.port, args.profile)
        clean_run(stack, clips, workdir, report)
        stack.down()
        if not args.skip_fault:
            fault_run(stack, clips, report)
        rc = 0
    except SmokeFailure as e:
        log(f"FAILED: {e}")
    except Exception:  # anything unexpected still tears the stack down
        log(f"FAILED: {traceback.format_exc()}")
    finally:
        if stack is not None:
            stack.down()
            left = leftovers(before)
            report["leftovers"] = left
            if any(left.values()):
                log(f"FAILED: left behind after down -v: {left}")
                rc = 1
            else:
                log("down -v: no container, volume or network of the smoke run left")
        if args.remove_images:
            for name in (IMAGE, S3_IMAGE, LOCAL_PYTHON, LOCAL_POSTGRES, *(LOCAL_DEBIAN.format(suite=s) for s in ("bookworm", "trixie"))):
                sh("docker", "rmi", name, check=False)
        dockerd.stop()
        report["total_s"] = round(time.monotonic() - t_all, 1)
        report["ok"] = rc == 0
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        log(f"{'PASSED' if rc == 0 else 'FAILED'} in {report['total_s']:.0f} s; numbers: {args.json or '(--json to keep them)'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
