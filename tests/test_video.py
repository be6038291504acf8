import subprocess

import av
import cv2
import numpy as np
import pytest

from reid_pipeline.ingest.video import VideoError, iter_frames, probe, sha256_of
from tests import avclips, synthetic


def test_probe_reports_the_container_facts(two_people_video):
    path, gt = two_people_video
    info = probe(path)
    assert (info.width, info.height) == (640, 480)
    assert info.fps == pytest.approx(10.0)
    assert info.frame_count == gt.frame_count == 20
    assert info.duration_s == pytest.approx(2.0)
    assert info.codec == "MJPG"
    assert info.size_bytes == path.stat().st_size
    assert len(sha256_of(path)) == 64


def test_every_frame_and_sampled_frames_have_correct_timestamps(two_people_video):
    path, _ = two_people_video
    every = list(iter_frames(path))
    assert [f.index for f in every] == list(range(20))
    assert [f.timestamp_s for f in every] == pytest.approx([i / 10 for i in range(20)], abs=1e-3)
    sampled = list(iter_frames(path, sample_fps=2))
    assert [f.index for f in sampled] == [0, 5, 10, 15]
    assert [f.timestamp_s for f in sampled] == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=1e-3)
    assert sampled[1].image.shape == (480, 640, 3)


def test_sampling_faster_than_the_source_keeps_every_frame(two_people_video):
    path, _ = two_people_video
    assert len(list(iter_frames(path, sample_fps=50))) == 20


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"this is a text file, not a video\n" * 20, "not a video container"),
        (b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n", "not a video container"),
    ],
)
def test_unusable_files_raise_a_specific_error(tmp_path, content, message):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match=message):
        probe(path)
    if content:
        with pytest.raises(VideoError, match=message):
            list(iter_frames(path))


@pytest.mark.parametrize("name", ["tone.m4a", "tone.mp4"])
def test_an_audio_only_file_has_no_video_stream(tmp_path, name):
    path = avclips.audio_only(tmp_path / name)
    with pytest.raises(VideoError, match=r"no video stream \(audio only\)"):
        probe(path)
    with pytest.raises(VideoError, match=r"no video stream \(audio only\)"):
        list(iter_frames(path))


def test_truncated_mp4_is_reported(tmp_path):
    path = tmp_path / "clip.mp4"
    synthetic.write_video(synthetic.two_people_walking(seconds=1.0), path, fourcc="mp4v")
    assert probe(path).frame_count == 10
    data = path.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])  # the moov atom sits at the end: gone
    index = r"the container has no index \(moov\): the file is incomplete or cut"
    with pytest.raises(VideoError, match=index):
        probe(truncated)
    with pytest.raises(VideoError, match=index):
        list(iter_frames(truncated))


def test_an_edit_list_sets_the_duration_not_the_sample_count(tmp_path):
    """`ffmpeg -ss 1 -i clip.mp4 -t 3 -c copy cut.mp4` keeps the samples from the key frame
    before 1 s and hides them with an edit list: 4 s of samples, 3 s of video. The duration
    and frame count are the 3 s that play (and decode), not the sample table's 4 s."""
    clip = avclips.encode_mp4(synthetic.two_people_walking(seconds=5.0), tmp_path / "clip.mp4")
    cut = avclips.cut_with_edit_list(clip, tmp_path / "cut.mp4", start_s=1.0, length_s=3.0)
    info = probe(cut)
    frames = list(iter_frames(cut))
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert info.frame_count == len(frames) == 30
    assert frames[-1].timestamp_s + 1 / info.fps == pytest.approx(info.duration_s, abs=0.05)


def test_a_negative_start_time_counts_from_the_first_frame(tmp_path):
    """The same cut in Matroska with its negative times kept (the container starts at -1 s):
    frames are timed from the first one, and the duration is not longer than they are."""
    clip = avclips.encode_mp4(synthetic.two_people_walking(seconds=5.0), tmp_path / "clip.mp4")
    cut = avclips.cut_with_edit_list(clip, tmp_path / "cut.mkv", 1.0, 3.0, options={"avoid_negative_ts": "disabled"})
    with av.open(str(cut)) as container:
        assert container.start_time < 0
    info = probe(cut)
    frames = list(iter_frames(cut))
    assert frames[0].timestamp_s == 0.0 and frames[1].timestamp_s == pytest.approx(0.1, abs=1e-3)
    assert frames[-1].timestamp_s + 1 / info.fps >= info.duration_s - 0.05


def test_truncated_avi_yields_the_frames_that_survive(tmp_path, two_people_video):
    path, _ = two_people_video
    data = path.read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    frames = list(iter_frames(truncated))
    assert 5 <= len(frames) < 20


def test_rotation_metadata_is_applied(tmp_path, two_people_video):
    """A phone video stored landscape with a 90 degree display rotation comes out upright."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    src, _ = two_people_video
    ffmpeg = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error"]
    plain, rotated = tmp_path / "plain.mp4", tmp_path / "rotated.mp4"
    subprocess.run([*ffmpeg, "-i", str(src), "-c:v", "mpeg4", "-q:v", "3", str(plain)], check=True)
    # stream copy keeps the pixels landscape and only adds the display matrix
    subprocess.run([*ffmpeg, "-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated)], check=True)
    info = probe(rotated)
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (480, 640)
    first = next(iter_frames(rotated))
    assert first.image.shape == (640, 480, 3)
    upright = next(iter_frames(src)).image
    # The frame equals the source turned by 90 degrees one way or the other.
    turned = [cv2.rotate(upright, code) for code in (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE)]
    errors = [float(np.abs(t.astype(int) - first.image.astype(int)).mean()) for t in turned]
    assert min(errors) < 12 < max(errors)


def test_shortfall_allows_a_sampling_step_and_a_margin():
    from reid_pipeline.ingest.video import shortfall

    assert shortfall(17.0, 16.9, 0.25) is None
    assert shortfall(None, 3.0, 0.25) is None and shortfall(0.0, 3.0, 0.25) is None
    assert "up to 4.8 s" in shortfall(17.0, 4.8, 0.25)
