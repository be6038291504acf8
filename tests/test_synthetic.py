"""The synthetic videos are what the other tests trust: check them against dlib itself."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from tests import synthetic

dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def hog():
    detector = dlib.get_frontal_face_detector()

    def detect(frame_bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
        rects = detector(np.ascontiguousarray(frame_bgr[:, :, ::-1]), 1)
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]

    return detect


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _read(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_package_faces_are_distinct_people_with_stable_ids():
    photos = synthetic.package_faces()
    persons = [p.person for p in photos]
    assert len(set(persons)) == len(persons)
    assert {"astronaut", "tom_hanks"} <= set(persons)
    assert sum(p.startswith("t1_") for p in persons) >= 4
    for p in photos:
        h, w = p.image.shape[:2]
        assert 160 <= w <= 220 and p.image.dtype == np.uint8 and p.image.shape[2] == 3
        x1, y1, x2, y2 = p.face_box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    assert synthetic.package_faces()[0] is photos[0]  # cached in-process


def test_two_people_walking_is_found_by_hog(tmp_path, hog):
    scene = synthetic.two_people_walking()
    started = time.perf_counter()
    gt = synthetic.write_video(scene, tmp_path / "walk.avi")
    assert time.perf_counter() - started < 1.0  # 640x480, 3 s at 10 fps
    frames = _read(tmp_path / "walk.avi")
    assert len(frames) == gt.frame_count == 30
    assert frames[0].shape == (480, 640, 3)
    assert len(gt.persons) == 2 and gt.cuts == []

    hits = {person: 0 for person in gt.persons}
    for frame, faces in zip(frames, gt.frames):
        assert len(faces) == 2
        found = hog(frame)
        for face in faces:
            hits[face.person] += any(_iou(face.box, box) > 0.3 for box in found)
    for person, n in hits.items():
        assert n >= 0.9 * len(frames), (person, n)

    # Both really move across the frame, in opposite directions.
    first = {f.person: f.box for f in gt.frames[0]}
    last = {f.person: f.box for f in gt.frames[-1]}
    moves = sorted(last[p][0] - first[p][0] for p in gt.persons)
    assert moves[0] < -300 and moves[1] > 300


def test_cut_and_return(tmp_path, hog):
    gt = synthetic.write_video(synthetic.cut_and_return(), tmp_path / "cut.avi", save_gt=True)
    frames = _read(tmp_path / "cut.avi")
    assert len(frames) == gt.frame_count
    assert len(gt.cuts) == 2

    # The ground truth round-trips through its JSON file next to the video.
    assert (tmp_path / "cut.gt.json").exists()
    assert synthetic.GroundTruth.load(tmp_path / "cut.avi") == gt

    # P and Q, then R alone, then P again: P's two sightings are separated by R's shot.
    by_shot: dict[int, list[str]] = {}
    for person, shot, _, _ in gt.segments():
        by_shot.setdefault(shot, []).append(person)
    assert len(by_shot[0]) == 2 and len(by_shot[1]) == 1 and len(by_shot[2]) == 1
    assert by_shot[1][0] not in by_shot[0]
    assert by_shot[2][0] in by_shot[0]

    # A plain frame-difference cut detector sees exactly the ground-truth cuts.
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32) for f in frames]
    diffs = np.array([np.abs(b - a).mean() for a, b in zip(gray, gray[1:])])
    cut_diffs = diffs[[c - 1 for c in gt.cuts]]
    others = np.delete(diffs, [c - 1 for c in gt.cuts])
    assert cut_diffs.min() > 3 * others.max()

    # The detector finds every ground-truth face at the start of each shot.
    for start, _ in gt.shots:
        found = hog(frames[start])
        for face in gt.frames[start]:
            assert any(_iou(face.box, box) > 0.3 for box in found), (start, face)


def test_faceless_has_no_faces(tmp_path, hog):
    gt = synthetic.write_video(synthetic.faceless(), tmp_path / "faceless.avi")
    frames = _read(tmp_path / "faceless.avi")
    assert len(frames) == gt.frame_count and gt.persons == [] and len(gt.cuts) == 1
    assert all(hog(frame) == [] for frame in frames[::2])


def test_sized_and_partial_visibility(tmp_path):
    scene = synthetic.sized(1280, 720, seconds=1.0, people=3)
    gt = synthetic.write_video(scene, tmp_path / "big.avi")
    frames = _read(tmp_path / "big.avi")
    assert frames[0].shape == (720, 1280, 3) and len(frames) == gt.frame_count == 10
    assert len(gt.persons) == 3 and all(len(faces) == 3 for faces in gt.frames)

    # An actor entering late, walking off the right edge and crossing in front of another.
    a, b = synthetic.package_faces()[:2]
    actors = [synthetic.Actor(b, (0.5, 0.5)), synthetic.Actor(a, (0.1, 0.5), (1.2, 0.5), enter=2)]
    shot = synthetic.Shot(10, synthetic.background_for(1), actors)
    gt = synthetic.write_video([shot], tmp_path / "partial.avi")
    assert [len(f) for f in gt.frames[:3]] == [1, 1, 2]
    hidden = [f for faces in gt.frames for f in faces if f.person == b.person and f.visible < 0.5]
    assert hidden  # a's crop covers b's face as it passes
    assert all(0 <= f.box[0] <= f.box[2] <= 640 for faces in gt.frames for f in faces)
