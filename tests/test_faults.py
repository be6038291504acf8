"""Fault injection on the running stack (`reid up`, as a user starts it): a run worker, `reid
up` itself and the embedded Postgres are SIGKILLed in the middle of a video's run; each
time the video must end `ready` without a command by hand, and no pool slot may stay held
by a dead run. Marked `e2e` like tests/test_e2e.py, whose helpers they use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from reid_pipeline.config import PROJECT_ROOT
from reid_pipeline.ingest.arrivals import partition_key_for
from tests.test_e2e import (
    PYTHON,
    _free_port,
    _make_root,
    _reid_env,
    _run_workers,
    _start_up,
    _stop_postgres,
    _stop_stack,
    _tail,
    _wait_until_answering,
    _with_env,
)

pytestmark = pytest.mark.e2e

READY_TIMEOUT_S = 300



def _drop_video(root: Path, inbox: Path, seconds: float = 8.0, name: str = "clip.avi") -> str:
    """A synthetic clip copied into the inbox; returns its partition key."""
    from tests import synthetic

    source = root / "src" / name
    if not source.exists():
        synthetic.write_video(synthetic.two_people_walking(seconds=seconds), source)
    shutil.copyfile(source, inbox / name)
    return partition_key_for(str((inbox / name).resolve()))


def _wait_for_worker(home: Path, monkeypatch, env: dict, key: str) -> list[int]:
    """Once the video's run is STARTED and in `frame_detections`: its worker processes."""
    import dagster as dg

    deadline = time.monotonic() + 180
    with _instance(monkeypatch, env) as instance:
        while True:
            assert time.monotonic() < deadline, f"no run of {key} got to frame_detections"
            started = [r for r in _runs_of(instance, key) if r.status == dg.DagsterRunStatus.STARTED]
            if started and any(e.step_key == "frame_detections" for e in instance.all_logs(
                    started[0].run_id, of_type=dg.DagsterEventType.STEP_START)):
                break
            time.sleep(0.3)
    workers = _run_workers(home)
    assert workers, "no run worker process found"
    time.sleep(1)  # inside detection, before it can finish
    return workers


def _video(home: Path, key: str) -> tuple[str, int] | None:
    import psycopg

    from reid_pipeline.database import embedded_running

    if not embedded_running(home / "pgdata"):
        return None
    try:
        with psycopg.connect(f"host={home / 'pgdata'} dbname=postgres user=postgres", connect_timeout=5) as conn:
            return conn.execute(
                "SELECT v.status, (SELECT count(*) FROM faces f WHERE f.partition_key = v.partition_key)"
                " FROM videos v WHERE partition_key = %s", (key,)).fetchone()
    except psycopg.Error:
        return None


def _wait_ready(home: Path, key: str, log: Path) -> int:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        row = _video(home, key)
        if row and row[0] == "ready":
            assert row[1] > 0, row
            _assert_rows_of_a_clean_run(home, key)
            return row[1]
        assert not row or row[0] not in ("duplicate", "partial"), row
        assert time.monotonic() < deadline, f"video {key} not ready: {row}\n{_tail(log)}"
        time.sleep(2)


def _assert_rows_of_a_clean_run(home: Path, key: str) -> None:
    """What a retried run leaves is what one clean run leaves: one row per face of the video's
    files, one per sequence; nothing of the dead attempt (scored pairs are unique in the schema)."""
    import polars as pl
    import psycopg

    data = home.parent / "data"  # REID_DATA_ROOT of `_reid_env`
    faces = pl.read_parquet(data / "face_embeddings" / f"{key}.parquet").height
    sequences = pl.read_parquet(data / "face_sequences" / f"{key}.parquet").height
    with psycopg.connect(f"host={home / 'pgdata'} dbname=postgres user=postgres", connect_timeout=5) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM faces WHERE partition_key = %(k)s),"
            " (SELECT count(DISTINCT detection_id) FROM faces WHERE partition_key = %(k)s),"
            " (SELECT count(*) FROM sequences WHERE partition_key = %(k)s),"
            " (SELECT count(DISTINCT sequence_number) FROM sequences WHERE partition_key = %(k)s)",
            {"k": key}).fetchone()
    assert counts == (faces, faces, sequences, sequences), (key, counts, faces, sequences)


def _instance(monkeypatch, env: dict):
    import dagster as dg

    from reid_pipeline.cli.instance import URL_VARIABLE, storage_url
    from reid_pipeline.database import embedded_url

    monkeypatch.setenv(URL_VARIABLE, storage_url(embedded_url(Path(env["REID_HOME"]) / "pgdata")))
    return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def _slots_of_finished_runs(instance) -> list:
    held = []
    for slot in instance.event_log_storage.get_concurrency_info("face_model").claimed_slots:
        run = instance.get_run_by_id(slot.run_id)
        if run is None or run.is_finished:
            held.append((slot.run_id, slot.step_key, run.status.value if run else "deleted"))
    return held


def _runs_of(instance, key: str) -> list:
    import dagster as dg

    return instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": key}))


@contextlib.contextmanager
def _stack_home():
    """A fresh root with the user's environment pointed into it, and `start(log_name)`,
    which starts `reid up` there and waits until its UI answers (returns the process, its
    port and its log); whatever was started is stopped and the root removed at the end."""
    root = _make_root()
    env = {**_reid_env(root), "REID_SAMPLE_FPS": "6"}
    home, started = Path(env["REID_HOME"]), []

    def start(log_name: str = "up.log"):
        port, log = _free_port(), root / log_name
        proc = _start_up(env, port, log)
        started.append(proc)
        _wait_until_answering(proc, f"http://127.0.0.1:{port}", log)
        return proc, port, log

    try:
        yield root, env, start
    finally:
        for proc in started:
            _stop_stack(proc, home)
        _stop_postgres(home)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.timeout(900)
def test_a_killed_run_worker_gives_back_its_slot_and_is_retried(monkeypatch):
    with _stack_home() as (root, env, start):
        home, inbox = Path(env["REID_HOME"]), Path(env["REID_INBOX"])
        _, _, log = start()
        # twice in a row, each dead run's slot checked given back (the default pool limit is
        # 2: two dead runs holding their slots wedged the pipeline), then a new video still
        # goes through
        for i in range(2):
            key = _drop_video(root, inbox, seconds=8.0 - i / 2, name=f"clip{i}.avi")  # not duplicates of each other
            for pid in _wait_for_worker(home, monkeypatch, env, key):
                os.kill(pid, signal.SIGKILL)
            _wait_ready(home, key, log)
            with _instance(monkeypatch, env) as instance:
                runs = _runs_of(instance, key)
                assert [r.status.value for r in runs if r.is_finished].count("FAILURE") >= 1, runs
                # the dead run's `face_model` slot is given back (the daemon, a few seconds after it ended)
                deadline = time.monotonic() + 30
                while held := _slots_of_finished_runs(instance):
                    assert time.monotonic() < deadline, f"pool face_model still held by finished runs: {held}"
                    time.sleep(1)
        _wait_ready(home, _drop_video(root, inbox, seconds=3.0, name="fresh.avi"), log)


@pytest.mark.timeout(720)
def test_a_killed_reid_up_leaves_a_run_that_the_next_one_finishes(monkeypatch):
    from reid_pipeline.database import embedded_running

    with _stack_home() as (root, env, start):
        home, inbox = Path(env["REID_HOME"]), Path(env["REID_INBOX"])
        first, port, _ = start("first.log")
        # a second `reid up` on the same home says who runs and leaves
        again = subprocess.run([PYTHON, "-m", "reid_pipeline.cli", "up", "--port", str(_free_port())], cwd=PROJECT_ROOT,
                               env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        assert again.returncode == 1, again.stdout + again.stderr
        assert f"already running for {home} (pid {first.pid}, UI at http://127.0.0.1:{port})" in again.stderr
        key = _drop_video(root, inbox)
        _wait_for_worker(home, monkeypatch, env, key)
        os.kill(first.pid, signal.SIGKILL)  # no chance to clean up: its reaper ends the rest
        first.wait(timeout=10)
        deadline = time.monotonic() + 60
        while _with_env("REID_HOME", str(home)) or embedded_running(home / "pgdata"):
            assert time.monotonic() < deadline, "the killed reid up left processes behind"
            time.sleep(0.5)

        _, _, log = start("second.log")
        _wait_ready(home, key, log)
        said = log.read_text(errors="replace")
        assert "was left running but process" in said and "marked failed" in said, said
        with _instance(monkeypatch, env) as instance:
            assert not _slots_of_finished_runs(instance)


@pytest.mark.timeout(720)
def test_a_killed_embedded_postgres_is_started_again_and_the_video_ends_ready(monkeypatch):
    from reid_pipeline.database import embedded_running

    with _stack_home() as (root, env, start):
        home, inbox = Path(env["REID_HOME"]), Path(env["REID_INBOX"])
        proc, _, log = start()
        key = _drop_video(root, inbox)
        _wait_for_worker(home, monkeypatch, env, key)
        postmaster = int((home / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
        os.kill(postmaster, signal.SIGKILL)
        killed = time.monotonic()
        while not embedded_running(home / "pgdata") or "embedded Postgres is back" not in log.read_text(errors="replace"):
            assert time.monotonic() - killed < 30, f"Postgres not back within 30 s:\n{_tail(log)}"
            time.sleep(0.5)
        assert proc.poll() is None, _tail(log)
        _wait_ready(home, key, log)
        assert proc.poll() is None, _tail(log)


@pytest.mark.timeout(300)
def test_a_command_waiting_on_the_pool_says_who_holds_it_and_stops_on_sigterm(monkeypatch):
    """`reid process` whose step waits for a `face_model` slot held by a live run says which
    run holds it and how to free it, and SIGTERM stops it (the run marked canceled)."""
    import dagster as dg
    from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
    from dagster._core.events.log import EventLogEntry

    from reid_pipeline.cli.environment import prepare
    from reid_pipeline.config import Settings

    root = _make_root()
    env = _reid_env(root)
    home = Path(env["REID_HOME"])
    try:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        prepare(Settings())
        holder = "deadbeef-0000-4000-8000-000000000001"
        with dg.DagsterInstance.get() as instance:
            instance.add_run(dg.DagsterRun(job_name="process_video", run_id=holder, status=dg.DagsterRunStatus.STARTED,
                                           tags={"dagster/partition": "other-video"}))
            event = DagsterEvent(DagsterEventType.ENGINE_EVENT.value, "process_video",
                                 message=f"Started process for run (pid: {os.getpid()}).",
                                 event_specific_data=EngineEventData.in_process(os.getpid()))
            instance.store_event(EventLogEntry(error_info=None, level="INFO", user_message=event.message or "",
                                               run_id=holder, timestamp=time.time(), dagster_event=event,
                                               job_name="process_video"))
            instance.event_log_storage.initialize_concurrency_limit_to_default("face_model")
            for step in ("frame_detections", "face_embeddings"):
                assert instance.event_log_storage.claim_concurrency_slot("face_model", holder, step).is_claimed
        clip = root / "src" / "clip.avi"
        from tests import synthetic

        synthetic.write_video(synthetic.two_people_walking(seconds=2.0), clip)
        err = root / "stderr.txt"
        with open(err, "wb") as sink:
            proc = subprocess.Popen([PYTHON, "-m", "reid_pipeline.cli", "process", str(clip)], cwd=PROJECT_ROOT,
                                    env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink)
        said, deadline = "", time.monotonic() + 120
        while "held by: run deadbeef" not in said:
            assert proc.poll() is None, f"reid process ended {proc.returncode}: {said}"
            assert time.monotonic() < deadline, f"nothing said about the pool in 120 s: {said}"
            time.sleep(0.5)
            said = err.read_text(errors="replace")
        assert "video other-video" in said and "frees when those runs end" in said, said
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"reid process ignored SIGTERM: {said}")
        said = err.read_text(errors="replace")
        assert proc.returncode == 130, (proc.returncode, said)
        assert "marked canceled" in said, said
    finally:
        _stop_postgres(home)
        shutil.rmtree(root, ignore_errors=True)
