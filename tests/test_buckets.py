"""The watched bucket against a real S3-compatible server: moto's standalone server on a
local port, spoken to by a real boto3 client over HTTP (no mocked client)."""

import time

import pytest

from reid_pipeline.config import Settings
from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.ingest.buckets import BucketError, BucketLocation, make_client, parse_s3_uri, scan_bucket
from reid_pipeline.ingest.sources import local_path
from reid_pipeline.ingest.video import VideoError, probe
from tests import synthetic

BUCKET = "reid-inbox"


def test_location_parsing():
    assert BucketLocation.parse("s3://b") == BucketLocation("b", "")
    assert BucketLocation.parse("s3://b/in", "http://x:9000") == BucketLocation("b", "in/", "http://x:9000")
    assert BucketLocation.parse("s3://b/in/sub/").prefix == "in/sub/"
    assert parse_s3_uri("s3://b/a dir/clip #1?.mp4") == ("b", "a dir/clip #1?.mp4")
    with pytest.raises(ValueError):
        BucketLocation.parse("/srv/inbox")


def test_bucket_scan_takes_only_settled_complete_videos_and_local_path_fetches_them(endpoint, tmp_path):
    t0 = time.monotonic()
    client = make_client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    video = tmp_path / "walk.avi"
    synthetic.write_video(synthetic.two_people_walking(seconds=1.0), video)
    data = video.read_bytes()

    client.upload_file(str(video), BUCKET, "in/walk.avi")
    client.put_object(Bucket=BUCKET, Key="in/notes.txt", Body=b"not a video")
    client.put_object(Bucket=BUCKET, Key="elsewhere/other.avi", Body=data)  # outside the prefix
    client.put_object(Bucket=BUCKET, Key="in/redo.avi", Body=data)  # about to be overwritten
    uploads = {}
    for key in ("in/later/upload.mp4", "in/redo.avi"):
        upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        part = client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=1, Body=data)
        uploads[key] = (upload_id, [{"PartNumber": 1, "ETag": part["ETag"]}])

    location = BucketLocation.parse(f"s3://{BUCKET}/in", endpoint)
    now = time.time() + 60  # everything is old enough to have settled
    first = scan_bucket(client, location, set(), settle_s=5, now=now)
    assert first.ready == []  # seen once: not yet
    assert set(first.pending) == {"walk.avi"}  # uploads in progress are not even pending
    assert [(uri, reason.split(" (")[0]) for uri, reason in first.skipped] == [
        (f"s3://{BUCKET}/in/notes.txt", "not a video file")
    ]
    second = scan_bucket(client, location, set(), first.pending, first.ignored, settle_s=5, now=now)
    walk_key = partition_key_for(f"s3://{BUCKET}/in/walk.avi")
    assert second.ready == [(walk_key, f"s3://{BUCKET}/in/walk.avi")]
    assert second.skipped == []  # notes.txt is reported once only

    # a fresh object is not taken before it is settle_s old, however still it holds
    fresh = scan_bucket(client, location, set(), first.pending, first.ignored, settle_s=3600, now=now)
    assert fresh.ready == []

    for key, (upload_id, parts) in uploads.items():
        client.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    known = {walk_key}
    third = scan_bucket(client, location, known, second.pending, second.ignored, settle_s=5, now=now)
    assert third.ready == [] and set(third.pending) == {"later/upload.mp4", "redo.avi"}
    fourth = scan_bucket(client, location, known, third.pending, third.ignored, settle_s=5, now=now)
    upload_uri = f"s3://{BUCKET}/in/later/upload.mp4"
    assert sorted(fourth.ready) == sorted(
        [(partition_key_for(upload_uri), upload_uri), (partition_key_for(f"s3://{BUCKET}/in/redo.avi"), f"s3://{BUCKET}/in/redo.avi")]
    )
    assert fourth.skipped == [] and fourth.pending == {}

    # local_path downloads into the settings' video cache, <REID_HOME>/cache/s3/<bucket>/<key>,
    # and probe reads it
    cache = Settings().video_cache
    path = local_path(upload_uri, cache, client)
    assert path == tmp_path / "home" / "cache" / "s3" / BUCKET / "in" / "later" / "upload.mp4"
    assert path.read_bytes() == data
    info = probe(path)
    assert info.frame_count == 10 and (info.width, info.height) == (640, 480)
    inode = path.stat().st_ino
    assert local_path(upload_uri, cache, client) == path and path.stat().st_ino == inode  # reused, not fetched again
    assert [p.name for p in path.parent.iterdir()] == ["upload.mp4"]  # no temp files left

    with pytest.raises(VideoError, match="object not found"):
        local_path(f"s3://{BUCKET}/in/gone.mp4", tmp_path / "cache", client)
    with pytest.raises(BucketError, match="cannot list"):
        scan_bucket(client, BucketLocation.parse("s3://no-such-bucket/in", endpoint), set())
    assert time.monotonic() - t0 < 20


def test_unreachable_store_is_a_clear_video_error(endpoint, tmp_path):
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(VideoError, match=f"cannot reach the object store at http://127.0.0.1:{port}"):
        local_path(f"s3://{BUCKET}/in/walk.avi", tmp_path / "cache", make_client(f"http://127.0.0.1:{port}"))
    with pytest.raises(ValueError, match="needs a cache folder and an S3 client"):
        local_path(f"s3://{BUCKET}/in/walk.avi")


def test_inbox_sensor_watches_a_bucket(endpoint, reid_env, store, monkeypatch, tmp_path):
    """The Dagster sensor on a bucket: a settled video becomes a partition and a run request;
    a non-video is skipped; an upload still in progress is not taken; the run reads the object."""
    import dagster as dg

    from tests.conftest import build_defs

    client = make_client(endpoint)
    client.create_bucket(Bucket="reid-sensor")
    video = tmp_path / "walk.avi"
    synthetic.write_video(synthetic.two_people_walking(seconds=1.0), video)
    client.upload_file(str(video), "reid-sensor", "incoming/walk.avi")
    client.put_object(Bucket="reid-sensor", Key="incoming/notes.txt", Body=b"hello")
    upload = client.create_multipart_upload(Bucket="reid-sensor", Key="incoming/big.mp4")["UploadId"]
    client.upload_part(Bucket="reid-sensor", Key="incoming/big.mp4", UploadId=upload, PartNumber=1, Body=video.read_bytes())

    monkeypatch.setenv("REID_INBOX_BUCKET", "s3://reid-sensor/incoming")
    monkeypatch.setenv("REID_SETTLE_SECONDS", "0")
    defs = build_defs()
    sensor = defs.resolve_sensor_def("inbox_sensor")
    with dg.instance_for_test() as instance:
        cursor = None
        requests = []
        for _ in range(3):
            with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources,
                                         definitions=defs) as context:
                result = sensor(context)
                cursor = context.cursor
            requests += result.run_requests or []
        key = partition_key_for("s3://reid-sensor/incoming/walk.avi")
        assert [r.partition_key for r in requests] == [key]
        assert "notes.txt" in cursor and "big.mp4" not in [r.partition_key for r in requests]
        assert store.get_video(key)["source_uri"] == "s3://reid-sensor/incoming/walk.avi"
        instance.add_dynamic_partitions("videos", [key])
        run = defs.resolve_job_def("process_video").execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False,
            run_config={"ops": {"frame_detections": {"config": {"sample_fps": 2}}}},
        )
        assert run.success
        faces = [e for e in run.get_asset_materialization_events() if e.asset_key.to_user_string() == "face_embeddings"]
        assert faces[0].materialization.metadata["faces"].value > 0


def test_an_object_key_with_dot_dot_stays_inside_the_cache(endpoint, tmp_path):
    """S3 keys are plain strings: `in/../../escape.avi` is a valid key. The bucket scan never
    takes it (a `..` part is treated like a hidden folder), and a copy fetched by its URI
    gets a hashed name inside the cache, never a path that climbs out of it."""
    client = make_client(endpoint)
    client.create_bucket(Bucket="dots")
    video = tmp_path / "walk.avi"
    synthetic.write_video(synthetic.two_people_walking(seconds=1.0), video)
    client.upload_file(str(video), "dots", "in/../../escape.avi")
    location = BucketLocation.parse("s3://dots", endpoint)
    first = scan_bucket(client, location, set(), settle_s=0, now=time.time() + 60)
    second = scan_bucket(client, location, set(), first.pending, first.ignored, settle_s=0, now=time.time() + 60)
    assert first.pending == {} and second.ready == []
    cache = tmp_path / "cache"
    path = local_path("s3://dots/in/../../escape.avi", cache, client)
    assert path.resolve().is_relative_to(cache.resolve()) and path.read_bytes() == video.read_bytes()
    assert not (tmp_path / "escape.avi").exists()
