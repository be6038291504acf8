"""Backfill batches (`backfill_videos`): several videos per process, each video still a
partition of its own in Dagster (its own run, materializations and metadata, failed alone,
re-run alone)."""

import shutil

import dagster as dg

from assets.backfill import BACKFILL_TAG
from assets.partitions import videos
from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.ingest.sources import uri_for
from tests import synthetic
from tests.helpers import failure_message

PER_VIDEO = ["raw_video", "frame_detections", "face_embeddings", "face_sequences", "silhouette_report", "cross_video_matches"]


def register(instance, store, paths) -> list[str]:
    keys = []
    for path in paths:
        key = partition_key_for(str(path))
        store.register_video(key, uri_for(path))
        keys.append(key)
    instance.add_dynamic_partitions("videos", keys)
    return keys


def backfill(defs, instance, keys, batch_size=3, tags=None):
    return defs.resolve_job_def("backfill_videos").execute_in_process(
        instance=instance, raise_on_error=False, tags=tags or {BACKFILL_TAG: "bf-test"},
        run_config={"ops": {"plan_batches": {"config": {"partition_keys": keys, "batch_size": batch_size, "sample_fps": 2.0}}}},
    )


def status(instance, asset: str, keys: list[str]) -> dict[str, str | None]:
    found = instance.get_status_by_partition(dg.AssetKey(asset), keys, videos)
    return {k: (v.value if v else None) for k, v in found.items()}


def latest_metadata(instance, asset: str, key: str) -> dict:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1)
    event = records.records[0].asset_materialization if records.records else None
    return {k: v.value for k, v in event.metadata.items()} if event else {}


def test_a_batch_with_a_corrupt_video_materialises_the_good_ones_and_fails_the_bad_one_alone(
    defs, instance, store, two_people_video, faceless_video, tmp_path
):
    walk, room, bad = tmp_path / "walk.avi", tmp_path / "room.avi", tmp_path / "broken.mp4"
    shutil.copy(two_people_video[0], walk)
    shutil.copy(faceless_video, room)
    bad.write_text("a text file under a video name")
    good_a, broken, good_b = keys = register(instance, store, [walk, bad, room])

    result = backfill(defs, instance, keys)

    # the backfill's run says which video failed and why; the good ones are not named
    assert not result.success
    message = failure_message(result)
    assert broken in message and "not a video container" in message and good_a not in message
    # one ordinary process_video run per video, all three in this one process
    runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_TAG: "bf-test"}, job_name="process_video"))
    by_key = {r.tags["dagster/partition"]: r for r in runs}
    assert set(by_key) == set(keys)
    assert by_key[good_a].status == by_key[good_b].status == dg.DagsterRunStatus.SUCCESS
    assert by_key[broken].status == dg.DagsterRunStatus.FAILURE
    # what the UI shows per partition: the good ones materialised, the bad one failed, in every asset
    for asset in PER_VIDEO:
        assert status(instance, asset, keys) == {good_a: "MATERIALIZED", broken: "FAILED", good_b: "MATERIALIZED"}, asset
    # each with its own metadata
    assert latest_metadata(instance, "face_embeddings", good_a)["faces"] == 8
    assert latest_metadata(instance, "face_embeddings", good_b)["faces"] == 0
    assert latest_metadata(instance, "silhouette_report", good_a)["scored_faces"] == 8
    # and the database says the same, with the reason
    assert store.get_video(good_a)["status"] == "ready" and store.get_video(good_b)["status"] == "ready"
    video = store.get_video(broken)
    assert video["status"] == "failed" and video["error"].startswith("raw_video: ") and "not a video container" in video["error"]

    # a re-execution of the backfill skips what it finished; the bad one fails again, alone
    again = backfill(defs, instance, keys)
    runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_TAG: "bf-test"}, job_name="process_video"))
    assert not again.success and len(runs) == 4 and runs[0].tags["dagster/partition"] == broken

    # the bad one re-run alone, its file replaced by a readable video (UI: materialise the partition; `reid retry KEY`)
    synthetic.write_video(synthetic.two_people_walking(seconds=1.0), bad, fourcc="mp4v")
    alone = defs.resolve_job_def("process_video").execute_in_process(
        partition_key=broken, instance=instance, raise_on_error=False,
        run_config={"ops": {"frame_detections": {"config": {"sample_fps": 2.0}}}},
    )
    assert alone.success
    assert {e.partition for e in alone.get_asset_materialization_events()} == {broken}
    assert store.get_video(broken)["status"] == "ready"
    for asset in PER_VIDEO:
        assert set(status(instance, asset, keys).values()) == {"MATERIALIZED"}, asset


def test_a_backfill_of_unregistered_partitions_fails_before_running_anything(defs, instance, store):
    result = backfill(defs, instance, ["nobody-12345678"])
    assert not result.success and "not partitions of `videos`" in failure_message(result)
    assert not instance.get_runs(filters=dg.RunsFilter(job_name="process_video"))
