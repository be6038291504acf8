import cv2
import numpy as np
import pytest

from reid_pipeline.faces.quality import blur_score, pose_from_points


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


def test_a_small_sharp_face_is_judged_at_its_own_resolution():
    """A 40-px face enlarged into a 150-px chip looks soft at 112 px; at the face's own
    resolution it is sharp, and a blurred one still reads as blurred."""
    from tests import synthetic

    photo = synthetic.face_by_person("astronaut")
    x1, y1, x2, y2 = photo.face_box
    m = (x2 - x1) // 4
    chip = cv2.resize(photo.image[max(0, y1 - m): y2 + m, max(0, x1 - m): x2 + m], (150, 150), interpolation=cv2.INTER_AREA)
    small = cv2.resize(cv2.resize(chip, (60, 60), interpolation=cv2.INTER_AREA), (150, 150), interpolation=cv2.INTER_CUBIC)
    blurred = cv2.GaussianBlur(small, (0, 0), 6)
    assert blur_score(small, 40) > 3 * blur_score(small)
    assert blur_score(blurred, 40) < blur_score(small, 40) / 3
    assert blur_score(chip, 150) == blur_score(chip)  # big faces: unchanged
