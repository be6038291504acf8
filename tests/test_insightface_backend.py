"""InsightFaceBackend on tiny hand-built ONNX models: no weights, no network.

The recognition model is a small conv net with a 512-d output that insightface's model
router takes for ArcFace; the detection model has SCRFD's nine outputs (3 strides, 2 anchors,
keypoints) and fires where the frame has a white 32-px block, so `detect()` runs end to end
through insightface's own SCRFD decoding, alignment and our Detection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("insightface")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from reid_pipeline.faces.insightface_backend import (  # noqa: E402
    InsightFaceBackend,
    pack_available,
    pack_path,
)

pytestmark = pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")  # insightface's norm_crop

OPSET = [helper.make_opsetid("", 13)]


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_recognition_model(path: Path, dim: int = 512) -> Path:
    """input.1 [N,3,112,112] -> Conv 8x8/8 (8 ch) -> Relu -> Flatten -> MatMul -> [N, dim]."""
    rng = np.random.default_rng(0)
    conv_w = rng.normal(size=(8, 3, 8, 8)).astype(np.float32) / 8
    proj = rng.normal(size=(8 * 14 * 14, dim)).astype(np.float32) / 40
    nodes = [
        helper.make_node("Conv", ["input.1", "conv_w"], ["c"], name="conv0", kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Relu", ["c"], ["r"], name="relu0"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten0", axis=1),
        helper.make_node("MatMul", ["f", "proj"], ["embedding"], name="fc0"),
    ]
    graph = helper.make_graph(
        nodes,
        "toy_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [None, 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [None, dim])],
        initializer=[numpy_helper.from_array(conv_w, "conv_w"), numpy_helper.from_array(proj, "proj")],
    )
    return _save(graph, path)


# Keypoint offsets from the anchor centre, in stride units: eyes, nose tip, mouth corners.
KPS_OFFSETS = np.array([[-0.6, -0.5], [0.6, -0.5], [0.0, 0.1], [-0.5, 0.7], [0.5, 0.7]], dtype=np.float32)
BOX_DISTANCE = 2.0  # left, top, right, bottom distance in stride units


def write_detection_model(path: Path) -> Path:
    """SCRFD-shaped: per stride s in (8, 16, 32) an AveragePool s/s, then 1x1 convs giving
    scores (N,1), box distances (N,4) and keypoint offsets (N,10) for 2 anchors a cell.
    Only stride 32, anchor 0 can score: sigmoid(20 * (mean pixel - 0.5)) on SCRFD's
    normalised input, so a fully white 32-px cell scores ~1 and a black one ~0."""
    nodes, inits, outputs = [], [], {"score": [], "bbox": [], "kps": []}
    widths = {"score": 1, "bbox": 4, "kps": 10}
    for s in (8, 16, 32):
        pooled = f"pool{s}"
        nodes.append(
            helper.make_node("AveragePool", ["input.1"], [pooled], name=f"avgpool{s}", kernel_shape=[s, s], strides=[s, s])
        )
        for kind, width in widths.items():
            w = np.zeros((2 * width, 3, 1, 1), dtype=np.float32)
            if kind == "score":
                b = np.full(2, -20.0, dtype=np.float32)
                if s == 32:
                    w[0] = 20.0 / 3
                    b[0] = -10.0
            elif kind == "bbox":
                b = np.full(8, BOX_DISTANCE, dtype=np.float32)
            else:
                b = np.tile(KPS_OFFSETS.reshape(-1), 2).astype(np.float32)
            inits += [numpy_helper.from_array(w, f"{kind}{s}_w"), numpy_helper.from_array(b, f"{kind}{s}_b")]
            conv = f"{kind}{s}_conv"
            nodes.append(helper.make_node("Conv", [pooled, f"{kind}{s}_w", f"{kind}{s}_b"], [conv], name=f"c_{kind}{s}"))
            if kind == "score":
                nodes.append(helper.make_node("Sigmoid", [conv], [conv + "_sig"], name=f"sig{s}"))
                conv += "_sig"
            nodes.append(helper.make_node("Transpose", [conv], [conv + "_t"], name=f"t_{kind}{s}", perm=[0, 2, 3, 1]))
            inits.append(numpy_helper.from_array(np.array([-1, width], dtype=np.int64), f"{kind}{s}_shape"))
            out = f"{kind}_{s}"
            nodes.append(helper.make_node("Reshape", [conv + "_t", f"{kind}{s}_shape"], [out], name=f"r_{kind}{s}"))
            outputs[kind].append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [f"n{s}", width]))
    graph = helper.make_graph(
        nodes,
        "toy_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])],
        outputs["score"] + outputs["bbox"] + outputs["kps"],
        initializer=inits,
    )
    return _save(graph, path)


def write_landmark_3d_model(path: Path, yaw_degrees: float) -> Path:
    """landmark_3d_68-shaped: input [N,3,192,192], output [N,3309] that is always
    insightface's mean 3D face turned by `yaw_degrees` (a zero MatMul plus a bias)."""
    from insightface.data import get_object

    a = np.radians(yaw_degrees)
    turn = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    bias = np.zeros((1103, 3), dtype=np.float32)
    bias[-68:] = get_object("meanshape_68.pkl") @ turn.T  # only the last 68 points are read
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["g"], name="gap0"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten0", axis=1),
        helper.make_node("MatMul", ["f", "zero"], ["z"], name="fc0"),
        helper.make_node("Add", ["z", "bias"], ["fc1"], name="add0"),
    ]
    graph = helper.make_graph(
        nodes,
        "toy_landmark_3d_68",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [None, 3, 192, 192])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [None, 3309])],
        initializer=[
            numpy_helper.from_array(np.zeros((3, 3309), dtype=np.float32), "zero"),
            numpy_helper.from_array(bias.reshape(-1), "bias"),
        ],
    )
    return _save(graph, path)


def _insightface_image(name: str) -> np.ndarray:
    import cv2
    import insightface

    image = cv2.imread(str(Path(insightface.__file__).parent / "data" / "images" / name))
    assert image is not None
    return image


@pytest.fixture(scope="module")
def chips() -> list[np.ndarray]:
    import cv2
    from skimage import data

    hanks = _insightface_image("Tom_Hanks_54745.png")  # already an aligned 112 px chip
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    astronaut_face = cv2.resize(astronaut[20:240, 140:340], (112, 112), interpolation=cv2.INTER_AREA)
    hanks_zoom = cv2.resize(hanks[10:102, 10:102], (112, 112))
    return [hanks, astronaut_face, hanks_zoom]


@pytest.fixture
def rec_pack(tmp_path) -> Path:
    folder = tmp_path / "toy_pack"
    folder.mkdir()
    write_recognition_model(folder / "w_toy.onnx")
    return folder


def test_embedding_only_backend(rec_pack, chips):
    backend = InsightFaceBackend(rec_pack, detect_enabled=False)
    assert backend.name == "insightface"
    assert backend.model_name == "insightface_toy_pack_w_toy"
    assert backend.dim == 512 and backend.chip_size == 112
    facts = backend.describe()
    assert facts["model"] == backend.model_name and facts["dim"] == 512
    assert "CPUExecutionProvider" in facts["providers"]

    vectors = backend.embed(chips)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(backend.embed(chips), vectors)  # deterministic
    np.testing.assert_allclose(backend.embed(chips[1:2])[0], vectors[1], atol=1e-6)  # batch-independent
    cos = vectors @ vectors.T
    assert cos[0, 1] < 0.95 and cos[0, 2] < 0.95 and cos[1, 2] < 0.95
    assert backend.embed([]).shape == (0, 512)

    with pytest.raises(RuntimeError, match="detect"):
        backend.detect(np.zeros((64, 64, 3), dtype=np.uint8))


def test_root_and_pack_name(rec_pack):
    backend = InsightFaceBackend(root=rec_pack.parent, pack="toy_pack", detect_enabled=False)
    assert backend.model_name == "insightface_toy_pack_w_toy"
    assert pack_path(rec_pack.parent, "toy_pack") == rec_pack
    assert pack_path(None, "buffalo_l") == Path("~/.insightface/models/buffalo_l").expanduser()


def test_pack_without_detector(rec_pack, tmp_path):
    with pytest.raises(RuntimeError, match="no detection model"):
        InsightFaceBackend(rec_pack)
    with pytest.raises(FileNotFoundError):
        InsightFaceBackend(tmp_path / "missing", detect_enabled=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="no recognition model"):
        InsightFaceBackend(tmp_path / "empty", detect_enabled=False)


def test_pack_available(rec_pack, tmp_path):
    (tmp_path / "empty").mkdir()
    assert not pack_available(tmp_path, "empty")
    assert not pack_available(tmp_path, "missing")
    assert not pack_available(rec_pack.parent, rec_pack.name)  # recognition only
    write_detection_model(rec_pack / "det_toy.onnx")
    assert pack_available(rec_pack.parent, rec_pack.name)
    only_det = tmp_path / "only_det"
    only_det.mkdir()
    write_detection_model(only_det / "det_toy.onnx")
    assert not pack_available(tmp_path, "only_det")


def test_detect_end_to_end(rec_pack):
    write_detection_model(rec_pack / "det_toy.onnx")
    backend = InsightFaceBackend(rec_pack, det_size=320, det_thresh=0.5, providers=["CPUExecutionProvider"])
    facts = backend.describe()
    assert "det_toy.onnx" in facts["detector"] and facts["pose"] == "5 keypoints"
    assert facts["providers"] == "CPUExecutionProvider"

    frame = np.zeros((320, 320, 3), dtype=np.uint8)
    assert backend.detect(frame) == []

    frame[96:128, 128:160] = 255  # the stride-32 cell at column 4, row 3
    detections = backend.detect(frame)
    assert len(detections) == 1
    det = detections[0]
    centre = np.array([128.0, 96.0])  # SCRFD's anchor centre: the cell's corner
    d = BOX_DISTANCE * 32
    np.testing.assert_allclose(det.box, (centre[0] - d, centre[1] - d, centre[0] + d, centre[1] + d), atol=1e-3)
    assert det.score > 0.99
    assert det.landmarks.shape == (5, 2) and det.landmarks.dtype == np.float32
    np.testing.assert_allclose(det.landmarks, centre + KPS_OFFSETS * 32, atol=1e-3)
    assert abs(det.yaw) < 1e-3 and abs(det.roll) < 1e-3 and 0 < det.pitch < 90  # nose high: looks up
    assert det.chip.shape == (112, 112, 3) and det.chip.dtype == np.uint8

    vector = backend.embed([det.chip])
    assert vector.shape == (1, 512)

    # A frame that is not the detector's size goes through insightface's letterboxing.
    wide = np.zeros((240, 640, 3), dtype=np.uint8)
    wide[64:128, 256:320] = 255  # scaled by 0.5 into the cell at column 4, row 1
    (det_wide,) = backend.detect(wide)
    np.testing.assert_allclose(det_wide.landmarks, (np.array([128.0, 32.0]) + KPS_OFFSETS * 32) * 2, atol=1e-2)
    assert det_wide.box[1] == 0.0  # clipped to the frame


def test_detect_takes_pose_from_3d_landmarks(rec_pack):
    write_detection_model(rec_pack / "det_toy.onnx")
    write_landmark_3d_model(rec_pack / "lmk_toy.onnx", yaw_degrees=30.0)
    backend = InsightFaceBackend(rec_pack, det_size=320)
    assert "lmk_toy.onnx" in backend.describe()["pose"]
    frame = np.zeros((320, 320, 3), dtype=np.uint8)
    frame[96:128, 128:160] = 255
    (det,) = backend.detect(frame)
    # the turn the landmark model reports (not the 5 points' 0), with the same sign as
    # pose_from_points: the nose moved towards +x in the image
    assert abs(det.yaw - 30.0) < 0.5
    assert abs(det.pitch) < 0.5 and abs(det.roll) < 0.5


def test_the_face_model_resource_loads_an_insightface_pack(rec_pack, tmp_path):
    """The pipeline's resource passes dlib's options (upsample, largest side, cache) too: an
    insightface pack must load through it all the same."""
    from resources import FaceModel

    write_detection_model(rec_pack / "det_toy.onnx")
    model = FaceModel(backend="auto", insightface_root=str(rec_pack.parent), insightface_pack=rec_pack.name,
                      model_cache=str(tmp_path / "cache"))
    assert model.get().name == "insightface"
