"""Per-face quality measures: size, sharpness and an approximate head pose from 5 points."""

from __future__ import annotations

import math

import cv2
import numpy as np

# Frontal geometry of an average adult face, in units of the distance between the eye
# centres: the nose point sits this far below the eye line (dlib's subnasale, insightface's
# nose tip are close enough for a coarse estimate) and this far in front of the eye plane.
_NOSE_DROP = 0.78
_NOSE_DEPTH = 0.55
# a nose *tip* (YuNet's, SCRFD's third point) sits higher: 0.57 eye distances in the ArcFace
# 5-point template ((71.74 - 51.60) / 35.24)
NOSE_TIP_DROP = 0.57


def blur_score(chip_bgr: np.ndarray, face_px: float | None = None) -> float:
    """Variance of the Laplacian of a grey copy of the chip: higher is sharper.

    The chip is first resized to the resolution the face really has in the frame: the
    face's size `face_px` times 1.5 (the aligned chips hold the face with a quarter of its
    size as margin on each side), at most 112 px. A small face is then judged on its own
    pixels: enlarging a sharp 45-px face to 112 px would smooth it and read as blurred.
    Without `face_px` every chip is compared at 112 px.
    """
    side = 112 if face_px is None else int(np.clip(round(1.5 * face_px), 24, 112))
    grey = cv2.cvtColor(chip_bgr, cv2.COLOR_BGR2GRAY)
    interp = cv2.INTER_AREA if grey.shape[0] >= side else cv2.INTER_LINEAR
    grey = cv2.resize(grey, (side, side), interpolation=interp)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def pose_from_points(
    left_eye: np.ndarray, right_eye: np.ndarray, nose: np.ndarray, nose_drop: float = _NOSE_DROP
) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the two eye centres and the nose point.

    `left_eye` is the eye with the smaller x in the image. A coarse, model-free estimate:
    roll is the eye line's angle; yaw and pitch come from how far the nose point moves off
    where it sits on a frontal face, relative to the eye distance. Good to about 10-15
    degrees, which is what a quality gate needs.
    """
    left_eye, right_eye, nose = (np.asarray(p, dtype=np.float64) for p in (left_eye, right_eye, nose))
    delta = right_eye - left_eye
    eye_dist = float(np.hypot(*delta))
    if eye_dist < 1e-6:
        return 90.0, 0.0, 0.0
    roll = math.degrees(math.atan2(delta[1], delta[0]))
    c, s = math.cos(math.radians(-roll)), math.sin(math.radians(-roll))
    offset = nose - (left_eye + right_eye) / 2
    u = (c * offset[0] - s * offset[1]) / eye_dist
    v = (s * offset[0] + c * offset[1]) / eye_dist
    # A turned head also shortens the visible eye distance; the nose offset still grows
    # with sin(yaw), so clip and invert.
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, u / _NOSE_DEPTH))))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, (nose_drop - v) / _NOSE_DEPTH))))
    return yaw, pitch, roll
