"""dlib backend: HOG detector, 5-point landmarks, 128-d ResNet descriptor.

Its weights ship on PyPI in `face-recognition-models`, so it works offline on a fresh
machine. It is the default where no insightface pack is available. The descriptor runs on
ONNX Runtime (`dlib_onnx`: the same network and weights, read from dlib's file), about 15
times faster than dlib's own build, which has no BLAS.
"""

from __future__ import annotations

import importlib.util
import pickle
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from reid_pipeline.faces.base import Detection, l2_normalise, near_crops, suppress_overlaps
from reid_pipeline.faces.dlib_onnx import DlibDescriptor, cached_file
from reid_pipeline.faces.quality import pose_from_points

MODEL_NAME = "dlib_resnet_v1"
NEAR_MARGIN = 1.5  # face widths searched on each side of a face seen on the previous sampled frame
NEAR_FACE_PX = 110  # the face is scaled to about this height there (HOG's window is 80 px)
# where a face was just seen, a weaker detection is taken: HOG scores small blurred faces
# near its threshold, and without the slack a face missed once stays lost until the next
# whole-frame search (bench/accuracy.py, hard profile: recall 0.86 -> 0.91 on one video)
NEAR_SCORE_SLACK = 0.3


def _models_dir() -> Path:
    # face_recognition_models imports pkg_resources on import (gone in setuptools 81+), so
    # locate its files without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the dlib models are missing: pip install face-recognition-models")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class DlibBackend:
    """HOG + 5-point shape predictor + ResNet descriptor, all on the CPU."""

    name = "dlib"
    model_name = MODEL_NAME
    dim = 128
    chip_size = 150
    # a whole (upsampled) HOG search costs about ten near searches: once a second, near
    # searches between (BENCHMARKS.md, "Speed")
    full_detect_s = 1.0
    detect_threads = 2  # HOG releases the GIL: two frames searched at once

    def __init__(self, upsample: int = 1, min_score: float = 0.0, max_side: int = 1280, cache_dir: Path | None = None):
        import dlib  # imported here: loading the backend is the only place that needs it

        models = _models_dir()
        self._shape_path = str(models / "shape_predictor_5_face_landmarks.dat")
        # dlib's detector and shape predictor are not safe to share between threads
        # (concurrent `run` calls crash): one of each per thread that detects. Building the
        # HOG detector takes 0.3 s (it parses its text form), loading it from the cache 1 ms;
        # a thread's copy is unpickled from this one in 2 ms.
        self._local = threading.local()
        cached = cached_file(cache_dir, f"frontal_face_detector-dlib{dlib.__version__}.svm",
                             lambda path: dlib.get_frontal_face_detector().save(str(path)))
        detector = dlib.fhog_object_detector(str(cached)) if cached else dlib.get_frontal_face_detector()
        self._detector_state = pickle.dumps(detector)
        self._descriptor = DlibDescriptor(models / "dlib_face_recognition_resnet_model_v1.dat", cache_dir)
        self._dlib = dlib
        self.upsample = upsample
        self.min_score = min_score
        self.max_side = max_side

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "model": self.model_name,
            "dim": self.dim,
            "detector": f"dlib HOG (upsample {self.upsample}, frames scaled to <= {self.max_side} px)",
            "providers": "CPU",
            "descriptor_runtime": self._descriptor.runtime,
        }

    def _models(self):
        local = self._local
        if not hasattr(local, "detector"):
            local.detector = pickle.loads(self._detector_state)
            local.shape = self._dlib.shape_predictor(self._shape_path)
        return local.detector, local.shape

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        detector, _ = self._models()
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        scale = min(1.0, self.max_side / max(rgb.shape[:2]))
        small = rgb if scale == 1.0 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rects, scores, _ = detector.run(small, self.upsample, self.min_score)
        found = [((r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale), s) for r, s in zip(rects, scores)]
        return self._describe(rgb, found)

    def detect_near(self, image_bgr: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]) -> list[Detection]:
        """Faces in the neighbourhood of `boxes` (faces seen on the previous sampled frame):
        each region, `NEAR_MARGIN` face widths around its box, is scaled so the face is about
        `NEAR_FACE_PX` high and searched without upsampling, with the detector's threshold
        lowered by `NEAR_SCORE_SLACK`. A few small crops instead of the whole upsampled
        frame: about a tenth of the cost for faces of 40-200 px."""
        detector, _ = self._models()
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        found = []
        for crop, left, top, scale in near_crops(rgb, boxes, NEAR_MARGIN, NEAR_FACE_PX):
            rects, scores, _ = detector.run(crop, 0, self.min_score - NEAR_SCORE_SLACK)
            for r, s in zip(rects, scores):
                found.append(((left + r.left() / scale, top + r.top() / scale, left + r.right() / scale, top + r.bottom() / scale), s))
        return self._describe(rgb, suppress_overlaps(found))

    def _describe(self, rgb: np.ndarray, found: list[tuple[tuple[float, float, float, float], float]]) -> list[Detection]:
        """Landmarks, head pose and aligned chip for each (box, score) in full-frame pixels."""
        _, shape_predictor = self._models()
        h, w = rgb.shape[:2]
        detections = []
        for (left, top, right, bottom), score in found:
            r = self._dlib.rectangle(int(left), int(top), int(right), int(bottom))
            shape = shape_predictor(rgb, r)
            points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
            # dlib's 5 points: two corners of each eye, then the base of the nose.
            eyes = sorted([points[0:2].mean(axis=0), points[2:4].mean(axis=0)], key=lambda p: p[0])
            yaw, pitch, roll = pose_from_points(eyes[0], eyes[1], points[4])
            chip_rgb = self._dlib.get_face_chip(rgb, shape, size=self.chip_size, padding=0.25)
            box = (
                float(max(0, r.left())),
                float(max(0, r.top())),
                float(min(w - 1, r.right())),
                float(min(h - 1, r.bottom())),
            )
            detections.append(
                Detection(
                    box=box,
                    score=float(score),
                    landmarks=points,
                    yaw=yaw,
                    pitch=pitch,
                    roll=roll,
                    chip=cv2.cvtColor(chip_rgb, cv2.COLOR_RGB2BGR),
                )
            )
        return detections

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # dlib's descriptors have a norm of about 1.4; normalise so cosine is a dot product.
        return l2_normalise(self._descriptor(np.stack(chips)[:, :, :, ::-1]))
