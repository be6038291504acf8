import cv2
import numpy as np
import pytest

from reid_pipeline.quality import blur_score, pose_from_points


def test_frontal_face_has_no_pose():
    yaw, pitch, roll = pose_from_points((40, 50), (80, 50), (60, 50 + 0.78 * 40))
    assert (yaw, pitch, roll) == pytest.approx((0, 0, 0), abs=1e-6)


def test_turned_and_tilted_faces():
    yaw, _, _ = pose_from_points((40, 50), (80, 50), (72, 81))
    assert yaw > 25
    yaw, _, _ = pose_from_points((40, 50), (80, 50), (48, 81))
    assert yaw < -25
    _, _, roll = pose_from_points((40, 50), (80, 90), (50, 100))
    assert roll == pytest.approx(45, abs=1e-6)
    _, pitch, _ = pose_from_points((40, 50), (80, 50), (60, 60))
    assert pitch > 30


def test_blur_score_prefers_sharp_chips():
    rng = np.random.default_rng(0)
    sharp = (rng.random((150, 150, 3)) * 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 3)
    assert blur_score(sharp) > 10 * blur_score(blurred)
