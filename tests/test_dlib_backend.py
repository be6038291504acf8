import numpy as np
import pytest

from reid_pipeline.faces import load_backend
from reid_pipeline.testing import synthetic


@pytest.fixture(scope="module")
def backend():
    return load_backend("dlib")


def _frame_with(photo, x, y, scale=1.0, size=(640, 480)):
    import cv2

    frame = np.full((size[1], size[0], 3), 120, np.uint8)
    img = cv2.resize(photo.image, None, fx=scale, fy=scale)
    h, w = img.shape[:2]
    frame[y : y + h, x : x + w] = img
    return frame


def test_detects_landmarks_pose_and_chip(backend):
    photo = synthetic.face_by_person("astronaut")
    dets = backend.detect(_frame_with(photo, 100, 80))
    assert len(dets) == 1
    d = dets[0]
    x1, y1, x2, y2 = d.box
    assert 100 <= x1 < x2 <= 100 + photo.image.shape[1] and 80 <= y1 < y2 <= 80 + photo.image.shape[0]
    assert d.landmarks.shape == (5, 2)
    assert d.chip.shape == (150, 150, 3) and d.chip.dtype == np.uint8
    assert abs(d.yaw) < 30 and abs(d.roll) < 20
    assert backend.describe()["model"] == "dlib_resnet_v1"


def test_same_person_is_closer_than_different_people(backend):
    astronaut = synthetic.face_by_person("astronaut")
    hanks = synthetic.face_by_person("tom_hanks")
    chips = [
        backend.detect(_frame_with(astronaut, 50, 40))[0].chip,
        backend.detect(_frame_with(astronaut, 300, 150, scale=1.3))[0].chip,
        backend.detect(_frame_with(hanks, 200, 100))[0].chip,
    ]
    v = backend.embed(chips)
    assert v.shape == (3, 128) and v.dtype == np.float32
    assert np.linalg.norm(v, axis=1) == pytest.approx(1.0, abs=1e-5)
    same, different = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert same > 0.95 and different < 0.9 and same - different > 0.1


def test_auto_falls_back_to_dlib_without_an_insightface_pack(tmp_path):
    backend = load_backend("auto", insightface_root=str(tmp_path))
    assert backend.name == "dlib"
    with pytest.raises(RuntimeError, match="not found"):
        load_backend("insightface", insightface_root=str(tmp_path))
    with pytest.raises(ValueError, match="unknown face backend"):
        load_backend("opencv")
