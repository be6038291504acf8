"""An archive from the UI: the `register_archive` job and the `archive_sensor` register videos
as partitions without launching anything, the `prune_partitions` job removes partitions typed
in by hand, and the `archive_status_sensor` keeps `reid status` as an observation the UI shows.
Executed in-process against the embedded Postgres, as the daemon and the UI would run them."""

import os
import shutil
import time

import dagster as dg
import pytest

from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.ingest.sources import uri_for
from tests.conftest import build_defs
from tests.helpers import failure_message, readme_run_config


def _archive(tmp_path, two_people_video, faceless_video):
    folder = tmp_path / "archive"
    (folder / "2024").mkdir(parents=True)
    shutil.copy(two_people_video[0], folder / "2024" / "walk, take [1].avi")
    shutil.copy(faceless_video, folder / "empty room.avi")
    (folder / "index.txt").write_text("not a video")
    old = time.time() - 60
    for f in folder.rglob("*"):
        os.utime(f, (old, old))
    keys = {partition_key_for(str((folder / "2024" / "walk, take [1].avi").resolve())),
            partition_key_for(str((folder / "empty room.avi").resolve()))}
    return folder, keys


def _register(defs, instance, source):
    return defs.resolve_job_def("register_archive").execute_in_process(
        instance=instance, raise_on_error=False, run_config={"ops": {"register_videos": {"config": {"source": str(source)}}}})


def _output_metadata(result, op="register_videos"):
    [event] = [e for e in result.events_for_node(op) if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in event.step_output_data.metadata.items()}


def test_register_archive_job_makes_partitions_and_launches_nothing(
        defs, instance, store, tmp_path, two_people_video, faceless_video):
    folder, keys = _archive(tmp_path, two_people_video, faceless_video)
    # launched with the README's config (the Launchpad's YAML)
    result = defs.resolve_job_def("register_archive").execute_in_process(
        instance=instance, raise_on_error=False, run_config=readme_run_config(folder))
    assert result.success, failure_message(result)
    assert set(instance.get_dynamic_partitions("videos")) == keys
    for key in keys:
        assert store.get_video(key)["status"] == "registered"
    assert [r.run_id for r in instance.get_runs()] == [result.run_id]  # nothing launched
    md = _output_metadata(result)
    assert md["registered"] == 2 and md["summary"] == "2 new, 0 already known" and "Launch backfill" in md["next"]
    assert {r.data["partition"] for r in md["partitions"].records} == keys
    assert {r.data["status"] for r in md["partitions"].records} == {"new"}
    [skipped] = md["skipped"].records
    assert skipped.data["location"].endswith("index.txt") and skipped.data["reason"].startswith("not a video file")

    # the UI's backfill then processes each partition as an ordinary run of the per-video job
    empty = partition_key_for(str((folder / "empty room.avi").resolve()))
    run = defs.resolve_job_def("process_video").execute_in_process(
        partition_key=empty, instance=instance, raise_on_error=False,
        run_config={"ops": {"frame_detections": {"config": {"sample_fps": 2}}}})
    assert run.success, failure_message(run)
    assert store.get_video(empty)["status"] == "ready"

    # again, with a new file: it is the only new one; the others are known, by status, and left as they are
    shutil.copy(faceless_video, folder / "another room.avi")
    again = _register(defs, instance, folder)
    assert again.success, failure_message(again)
    md = _output_metadata(again)
    summary = "1 new, 2 already known (1 ready, 1 registered)"
    assert (md["summary"], md["registered"], md["already_known"], md["already_ready"]) == (summary, 1, 2, 1)
    assert sorted(r.data["status"] for r in md["partitions"].records) == [
        "already known (ready)", "already known (registered)", "new"]
    assert any(summary in (e.user_message or "") for e in instance.all_logs(again.run_id))  # the run's log says it too
    assert store.get_video(empty)["status"] == "ready" and len(instance.get_dynamic_partitions("videos")) == 3


def test_register_archive_job_refuses_what_is_not_an_archive(defs, instance, store, tmp_path):
    result = _register(defs, instance, tmp_path / "nowhere")
    assert not result.success
    assert "nowhere: not a folder on this machine" in failure_message(result)
    assert instance.get_dynamic_partitions("videos") == []
    # no source in the config (and no REID_ARCHIVE for a default): the config is refused with an example of it
    with pytest.raises(dg.DagsterInvalidConfigError, match=r"\{'register_videos': \{'config': \{'source': '\.\.\.'\}"):
        defs.resolve_job_def("register_archive").execute_in_process(instance=instance, raise_on_error=False)
    # an empty one: says how to give one
    empty = _register(defs, instance, "")
    assert not empty.success and "no archive given" in failure_message(empty)


def test_a_partition_typed_by_hand_fails_with_a_message_and_prune_removes_it(defs, instance, store, tmp_path, faceless_video):
    good = partition_key_for(str(faceless_video))
    store.register_video(good, uri_for(faceless_video))
    instance.add_dynamic_partitions("videos", [good, "/home/me/clip.mp4", "typo"])
    run = defs.resolve_job_def("process_video").execute_in_process(partition_key="typo", instance=instance,
                                                                   raise_on_error=False)
    assert not run.success
    message = failure_message(run)
    assert "'typo' names no registered video" in message
    assert "`register_archive` job" in message and "`prune_partitions` job" in message
    # the reason also goes to the failed asset's partition, as an observation the UI shows with the run
    [record] = instance.fetch_observations(dg.AssetRecordsFilter(dg.AssetKey("raw_video"), asset_partitions=["typo"]), limit=5).records
    observed = record.asset_observation.metadata
    assert observed["status"].value == "failed" and "'typo' names no registered video" in observed["reason"].value
    assert observed["run"].value == run.run_id

    pruned = defs.resolve_job_def("prune_partitions").execute_in_process(instance=instance, raise_on_error=False)
    assert pruned.success, failure_message(pruned)
    assert instance.get_dynamic_partitions("videos") == [good]
    md = _output_metadata(pruned, "remove_stray_partitions")
    assert md["removed"] == 2 and {r.data["partition"] for r in md["partitions"].records} == {"/home/me/clip.mp4", "typo"}
    assert store.get_video(good) is not None


def _tick(defs, instance, name, cursor=None):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources, definitions=defs) as context:
        return defs.resolve_sensor_def(name)(context), context.cursor


def test_archive_sensor_registers_without_launching_and_is_off_until_turned_on(
        reid_env, instance, store, monkeypatch, tmp_path, two_people_video, faceless_video):
    defs = build_defs()
    assert defs.resolve_sensor_def("archive_sensor").default_status == dg.DefaultSensorStatus.STOPPED
    result, _ = _tick(defs, instance, "archive_sensor")
    assert "REID_ARCHIVE is not set" in result.skip_reason.skip_message

    folder, keys = _archive(tmp_path, two_people_video, faceless_video)
    monkeypatch.setenv("REID_ARCHIVE", str(folder))
    monkeypatch.setenv("REID_SETTLE_SECONDS", "0")
    defs = build_defs()
    result, cursor = _tick(defs, instance, "archive_sensor")  # first sight: each file waits one tick unchanged
    assert not result.dynamic_partitions_requests
    result, cursor = _tick(defs, instance, "archive_sensor", cursor)
    assert not result.run_requests
    [request] = result.dynamic_partitions_requests
    assert request.partitions_def_name == "videos" and set(request.partition_keys) == keys
    assert all(store.get_video(k)["status"] == "registered" for k in keys)
    instance.add_dynamic_partitions("videos", list(keys))  # what the daemon does with the request
    result, _ = _tick(defs, instance, "archive_sensor", cursor)
    assert not result.dynamic_partitions_requests and "no new settled video" in result.skip_reason.skip_message


def test_archive_status_is_observed_when_it_changes(defs, instance, store, tmp_path, faceless_video):
    bad = tmp_path / "broken.mp4"
    bad.write_text("a text file under a video name")
    for path in (faceless_video, bad):
        key = partition_key_for(str(path))
        store.register_video(key, uri_for(path))
        instance.add_dynamic_partitions("videos", [key])
        defs.resolve_job_def("process_video").execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
    store.record_skipped([("/inbox/notes.txt", "not a video file (suffix '.txt')")])

    result, _ = _tick(defs, instance, "archive_status_sensor")
    [observation] = result.asset_events
    assert observation.asset_key == dg.AssetKey("archive_status")
    md = {k: v.value for k, v in observation.metadata.items()}
    assert md["summary"] == "2 videos: 1 failed, 1 ready" and md["videos_failed"] == 1
    rows = [r.data for r in md["videos"].records]
    assert rows[0]["status"] == "failed" and rows[0]["file"] == "broken.mp4"  # failures first
    assert rows[0]["key"] == partition_key_for(str(bad)) and "not a video container" in rows[0]["reason"]
    assert rows[1]["status"] == "ready" and rows[1]["faces"] == 0
    assert md["failures"].startswith(f"{rows[0]['key']} (broken.mp4, failed): raw_video: broken.mp4: not a video container")
    assert [r.data for r in md["not_taken"].records] == [{"reason": "not a video file (suffix '.txt')", "location": "/inbox/notes.txt"}]

    result, _ = _tick(defs, instance, "archive_status_sensor", result.cursor)  # the cursor the daemon keeps
    assert not result.asset_events and result.skip_reason.skip_message == "no change"
