"""The Dagster UI as a user reads it, against the real webserver: in a headless browser, a
partition whose video failed shows why (the partition view and the run), and the
`archive_status` asset shows what `reid status` prints (a row per video with its key, status
and reason; files not taken); through its GraphQL (what the UI's pages query), the Checks tab
of `silhouette_report` and the Launchpad's config of `register_archive`. The runs are made
in-process first; screenshots go to the test's tmp dir (printed)."""

import json
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
from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.ingest.sources import uri_for
from tests.conftest import build_defs
from tests.helpers import failure_message, readme_run_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run"]
REASON = "broken.mp4: not a video container"

pytestmark = pytest.mark.e2e


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
def failed_archive(reid_env, store, tmp_path, two_people_video):
    """A Dagster home with a video processed to `ready`, then one that failed on its input
    (the latest run), a file the inbox did not take, and the archive's status observed (as
    the daemon's sensor tick would). Returns the failed video's key and run, and the ready
    video's key and run."""
    prepare(Settings())  # the Dagster home with the repo's dagster.yaml, its storage URL exported
    defs = build_defs()
    bad = tmp_path / "videos" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_text("a text file under a video name")
    key = partition_key_for(str(bad))
    good = partition_key_for(str(two_people_video[0]))
    with dg.DagsterInstance.get() as instance:
        store.register_video(good, uri_for(two_people_video[0]))
        instance.add_dynamic_partitions("videos", [good])
        ready = defs.resolve_job_def("process_video").execute_in_process(
            partition_key=good, instance=instance, raise_on_error=False,
            run_config={"ops": {"frame_detections": {"config": {"sample_fps": 2}}}})
        assert ready.success, failure_message(ready)
        store.register_video(key, uri_for(bad))
        instance.add_dynamic_partitions("videos", [key])
        result = defs.resolve_job_def("process_video").execute_in_process(partition_key=key, instance=instance,
                                                                          raise_on_error=False)
        assert not result.success and REASON in failure_message(result)
        store.record_skipped([(str(reid_env / "inbox" / "notes.txt"), "not a video file (suffix '.txt')")])
        with dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs) as context:
            for event in defs.resolve_sensor_def("archive_status_sensor")(context).asset_events:
                instance.report_runless_asset_event(event)
    return key, result.run_id, good, ready.run_id


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


def test_the_dagster_ui_as_a_user_reads_it(failed_archive, webserver, tmp_path):
    """One webserver over one archive (a ready video, a failed one), read four ways: the
    Checks tab and the Launchpad's schema through GraphQL, then, where Chromium is
    installed, the failed partition and archive_status, and the Launchpad, in the browser."""
    _the_silhouette_check_shows_as_evaluated_for_the_partition_that_ran(failed_archive, webserver)
    _the_register_archive_launchpad_asks_for_the_source(webserver, tmp_path)
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (./reid test installs it where it can): the browser part is left out")
    _a_failed_partition_and_the_archive_status_in_the_browser(failed_archive, webserver, tmp_path)
    _the_register_archive_launchpad_scaffolds_the_source(webserver, tmp_path)


def _a_failed_partition_and_the_archive_status_in_the_browser(failed_archive, webserver, tmp_path):
    """The partition view and the events of the failed video say why, by which run; the runs
    list and the run; the archive_status asset shows what `reid status` prints."""
    from playwright.sync_api import expect, sync_playwright

    key, run_id, _, _ = failed_archive
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
        assert REASON in text and "notes.txt" in text and "2 videos: 1 failed, 1 ready" in text
        browser.close()
    print(f"screenshots: {shots}")


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    """The answer of the webserver's `/graphql` (what the UI's pages query); fails on errors."""
    request = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


# what the asset page's Checks tab reads (AssetChecksQuery; AssetCheckPartitionDetailQuery for
# one partition): a partitioned check's status is that of its partitions
CHECKS_QUERY = """
query ($assetKey: AssetKeyInput!, $partition: String) {
  assetNodeOrError(assetKey: $assetKey) { ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks {
    name
    partitionStatuses { ... on AssetCheckDefaultPartitionStatuses {
      succeededPartitions failedPartitions executionFailedPartitions skippedPartitions inProgressPartitions } }
  } } } } }
  assetCheckExecutions(assetKey: $assetKey, checkName: "silhouette_mean", partition: $partition, limit: 5) {
    status runId partition evaluation { success metadataEntries { label } }
  }
}"""


def _the_silhouette_check_shows_as_evaluated_for_the_partition_that_ran(failed_archive, webserver):
    """The Checks tab of `silhouette_report` shows the check succeeded for the video whose run
    evaluated it, though a later run (of another video) failed before reaching it: the check
    is partitioned like the asset, so each video keeps its own result (it showed the latest
    run's, whichever video it was)."""
    bad, _, good, ready_run = failed_archive
    data = graphql(webserver, CHECKS_QUERY, {"assetKey": {"path": ["silhouette_report"]}, "partition": good})
    [check] = data["assetNodeOrError"]["assetChecksOrError"]["checks"]
    assert check["name"] == "silhouette_mean"
    assert check["partitionStatuses"] == {"succeededPartitions": [good], "failedPartitions": [], "skippedPartitions": [],
                                          "executionFailedPartitions": [bad], "inProgressPartitions": []}
    [execution] = data["assetCheckExecutions"]
    assert (execution["status"], execution["runId"], execution["partition"]) == ("SUCCEEDED", ready_run, good)
    assert execution["evaluation"]["success"] and "mean" in {e["label"] for e in execution["evaluation"]["metadataEntries"]}


LAUNCHPAD_QUERY = """
query ($selector: PipelineSelector!, $config: RunConfigData) {
  runConfigSchemaOrError(selector: $selector) { ... on RunConfigSchema {
    rootDefaultYaml
    allConfigTypes { ... on CompositeConfigType { fields { name isRequired description } } }
  } }
  isPipelineConfigValid(pipeline: $selector, mode: "default", runConfigData: $config) {
    __typename ... on RunConfigValidationInvalid { errors { reason message } }
  }
}"""


def _the_register_archive_launchpad_asks_for_the_source(webserver, tmp_path):
    """The Launchpad of `register_archive` (its config schema and the validation it shows as
    you type): `source` is a required field with a description, so an empty config is
    "missing" it (the Launchpad's *Scaffold missing config* writes it), and the README's
    YAML is valid."""
    selector = {"repositoryLocationName": "reid_pipeline", "repositoryName": "__repository__",
                "pipelineName": "register_archive"}
    data = graphql(webserver, LAUNCHPAD_QUERY, {"selector": selector, "config": {}})
    fields = [f for t in data["runConfigSchemaOrError"]["allConfigTypes"] for f in t.get("fields") or ()
              if f["name"] == "source" and "archive to register" in (f["description"] or "")]
    assert fields and all(f["isRequired"] for f in fields), fields
    assert "s3://bucket/prefix" in fields[0]["description"]
    invalid = data["isPipelineConfigValid"]
    assert invalid["__typename"] == "RunConfigValidationInvalid"
    assert [e["reason"] for e in invalid["errors"]] == ["MISSING_REQUIRED_FIELD"]
    assert "'source'" in invalid["errors"][0]["message"]
    valid = graphql(webserver, LAUNCHPAD_QUERY, {"selector": selector, "config": readme_run_config(tmp_path)})
    assert valid["isPipelineConfigValid"]["__typename"] == "PipelineConfigValidationValid"


def _the_register_archive_launchpad_scaffolds_the_source(webserver, tmp_path):
    """In the browser: the Launchpad of `register_archive` says its config misses `source`,
    and *Scaffold missing config* writes `ops: register_videos: config: source:` into the
    editor (a screenshot goes to the test's tmp dir)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        _open(page, f"{webserver}/locations/reid_pipeline/jobs/register_archive/playground")
        scaffold = page.get_by_role("button", name="Scaffold missing config")
        expect(scaffold).to_be_enabled(timeout=60_000)
        page.screenshot(path=tmp_path / "launchpad-missing.png")
        skip = page.get_by_role("button", name="Skip")  # Dagster's sign-up dialog, if it came up late
        if skip.count():
            skip.first.click()
        scaffold.click()
        page.get_by_role("button", name="Confirm").click()  # "Missing paths: ops"
        editor = page.locator(".cm-editor, .CodeMirror").first
        expect(editor).to_contain_text("register_videos", timeout=30_000)
        page.screenshot(path=tmp_path / "launchpad-scaffolded.png")
        text = editor.inner_text()
        browser.close()
    print(f"screenshots: {tmp_path}\n{text}")
    lines = [line.strip() for line in text.splitlines()]
    assert {"ops:", "register_videos:", "config:"} <= set(lines) and any(line.startswith("source:") for line in lines)
