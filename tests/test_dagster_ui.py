"""The Dagster UI as a user reads it, in a real headless browser against the real webserver:
a partition whose video failed shows why (the partition view and the run), and the
`archive_status` asset shows what `reid status` prints (a row per video with its key, status
and reason; files not taken). The failure is made in-process first; screenshots go to the
test's tmp dir (printed)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import dagster as dg
import pytest

from reid_pipeline.cli import prepare
from reid_pipeline.config import PROJECT_ROOT, Settings
from reid_pipeline.inbox import partition_key_for
from reid_pipeline.sources import uri_for
from tests.conftest import build_defs
from tests.helpers import failure_message

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run"]
REASON = "broken.mp4: not a video container"

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (./reid test installs it where it can)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answering(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def failed_archive(reid_env, store, tmp_path):
    """A Dagster home with one video that failed on its input, one that is fine, a file the
    inbox did not take, and the archive's status observed (as the daemon's sensor tick would)."""
    prepare(Settings())  # the Dagster home with the repo's dagster.yaml, its storage URL exported
    defs = build_defs()
    bad = tmp_path / "videos" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_text("a text file under a video name")
    key = partition_key_for(str(bad))
    with dg.DagsterInstance.get() as instance:
        store.register_video(key, uri_for(bad))
        instance.add_dynamic_partitions("videos", [key])
        result = defs.resolve_job_def("process_video").execute_in_process(partition_key=key, instance=instance,
                                                                          raise_on_error=False)
        assert not result.success and REASON in failure_message(result)
        store.record_skipped([(str(reid_env / "inbox" / "notes.txt"), "not a video file (suffix '.txt')")])
        with dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs) as context:
            for event in defs.resolve_sensor_def("archive_status_sensor")(context).asset_events:
                instance.report_runless_asset_event(event)
    return key, result.run_id


@pytest.fixture
def webserver(failed_archive, tmp_path):
    """`dagster-webserver` on the checkout's workspace, this test's environment and instance."""
    port = _free_port()
    log = tmp_path / "webserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port),
                                 "-w", str(PROJECT_ROOT / "workspace.yaml")], cwd=os.environ["DAGSTER_HOME"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _answering(f"{base}/server_info"):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"webserver not answering:\n{log.read_text()}"
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _open(page, url: str) -> None:
    """Go to `url`; skip Dagster's one-time community sign-up dialog if it comes up."""
    page.goto(url)
    page.wait_for_load_state("networkidle")
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()


def test_a_failed_partition_and_the_archive_status_in_the_dagster_ui(failed_archive, webserver, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    key, run_id = failed_archive
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        # the partition view of the failed video: failed, by which run; its events say why
        _open(page, f"{webserver}/assets/raw_video?view=partitions&partition={key}")
        expect(page.get_by_text(f"Run {run_id[:8]} failed")).to_be_visible(timeout=60_000)
        page.screenshot(path=shots / "1-failed-partition.png")

        # the asset's events (of that partition): the failure with its reason and run
        _open(page, f"{webserver}/assets/raw_video?view=events&partition={key}")
        expect(page.get_by_text(REASON).first).to_be_visible(timeout=30_000)
        page.screenshot(path=shots / "2-partition-events.png")

        # the run list (where the README sends people for backfills: Runs > Backfills), then the run:
        # the step's failure, in the user's words
        _open(page, f"{webserver}/runs")
        expect(page.get_by_text(run_id[:8]).first).to_be_visible(timeout=30_000)
        expect(page.get_by_role("tab", name="Backfills").or_(page.get_by_role("link", name="Backfills")).first).to_be_visible()
        page.screenshot(path=shots / "3-runs.png")
        _open(page, f"{webserver}/runs/{run_id}")
        expect(page.get_by_text(REASON).first).to_be_visible(timeout=30_000)
        page.screenshot(path=shots / "4-run.png")

        # reid status in the UI: the archive_status asset's latest observation
        page.set_viewport_size({"width": 1400, "height": 1500})  # the whole metadata table in one picture
        _open(page, f"{webserver}/assets/archive_status")
        expect(page.get_by_text(f"{key} (broken.mp4, failed): raw_video: {REASON}")).to_be_visible(timeout=30_000)
        page.screenshot(path=shots / "5-archive-status.png")
        text = page.inner_text("body")
        assert REASON in text and "notes.txt" in text and "1 video: 1 failed" in text
        browser.close()
    print(f"screenshots: {shots}")
