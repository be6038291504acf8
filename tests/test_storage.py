"""The data root as a local folder and as a bucket (`reid_pipeline.storage`): atomic writes,
row-group reads, removal; then the whole per-video job and the identities with
`REID_DATA_ROOT=s3://...` on the local moto S3 server, compared with the same run on disk."""

import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from upath import UPath

from reid_pipeline import storage
from reid_pipeline.faces.detection import DetectionSink, chip_reader, read_chips
from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.storage import S3Options
from tests.helpers import people, process

BUCKET = "reid-data"


def frame(n: int = 1500) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame({
        "detection_id": pl.Series(range(n), dtype=pl.Int32),
        "chip": [rng.bytes(64) for _ in range(n)],
        "embedding": pl.Series(rng.random((n, 4), dtype=np.float32), dtype=pl.Array(pl.Float32, 4)),
        "model": ["m"] * n,
    })


def test_data_root_is_a_path_for_folders_and_a_upath_with_its_options_for_buckets(tmp_path):
    assert storage.data_root(str(tmp_path)) == tmp_path and isinstance(storage.data_root(tmp_path), Path)
    assert storage.data_root(f"file://{tmp_path}") == tmp_path
    root = storage.data_root("s3://bucket/prefix/", S3Options(endpoint_url="http://127.0.0.1:9"))
    assert isinstance(root, UPath) and not storage.is_local(root) and str(root) == "s3://bucket/prefix"
    path = storage.asset_path(root, "face_sequences", "k", ".faces.parquet")
    assert str(path) == "s3://bucket/prefix/face_sequences/k.faces.parquet"
    options = path.storage_options  # joined paths keep the endpoint and path-style addressing
    assert options["endpoint_url"] == "http://127.0.0.1:9" and options["config_kwargs"]["s3"] == {"addressing_style": "path"}
    assert "endpoint_url" not in S3Options().fsspec() and "key" not in S3Options().fsspec()  # AWS, boto's chain
    assert {"key": "a", "secret": "b"}.items() <= S3Options(access_key_id="a", secret_access_key="b").fsspec().items()
    # a local asset path's folder exists, ready to be written
    assert storage.asset_path(tmp_path / "root", "frame_detections", "k").parent.is_dir()


def test_local_writes_are_atomic_and_leave_no_temp_files(tmp_path):
    path = storage.asset_path(tmp_path, "face_embeddings", "k")
    storage.write_parquet(frame(10), path)
    before = storage.stamp(path)
    with pytest.raises(RuntimeError), storage.Staged(path) as tmp:
        frame(20).write_parquet(tmp)
        raise RuntimeError("the step failed half way")
    assert storage.read_parquet(path).height == 10 and storage.stamp(path) == before  # the old file, untouched
    storage.write_parquet(frame(30), path)
    assert storage.read_parquet(path, ["detection_id"]).shape == (30, 1)
    assert sorted(p.name for p in path.parent.iterdir()) == ["k.parquet"]  # no temp file left
    assert storage.stamp(tmp_path / "nothing") is None
    # a streamed detections file appears only when closed; an aborted one never
    sink = DetectionSink(storage.asset_path(tmp_path, "frame_detections", "k"), group=4)
    sink.abort()
    assert list((tmp_path / "frame_detections").iterdir()) == []
    report = storage.folder(tmp_path, "silhouette_report", "k")
    storage.write_text(report / "report.html", "<p>")
    assert storage.remove(report) and not report.exists() and not storage.remove(report)


@pytest.fixture
def bucket(endpoint):
    """The data root as `s3://reid-data/root` on the moto server."""
    options = S3Options(endpoint_url=endpoint)
    client = options.client()
    client.create_bucket(Bucket=BUCKET)
    yield storage.data_root(f"s3://{BUCKET}/root", options), client
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in page.get("Contents", ())]
    for key in keys:
        client.delete_object(Bucket=BUCKET, Key=key)
    client.delete_bucket(Bucket=BUCKET)


def objects(client, prefix: str = "") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))


def test_parquet_in_a_bucket_reads_back_as_written_and_chips_by_row_group(bucket, tmp_path, monkeypatch):
    root, client = bucket
    uploads = tmp_path / "tmp"  # where objects are written before they go up
    uploads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(uploads))
    df = frame()
    path = storage.asset_path(root, "frame_detections", "k")
    storage.write_parquet(df, path)
    local = storage.write_parquet(df, storage.asset_path(tmp_path, "frame_detections", "k"))
    assert objects(client) == ["root/frame_detections/k.parquet"]
    back = storage.read_parquet(path)
    assert back.schema == storage.read_parquet(local).schema and back.equals(df)
    assert storage.read_parquet(path, ["detection_id"]).columns == ["detection_id"]
    with storage.open_parquet(path) as parquet:
        assert parquet.metadata.num_row_groups == 3  # 1500 rows in groups of 512
    wanted = [3, 700, 1499]
    assert read_chips(path, wanted) == {i: df["chip"][i] for i in wanted} == read_chips(local, wanted)

    chip = chip_reader(root, recheck_s=0.0)
    assert chip("k", 1200) == df["chip"][1200] and chip("gone", 1) is None
    version = storage.stamp(path)
    storage.write_parquet(df.with_columns(chip=pl.lit(b"new")), path)  # a re-run replaces the object
    assert storage.stamp(path) != version and chip("k", 1200) == b"new"

    # a failed write uploads nothing: the object stays as it was
    with pytest.raises(RuntimeError), storage.Staged(path) as tmp:
        frame(5).write_parquet(tmp)
        raise RuntimeError("the step failed half way")
    assert storage.read_parquet(path).height == 1500
    assert list(uploads.iterdir()) == []  # no local copy left behind either

    # streamed detections go up when closed
    sink = DetectionSink(storage.asset_path(root, "frame_detections", "streamed"), group=2)
    for i in range(5):
        sink.append({k: None for k in ("frame_index", "timestamp_s", "x1", "y1", "x2", "y2", "detector_score", "landmarks",
                                       "yaw", "pitch", "roll", "face_px", "blur")} | {"chip": bytes([i])})
    assert "root/frame_detections/streamed.parquet" not in objects(client)
    light = sink.close()
    assert light.height == 5 and "chip" not in light.columns
    assert read_chips(storage.asset_path(root, "frame_detections", "streamed"), [4]) == {4: b"\x04"}

    report = storage.folder(root, "silhouette_report", "k")
    storage.write_bytes(report / "plot.png", b"png")
    storage.write_text(report / "report.html", "<p>")
    assert objects(client, "root/silhouette_report/") == ["root/silhouette_report/k/plot.png", "root/silhouette_report/k/report.html"]
    assert storage.remove(report) and objects(client, "root/silhouette_report/") == [] and not storage.remove(report)


def _counts(store) -> dict:
    """Per video: faces, sequences, and the faces in sequences; then the identities."""
    out = {}
    for r in store.rows("SELECT v.partition_key, (SELECT count(*) FROM faces f WHERE f.partition_key = v.partition_key) AS faces,"
                        " (SELECT count(*) FROM sequences s WHERE s.partition_key = v.partition_key) AS sequences,"
                        " (SELECT count(*) FROM faces f WHERE f.partition_key = v.partition_key AND f.sequence_number IS NOT NULL)"
                        " AS in_sequences, v.status FROM videos v ORDER BY v.partition_key"):
        out[r["partition_key"]] = (r["faces"], r["sequences"], r["in_sequences"], r["status"])
    return out


def test_the_whole_pipeline_with_its_data_root_in_a_bucket(endpoint, reid_env, instance, store, two_videos, monkeypatch):
    """`process_video` for two videos and `identities`, first on disk, then with
    REID_DATA_ROOT=s3://... on the moto server: the same rows in Postgres, every file an
    object in the bucket (nothing under the local data root), and forgetting a video
    removes its objects."""
    from reid_pipeline.cli import main
    from reid_pipeline.config import Settings
    from reid_pipeline.identities.forget import carry_out, plan_video
    from tests.conftest import build_defs

    paths = [two_videos["a"], two_videos["b"]]
    process(build_defs(), instance, store, paths)
    on_disk, people_on_disk = _counts(store), people(store)
    assert sum(faces for faces, *_ in on_disk.values()) > 0 and len(people_on_disk) >= 2

    with store.connection() as conn:
        conn.execute("TRUNCATE videos, faces, face_models, corrections CASCADE")
    client = S3Options(endpoint_url=endpoint).client()
    client.create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("REID_DATA_ROOT", f"s3://{BUCKET}/archive")
    local_root = Path(reid_env / "home" / "data")
    before = sorted(p.relative_to(local_root) for p in local_root.rglob("*") if p.is_file())
    defs = build_defs()
    process(defs, instance, store, paths)
    assert _counts(store) == on_disk and people(store) == people_on_disk
    after = sorted(p.relative_to(local_root) for p in local_root.rglob("*") if p.is_file())
    assert after == before  # nothing of this run on the local disk

    keys = [partition_key_for(p.name) for p in paths]
    found = objects(client, "archive/")
    for key in keys:
        for name in ("frame_detections/{}.parquet", "frame_detections/{}.frames.parquet", "frame_detections/{}.embeddings.parquet",
                     "face_embeddings/{}.parquet", "face_sequences/{}.parquet", "face_sequences/{}.faces.parquet",
                     "face_sequences/{}.frames.parquet", "silhouette_report/{}/report.html",
                     "silhouette_report/{}/contact_sheet.png", "silhouette_report/{}/per_face.parquet"):
            assert f"archive/{name.format(key)}" in found
    assert "archive/gallery/sface_2021dec/index.html" in found
    thumbs = [k for k in found if k.startswith("archive/gallery/sface_2021dec/faces/")]
    assert thumbs and all(client.get_object(Bucket=BUCKET, Key=k)["Body"].read()[:2] == b"\xff\xd8" for k in thumbs)
    root = defs.resources["storage"].root
    assert str(root) == f"s3://{BUCKET}/archive"
    faces = storage.read_parquet(storage.asset_path(root, "face_embeddings", keys[0]))
    assert faces.height == on_disk[keys[0]][0]

    # the command line reads the bucket too (the settings' endpoint)
    assert main(["evidence", keys[0], "--time", "0.5", "--out", str(reid_env / "ev.png")]) == 0
    assert (reid_env / "ev.png").read_bytes()[:4] == b"\x89PNG"

    # forgetting a video removes its objects (and nothing of the other video)
    counts = carry_out(store, root, plan_video(store, root, keys[0], Settings().video_cache))
    assert counts["files"] == 9  # seven parquet files, the report folder and the static gallery that showed its faces
    left = objects(client, "archive/")
    assert not [k for k in left if keys[0] in k]
    assert not [k for k in left if k.startswith("archive/gallery/")]
    assert f"archive/face_sequences/{keys[1]}.parquet" in left
