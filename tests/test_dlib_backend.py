import numpy as np
import pytest

from reid_pipeline.faces import load_backend
from tests import synthetic


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


def test_onnx_descriptor_gives_dlibs_own_vectors(backend):
    """The descriptor on ONNX Runtime is dlib's network: same vectors as dlib's own build,
    on real faces (at several scales), a flipped face and noise."""
    import dlib

    from reid_pipeline.faces.dlib_backend import _models_dir

    chips = []
    for name in ("astronaut", "tom_hanks"):
        photo = synthetic.face_by_person(name)
        for scale in (0.8, 1.0, 1.4):
            chips += [d.chip for d in backend.detect(_frame_with(photo, 60, 40, scale=scale))]
    chips.append(chips[0][:, ::-1])
    chips.append(np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8))
    assert len(chips) >= 8
    rgb = [np.ascontiguousarray(c[:, :, ::-1]) for c in chips]
    dlib_own = dlib.face_recognition_model_v1(str(_models_dir() / "dlib_face_recognition_resnet_model_v1.dat"))
    expected = np.array(dlib_own.compute_face_descriptor(rgb), dtype=np.float32)
    raw = backend._descriptor(np.stack(rgb))
    assert np.abs(raw - expected).max() < 1e-4
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.abs(backend.embed(chips) - expected).max() < 1e-4


def test_onnx_model_is_one_older_onnx_runtimes_read():
    """onnx writes its newest IR version by default; ONNX Runtime 1.31 (the GPU build's
    newest here) refuses IR 14. The model pins opset 17 and IR 8."""
    import onnx

    from reid_pipeline.faces.dlib_backend import _models_dir
    from reid_pipeline.faces.dlib_onnx import build_onnx, read_network

    model = onnx.load_from_string(build_onnx(read_network(_models_dir() / "dlib_face_recognition_resnet_model_v1.dat")))
    onnx.checker.check_model(model)
    assert model.ir_version == 8 and [o.version for o in model.opset_import] == [17]


def test_onnx_descriptor_refuses_another_model_file(tmp_path):
    from reid_pipeline.faces.dlib_backend import _models_dir
    from reid_pipeline.faces.dlib_onnx import read_network

    with pytest.raises(ValueError, match="not dlib's face recognition ResNet"):
        read_network(_models_dir() / "mmod_human_face_detector.dat")
    truncated = tmp_path / "cut.dat"
    truncated.write_bytes((_models_dir() / "dlib_face_recognition_resnet_model_v1.dat").read_bytes()[:5_000_000])
    with pytest.raises(ValueError, match="not dlib's face recognition ResNet"):
        read_network(truncated)


def test_models_cached_once_and_reused(backend, tmp_path):
    from reid_pipeline.faces.dlib_backend import DlibBackend

    photo = synthetic.face_by_person("astronaut")
    frame = _frame_with(photo, 100, 80)
    cache = tmp_path / "models"
    first = DlibBackend(cache_dir=cache)
    made = sorted(p.name for p in cache.iterdir())
    assert len(made) == 2 and made[0].startswith("dlib_face_recognition_resnet_model_v1-") and made[1].endswith(".svm")
    stamps = [p.stat().st_mtime_ns for p in sorted(cache.iterdir())]
    second = DlibBackend(cache_dir=cache)  # loads what the first one wrote
    assert [p.stat().st_mtime_ns for p in sorted(cache.iterdir())] == stamps
    for b in (first, second):
        found = b.detect(frame)
        assert [d.box for d in found] == [d.box for d in backend.detect(frame)]
        np.testing.assert_allclose(b.embed([d.chip for d in found]), backend.embed([d.chip for d in found]), atol=1e-6)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    assert len(DlibBackend(cache_dir=blocked / "models").detect(frame)) == 1  # cannot write: built in memory


def test_without_onnx_runtime_the_error_says_what_to_install(monkeypatch):
    import sys

    from reid_pipeline.faces.dlib_backend import _models_dir
    from reid_pipeline.faces.dlib_onnx import DlibDescriptor

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(RuntimeError, match=r"reid-pipeline\[cpu\]"):
        DlibDescriptor(_models_dir() / "dlib_face_recognition_resnet_model_v1.dat")
