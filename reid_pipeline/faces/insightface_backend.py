"""insightface backend: SCRFD detector, ArcFace embedder, pose from the 3D landmarks.

A model pack is a folder of .onnx files (`buffalo_l` by default, in `~/.insightface/models`).
Each file goes through insightface's own model router and is picked by its `taskname`, the
way `insightface.app.FaceAnalysis` does it; this class only adds the pipeline's `Detection`
and names the embedding model after the recognition file, so vectors of different packs or
models never meet. The pretrained packs are for non-commercial research only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reid_pipeline.faces.base import Detection, l2_normalise
from reid_pipeline.faces.quality import pose_from_points

DEFAULT_ROOT = "~/.insightface/models"
DEFAULT_PACK = "buffalo_l"

DETECTION = "detection"
RECOGNITION = "recognition"
LANDMARK_3D = "landmark_3d_68"


def pack_path(root: str | Path | None, pack: str) -> Path:
    """The folder of model pack `pack` under `root` (default `~/.insightface/models`)."""
    return Path(root or DEFAULT_ROOT).expanduser() / pack


def _route(onnx_file: Path) -> str | None:
    """The task insightface's `ModelRouter` would give this file, read from the graph only.

    Mirrors the router's rules without starting an inference session, so that checking a
    pack is cheap and files the backend does not need are never loaded.
    """
    import onnx

    try:
        model = onnx.load_model(str(onnx_file), load_external_data=False)
    except Exception:  # a broken or foreign file is simply not a usable model
        return None
    graph = model.graph
    if len(graph.output) >= 5:
        return DETECTION
    if not graph.input:
        return None
    dims = [d.dim_value if d.dim_value > 0 else None for d in graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[2] is None or dims[3] is None:
        return None
    height, width = dims[2], dims[3]
    if (height, width) == (192, 192):
        return "landmark"  # 3D 68-point or 2D 106-point: the taskname tells which
    if (height, width) == (96, 96):
        return "attribute"
    if len(graph.input) == 2 and (height, width) == (128, 128):
        return "swapper"
    if height == width and height >= 112 and height % 16 == 0:
        return RECOGNITION
    return None


def _routes(folder: Path) -> list[tuple[Path, str | None]]:
    return [(f, _route(f)) for f in sorted(folder.glob("*.onnx"))]


def pack_available(root: str | Path | None, pack: str) -> bool:
    """True when the pack folder holds a detection and a recognition .onnx file."""
    folder = pack_path(root, pack)
    if not folder.is_dir():
        return False
    tasks = {task for _, task in _routes(folder)}
    return DETECTION in tasks and RECOGNITION in tasks


def default_providers() -> list[str]:
    """CUDA first where onnxruntime offers it, then the CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    providers = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
    return providers + ["CPUExecutionProvider"]


def _det_input_size(det_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(det_size, int):
        return det_size, det_size
    width, height = det_size
    return int(width), int(height)


class InsightFaceBackend:
    """SCRFD + ArcFace (+ 3D landmarks for pose) from one insightface model pack."""

    name = "insightface"
    chip_size = 112

    def __init__(
        self,
        pack_dir: str | Path | None = None,
        *,
        root: str | Path | None = None,
        pack: str = DEFAULT_PACK,
        det_size: int | tuple[int, int] = 640,
        det_thresh: float = 0.5,
        providers: Sequence[str] | None = None,
        detect_enabled: bool = True,
    ):
        # imported here: loading the backend is the only place that needs insightface
        from insightface.model_zoo import get_model

        folder = Path(pack_dir).expanduser() if pack_dir is not None else pack_path(root, pack)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"no insightface model pack at {folder}: download one (e.g. buffalo_l) into "
                f"{DEFAULT_ROOT} or name its folder"
            )
        self.pack_dir = folder.resolve()
        self.pack = folder.name
        self.det_input_size = _det_input_size(det_size)
        self.det_thresh = float(det_thresh)
        self.detect_enabled = detect_enabled
        requested = list(providers) if providers is not None else default_providers()

        wanted = {RECOGNITION, "landmark"} | ({DETECTION} if detect_enabled else set())
        models: dict[str, object] = {}
        for onnx_file, route in _routes(folder):
            if route not in wanted:
                continue
            model = get_model(str(onnx_file), providers=requested)
            # the first file (by name) of each task wins, as in FaceAnalysis
            if model is not None and model.taskname not in models:
                models[model.taskname] = model

        self._recognizer = models.get(RECOGNITION)
        if self._recognizer is None:
            raise RuntimeError(f"the insightface pack at {folder} has no recognition model")
        self._detector = models.get(DETECTION) if detect_enabled else None
        if detect_enabled and self._detector is None:
            raise RuntimeError(
                f"the insightface pack at {folder} has no detection model "
                "(pass detect_enabled=False to only embed chips)"
            )
        if self._detector is not None:
            if not self._detector.use_kps:
                raise RuntimeError(f"the detector {self._detector.model_file} gives no keypoints to align faces")
            self._detector.prepare(0, input_size=self.det_input_size, det_thresh=self.det_thresh)
        self._landmarker = models.get(LANDMARK_3D) if self._detector is not None else None

        rec_file = Path(self._recognizer.model_file)
        self.model_name = f"insightface_{self.pack}_{rec_file.stem}"
        self.dim = int(self._recognizer.output_shape[-1])
        self.chip_size = int(self._recognizer.input_size[0])

    def describe(self) -> dict:
        facts = {
            "backend": self.name,
            "model": self.model_name,
            "dim": self.dim,
            "pack": str(self.pack_dir),
            "recognition": Path(self._recognizer.model_file).name,
            "providers": ",".join(self._recognizer.session.get_providers()),
        }
        if self._detector is not None:
            w, h = self.det_input_size
            facts["detector"] = (
                f"SCRFD {Path(self._detector.model_file).name} ({w}x{h}, threshold {self.det_thresh})"
            )
            facts["detector_providers"] = ",".join(self._detector.session.get_providers())
            facts["pose"] = (
                f"3D landmarks {Path(self._landmarker.model_file).name}"
                if self._landmarker is not None
                else "5 keypoints"
            )
        return facts

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        if self._detector is None:
            raise RuntimeError(
                "detection is off for this InsightFaceBackend (built with detect_enabled=False); "
                "build it with a pack that has a detection model to detect faces"
            )
        from insightface.app.common import Face
        from insightface.utils.face_align import norm_crop

        image_bgr = np.ascontiguousarray(image_bgr)
        boxes, kpss = self._detector.detect(image_bgr, input_size=self.det_input_size)
        h, w = image_bgr.shape[:2]
        detections = []
        for row, kps in zip(boxes, kpss):
            x1, y1, x2, y2, score = (float(v) for v in row)
            kps = np.asarray(kps, dtype=np.float32).reshape(5, 2)
            if self._landmarker is not None:
                face = Face(bbox=row[:4].astype(np.float32), kps=kps, det_score=score)
                self._landmarker.get(image_bgr, face)
                pitch, yaw, roll = (float(v) for v in face["pose"])
            else:
                # SCRFD's 5 points: eye at smaller x, the other eye, nose tip, mouth corners.
                yaw, pitch, roll = pose_from_points(kps[0], kps[1], kps[2])
            detections.append(
                Detection(
                    box=(max(0.0, x1), max(0.0, y1), min(w - 1.0, x2), min(h - 1.0, y2)),
                    score=score,
                    landmarks=kps,
                    yaw=yaw,
                    pitch=pitch,
                    roll=roll,
                    chip=norm_crop(image_bgr, kps, image_size=self.chip_size),
                )
            )
        return detections

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        feats = self._recognizer.get_feat([np.ascontiguousarray(c) for c in chips])
        return l2_normalise(np.asarray(feats, dtype=np.float32).reshape(len(chips), self.dim))
