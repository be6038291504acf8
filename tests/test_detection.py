"""Detection between whole-frame searches (tracked), and embedding while detecting."""

import numpy as np
import polars as pl
import pytest

from reid_pipeline.faces import load_backend
from reid_pipeline.faces.base import box_iou
from reid_pipeline.faces.detection import ChipEmbedder, Tracking, detect_video, embed_detections, tracking_for
from tests import synthetic


@pytest.fixture(scope="module")
def backend():
    return load_backend("dlib")


@pytest.fixture(scope="module")
def cut_video(videos_dir):
    path = videos_dir / "tracked_cut_and_return.avi"
    return path, synthetic.write_video(synthetic.cut_and_return(seconds_per_shot=2.0), path)


@pytest.mark.parametrize("video", ["two_people_video", "cut_video"])
def test_tracked_detection_finds_every_face_with_fewer_whole_frame_searches(backend, video, request):
    path, gt = request.getfixturevalue(video)
    whole = detect_video(path, backend, sample_fps=5, tracking=Tracking(full_every=1))
    tracked = detect_video(path, backend, sample_fps=5, tracking=Tracking(full_every=4))
    assert whole.extra["full_searches"] == whole.frames_sampled
    assert tracked.extra["full_searches"] < tracked.frames_sampled
    # every face of every sampled frame is found, by the right box, with the right person
    assert tracked.detections["frame_index"].to_list() == whole.detections["frame_index"].to_list()
    assert None not in gt.label(tracked.detections)
    assert gt.label(tracked.detections) == gt.label(whole.detections)
    boxes = [d.detections.select("x1", "y1", "x2", "y2").rows() for d in (whole, tracked)]
    assert all(box_iou(a, b) > 0.6 for a, b in zip(*boxes))


def test_every_cut_gets_a_whole_frame_search(backend, cut_video):
    path, gt = cut_video
    tracked = detect_video(path, backend, sample_fps=5, tracking=Tracking(full_every=100))
    # frame 0 and the first sampled frame of each new shot; the newcomer R is found at once
    assert tracked.extra["full_searches"] == 1 + len(gt.cuts)
    per_frame = tracked.detections.group_by("frame_index").len().sort("frame_index")
    assert per_frame["len"].to_list() == [len(gt.frames[f]) for f in per_frame["frame_index"].to_list()]


def test_tracking_interval_is_in_seconds_of_video():
    assert tracking_for(4, 25, 1.0).full_every == 4
    assert tracking_for(None, 25, 1.0).full_every == 25  # every frame analysed
    assert tracking_for(4, 25, 0).full_every == 1


def test_chips_embedded_while_detecting_equal_those_embedded_afterwards(backend, two_people_video):
    path, _ = two_people_video
    run = detect_video(path, backend, sample_fps=5, embedder=ChipEmbedder(backend, batch=3))
    assert run.embeddings is not None and run.embeddings.shape == (run.detections.height, backend.dim)
    np.testing.assert_allclose(run.embeddings, embed_detections(run.detections, backend), atol=1e-6)


def test_an_embedder_with_no_chips_gives_an_empty_matrix(backend):
    assert ChipEmbedder(backend).result().shape == (0, backend.dim)
    assert embed_detections(pl.DataFrame({"chip": []}, schema={"chip": pl.Binary}), backend).shape == (0, backend.dim)
