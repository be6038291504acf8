"""Synthetic test videos with ground truth, composed from real face photos.

Tests and benchmarks need videos where the answer is known: who is on screen in which frame,
where their face is, and where the cuts are. This module pastes real face photos (the ones
that installed packages ship, or a folder of photos such as LFW) onto simple backgrounds,
moves them about, and writes the result with OpenCV together with its `GroundTruth`.

    scene = two_people_walking()
    gt = write_video(scene, tmp_path / "walk.avi")      # MJPG in .avi: OpenCV's wheel writes it
    gt.frames[12]   # [FaceTruth(person="astronaut", box=(x1, y1, x2, y2), shot=0, ...), ...]
    gt.cuts         # first frame index of every shot after the first

Positions are fractions of the frame (so one scene renders at any size); scales are in the
photo's own pixels (1.0 = a face about 100 px wide for package photos). Only numpy, OpenCV
and, to find faces in photos, dlib are used; nothing here imports insightface or skimage.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from reid_pipeline.faces.base import box_iou

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels, x2/y2 exclusive

FACE_WIDTH_PX = 100  # package photos are resized so the detected face is this wide
_MARGIN_SIDE = 0.45  # crop margins around the dlib box, in face widths: head and shoulders
_MARGIN_TOP = 0.55
_MARGIN_BOTTOM = 0.65
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


# --------------------------------------------------------------------------- face photos


@dataclass(frozen=True, eq=False)
class FacePhoto:
    """A head-and-shoulders crop of one real person, ready to paste into a frame."""

    person: str  # stable id: "astronaut", "tom_hanks", "t1_0".., or a folder name
    image: np.ndarray  # BGR uint8, read-only
    face_box: Box  # the face (dlib HOG box) inside `image`
    source: str = ""  # where the crop came from, for reports

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    @functools.cached_property
    def alpha(self) -> np.ndarray:
        """Feathered paste mask (float32, HxWx1): solid in the middle, soft at the border."""
        h, w = self.image.shape[:2]
        feather = max(2, int(0.08 * min(w, h)))
        ramp_x = np.clip(np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5) / feather, 0, 1)
        ramp_y = np.clip(np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5) / feather, 0, 1)
        return np.outer(ramp_y, ramp_x).astype(np.float32)[:, :, None]


def _package_dir(package: str) -> Path:
    # find_spec on a top-level package only locates it; insightface and skimage stay unimported.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {package!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=1)
def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


def _hog_boxes(image_bgr: np.ndarray, upsample: int = 1) -> list[tuple[Box, float]]:
    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
    rects, scores, _ = _hog().run(rgb, upsample, 0.0)
    return [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]


def _crop_around(image: np.ndarray, face: Box, person: str, source: str) -> FacePhoto:
    """Cut a head-and-shoulders crop around a detected face, normalised to FACE_WIDTH_PX."""
    x1, y1, x2, y2 = face
    fw = x2 - x1
    s = FACE_WIDTH_PX / fw
    cx1, cx2 = x1 - _MARGIN_SIDE * fw, x2 + _MARGIN_SIDE * fw
    cy1, cy2 = y1 - _MARGIN_TOP * fw, y2 + _MARGIN_BOTTOM * fw
    # Photos cropped tight (Tom Hanks is a 112 px aligned face) are padded by replicating the
    # edge: reflecting could mirror half a face into the margin and fool the detector.
    pad = int(math.ceil(max(0, -cx1, -cy1, cx2 - image.shape[1], cy2 - image.shape[0]))) + 1
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
    ix1, iy1 = int(round(cx1)) + pad, int(round(cy1)) + pad
    ix2, iy2 = int(round(cx2)) + pad, int(round(cy2)) + pad
    crop = padded[iy1:iy2, ix1:ix2]
    out_w, out_h = int(round(crop.shape[1] * s)), int(round(crop.shape[0] * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    crop = np.ascontiguousarray(cv2.resize(crop, (out_w, out_h), interpolation=interp))
    crop.setflags(write=False)
    fx1, fy1 = (x1 + pad - ix1) * s, (y1 + pad - iy1) * s
    box = (int(round(fx1)), int(round(fy1)), int(round(fx1 + fw * s)), int(round(fy1 + (y2 - y1) * s)))
    return FacePhoto(person=person, image=crop, face_box=box, source=source)


def redetected(photo: FacePhoto, scales: Sequence[float] = (1.0, 1.5), background: int = 110) -> bool:
    """True when dlib HOG (upsample 1) finds exactly this face, and nothing else, at each scale.

    The photo is pasted (with its feathered mask) on a plain canvas, as `write_video` would.
    """
    for scale in scales:
        img, alpha = _scaled(photo, scale)
        h, w = img.shape[:2]
        m = 32
        canvas = np.full((h + 2 * m, w + 2 * m, 3), background, np.float32)
        canvas[m : m + h, m : m + w] = img * alpha + canvas[m : m + h, m : m + w] * (1 - alpha)
        canvas = canvas.astype(np.uint8)
        want = [m + v * scale for v in photo.face_box]
        found = _hog_boxes(canvas)
        if len(found) != 1 or box_iou(found[0][0], want) < 0.4:
            return False
    return True


@functools.lru_cache(maxsize=1)
def _package_faces() -> tuple[FacePhoto, ...]:
    photos: list[FacePhoto] = []
    images = _package_dir("insightface") / "data" / "images"

    astronaut_file = _package_dir("skimage") / "data" / "astronaut.png"
    if astronaut_file.exists():
        astronaut = cv2.imread(str(astronaut_file), cv2.IMREAD_COLOR)
    else:  # a layout without the bundled file: let skimage fetch/build it
        import skimage.data

        astronaut = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    # The astronaut photo has a weak second hit on the suit's badge: take the best one.
    best = max(_hog_boxes(astronaut), key=lambda f: f[1])[0]
    photos.append(_crop_around(astronaut, best, "astronaut", "skimage:astronaut.png"))

    hanks = cv2.imread(str(images / "Tom_Hanks_54745.png"), cv2.IMREAD_COLOR)
    best = max(_hog_boxes(hanks), key=lambda f: f[1])[0]
    photos.append(_crop_around(hanks, best, "tom_hanks", "insightface:Tom_Hanks_54745.png"))

    group = cv2.imread(str(images / "t1.jpg"), cv2.IMREAD_COLOR)
    # Number the group's faces left to right so an id names the same face on every machine,
    # even when one of them is dropped below.
    faces = sorted((box for box, _ in _hog_boxes(group)), key=lambda b: b[0])
    for i, box in enumerate(faces):
        photos.append(_crop_around(group, box, f"t1_{i}", f"insightface:t1.jpg#{i}"))

    return tuple(p for p in photos if redetected(p))


def package_faces() -> list[FacePhoto]:
    """The distinct real people shipped by installed packages, one crop each (cached).

    Ids: "astronaut" (skimage), "tom_hanks" and "t1_0".."t1_5" (insightface's group photo,
    left to right). Only crops that dlib HOG re-detects when pasted at scale 1.0 and 1.5 are
    kept. The first call takes about a second (dlib on the photos).
    """
    return list(_package_faces())


def face_by_person(person: str) -> FacePhoto:
    """The package photo of one person id, e.g. `face_by_person("tom_hanks")`."""
    for photo in _package_faces():
        if photo.person == person:
            return photo
    raise KeyError(f"no package photo of {person!r}; have {[p.person for p in _package_faces()]}")


def photos_from_folder(
    folder: str | Path, per_person: int | None = None, max_people: int | None = None, check: bool = False
) -> list[FacePhoto]:
    """Crops from a folder of people, `folder/<Name>/*.jpg` (LFW's layout); id = folder name.

    A folder holding images directly counts as one person named after the folder. Photos
    where dlib HOG finds no face are skipped; with several faces the biggest one is taken.
    `check=True` also drops crops that `redetected` rejects (slower). Sorted by person, file.
    """
    folder = Path(folder)
    people = sorted(p for p in folder.iterdir() if p.is_dir())
    if not people and any(f.suffix.lower() in _IMAGE_SUFFIXES for f in folder.iterdir()):
        people = [folder]
    photos: list[FacePhoto] = []
    for person_dir in people[:max_people]:
        kept = 0
        for file in sorted(person_dir.iterdir()):
            if file.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                continue
            found = _hog_boxes(image)
            if not found:
                continue
            box = max(found, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))[0]
            photo = _crop_around(image, box, person_dir.name, str(file))
            if check and not redetected(photo):
                continue
            photos.append(photo)
            kept += 1
            if per_person is not None and kept >= per_person:
                break
    return photos


# --------------------------------------------------------------------------- scenes


Colour = tuple[int, int, int]  # BGR


@dataclass(frozen=True)
class Background:
    """A shot's backdrop: "plain" (colour), "gradient" (colour -> colour2, top to bottom) or
    "noise" (smooth blotches mixing colour and colour2, from `seed`)."""

    kind: str = "plain"
    colour: Colour = (110, 110, 110)
    colour2: Colour = (200, 200, 200)
    seed: int = 0

    def render(self, width: int, height: int) -> np.ndarray:
        c1 = np.array(self.colour, np.float32)
        c2 = np.array(self.colour2, np.float32)
        if self.kind == "plain":
            return np.full((height, width, 3), self.colour, np.uint8)
        if self.kind == "gradient":
            t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
            col = c1 * (1 - t) + c2 * t
            return np.ascontiguousarray(np.broadcast_to(col, (height, width, 3))).astype(np.uint8)
        if self.kind == "noise":
            rng = np.random.default_rng(self.seed)
            coarse = rng.random((max(2, height // 48), max(2, width // 48)), dtype=np.float32)
            t = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
            t = np.clip(t, 0, 1)[:, :, None]
            return (c1 * (1 - t) + c2 * t).astype(np.uint8)
        raise ValueError(f"unknown background kind {self.kind!r}")


# Backgrounds far apart in colour and brightness, so consecutive shots differ at a glance.
PALETTE: tuple[Background, ...] = (
    Background("gradient", (70, 110, 150), (200, 220, 235)),
    Background("plain", (60, 140, 60)),
    Background("noise", (150, 60, 40), (230, 180, 120), seed=1),
    Background("gradient", (40, 40, 40), (120, 120, 180)),
    Background("noise", (200, 200, 210), (90, 160, 200), seed=2),
    Background("plain", (170, 60, 150)),
)


def background_for(index: int) -> Background:
    """The `index`-th palette background (cycling): neighbours always differ strongly."""
    return PALETTE[index % len(PALETTE)]


@dataclass
class Actor:
    """One person in one shot: moves from `start` to `end` (centre of the crop, as fractions
    of frame width/height) while the scale goes from `scale` to `end_scale`, on screen from
    frame `enter` to `leave` (exclusive; None = end of shot), brightness from
    `brightness[0]` to `brightness[1]` (a gain on the photo)."""

    face: FacePhoto
    start: tuple[float, float] = (0.5, 0.5)
    end: tuple[float, float] | None = None  # None = stays at start
    scale: float = 1.0
    end_scale: float | None = None
    enter: int = 0
    leave: int | None = None
    brightness: tuple[float, float] = (1.0, 1.0)


@dataclass
class Shape:
    """A moving flat shape (for face-free footage): "circle", "rect", "ellipse" or "triangle".
    Positions as fractions of the frame, `size` in pixels."""

    kind: str
    colour: Colour
    start: tuple[float, float]
    end: tuple[float, float]
    size: int = 60


@dataclass
class Shot:
    """`frames` frames between two cuts: a background, shapes, then actors drawn in order.
    `lighting` is a gain on the whole frame going from its first to its second value over
    the frames `fade` (start, end; None = the whole shot): a fade, an exposure change;
    `tint` multiplies B, G, R at the end of the fade, growing from none at its start (a
    white-balance drift)."""

    frames: int
    background: Background = field(default_factory=Background)
    actors: list[Actor] = field(default_factory=list)
    shapes: list[Shape] = field(default_factory=list)
    lighting: tuple[float, float] = (1.0, 1.0)
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    fade: tuple[int, int] | None = None


@dataclass
class Scene:
    """Shots played one after another, with the size and fps they were laid out for."""

    shots: list[Shot]
    size: tuple[int, int] = (640, 480)
    fps: float = 10.0

    def __iter__(self) -> Iterator[Shot]:
        return iter(self.shots)

    def __len__(self) -> int:
        return len(self.shots)

    def __getitem__(self, i: int) -> Shot:
        return self.shots[i]

    @property
    def frame_count(self) -> int:
        return sum(s.frames for s in self.shots)


# --------------------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class FaceTruth:
    """One person's face in one frame."""

    person: str
    box: Box  # the face (detector-style box), clipped to the frame
    region: Box  # the whole pasted crop, clipped to the frame
    shot: int
    visible: float  # share of the face box inside the frame and not covered by a later actor


@dataclass
class GroundTruth:
    """What `write_video` drew. `frames[i]` lists the faces in frame i; `cuts` holds the first
    frame of every shot after the first (a cut lies between frames c-1 and c)."""

    fps: float
    size: tuple[int, int]
    frames: list[list[FaceTruth]]
    cuts: list[int]
    shots: list[tuple[int, int]]  # (first frame, end frame exclusive) per shot

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    @property
    def persons(self) -> list[str]:
        return sorted({f.person for faces in self.frames for f in faces})

    def segments(self, min_visible: float = 0.0) -> list[tuple[str, int, int, int]]:
        """Continuous sightings as (person, shot, first frame, last frame inclusive): what a
        perfect tracker would turn into sequences. A cut always ends a segment; a frame counts
        only when the face's `visible` share exceeds `min_visible` (fully covered = absent)."""
        out: list[tuple[str, int, int, int]] = []
        open_: dict[tuple[str, int], int] = {}
        last: dict[tuple[str, int], int] = {}
        for i, faces in enumerate(self.frames):
            here = {(f.person, f.shot) for f in faces if f.visible > min_visible}
            for key in here:
                if key not in open_ or last[key] != i - 1:
                    if key in open_:
                        out.append((key[0], key[1], open_[key], last[key]))
                    open_[key] = i
                last[key] = i
        for key, first in open_.items():
            out.append((key[0], key[1], first, last[key]))
        return sorted(out, key=lambda s: (s[2], s[0]))

    def person_at(self, frame_index: int, box: Sequence[float], min_iou: float = 0.3) -> str | None:
        """The person whose face box in that frame overlaps `box` best (IoU >= min_iou)."""
        best, best_iou = None, min_iou
        for face in self.frames[frame_index]:
            iou = box_iou(face.box, box)
            if iou >= best_iou:
                best, best_iou = face.person, iou
        return best

    def label(self, detections) -> list[str | None]:
        """Ground-truth person per detection row (a polars frame with frame_index, x1..y2)."""
        return [
            self.person_at(f, (x1, y1, x2, y2))
            for f, x1, y1, x2, y2 in detections.select("frame_index", "x1", "y1", "x2", "y2").iter_rows()
        ]

    def to_dict(self) -> dict:
        return {
            "fps": self.fps,
            "size": list(self.size),
            "cuts": self.cuts,
            "shots": [list(s) for s in self.shots],
            "frames": [[asdict(f) for f in faces] for faces in self.frames],
        }

    @classmethod
    def from_dict(cls, d: dict) -> GroundTruth:
        frames = [
            [
                FaceTruth(f["person"], tuple(f["box"]), tuple(f["region"]), f["shot"], f["visible"])
                for f in faces
            ]
            for faces in d["frames"]
        ]
        return cls(d["fps"], tuple(d["size"]), frames, list(d["cuts"]), [tuple(s) for s in d["shots"]])

    def save(self, path: str | Path) -> Path:
        """Write JSON to `path`; a video path becomes its sibling `<stem>.gt.json`."""
        path = gt_path_for(path)
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> GroundTruth:
        """Read what `save` wrote; a video path is mapped to its `<stem>.gt.json`."""
        return cls.from_dict(json.loads(gt_path_for(path).read_text()))


def gt_path_for(path: str | Path) -> Path:
    """`clip.avi` -> `clip.gt.json`; a path already ending in .json is kept."""
    path = Path(path)
    return path if path.suffix == ".json" else path.with_name(path.stem + ".gt.json")


# --------------------------------------------------------------------------- rendering


def _scaled(photo: FacePhoto, scale: float) -> tuple[np.ndarray, np.ndarray]:
    if abs(scale - 1.0) < 1e-3:
        return photo.image.astype(np.float32), photo.alpha
    w, h = photo.size
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    img = cv2.resize(photo.image, size, interpolation=interp).astype(np.float32)
    alpha = cv2.resize(photo.alpha, size, interpolation=cv2.INTER_LINEAR)[:, :, None]
    return img, alpha


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _draw_shape(frame: np.ndarray, shape: Shape, t: float) -> None:
    h, w = frame.shape[:2]
    cx = int(round(_lerp(shape.start[0], shape.end[0], t) * w))
    cy = int(round(_lerp(shape.start[1], shape.end[1], t) * h))
    r = shape.size // 2
    if shape.kind == "circle":
        cv2.circle(frame, (cx, cy), r, shape.colour, -1, cv2.LINE_AA)
    elif shape.kind == "rect":
        cv2.rectangle(frame, (cx - r, cy - r // 2), (cx + r, cy + r // 2), shape.colour, -1)
    elif shape.kind == "ellipse":
        cv2.ellipse(frame, (cx, cy), (r, r // 2), 360 * t, 0, 360, shape.colour, -1, cv2.LINE_AA)
    elif shape.kind == "triangle":
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(frame, [pts], shape.colour, cv2.LINE_AA)
    else:
        raise ValueError(f"unknown shape kind {shape.kind!r}")


def _clip(box: Sequence[float], w: int, h: int) -> Box:
    return (
        int(min(max(box[0], 0), w)),
        int(min(max(box[1], 0), h)),
        int(min(max(box[2], 0), w)),
        int(min(max(box[3], 0), h)),
    )


def render_frames(
    scene: Scene | Sequence[Shot], size: tuple[int, int] | None = None
) -> Iterator[tuple[np.ndarray, list[FaceTruth]]]:
    """Yield (BGR frame, faces in it) for every frame of the scene, without writing a file."""
    if size is None:
        size = scene.size if isinstance(scene, Scene) else (640, 480)
    width, height = size
    for shot_index, shot in enumerate(scene):
        backdrop = shot.background.render(width, height)
        for k in range(shot.frames):
            t_shot = k / max(1, shot.frames - 1)
            frame = backdrop.copy()
            for shape in shot.shapes:
                _draw_shape(frame, shape, t_shot)
            placed: list[tuple[Actor, tuple[int, int, int, int], tuple[float, float, float, float]]] = []
            for actor in shot.actors:
                leave = shot.frames if actor.leave is None else actor.leave
                if not actor.enter <= k < leave:
                    continue
                t = (k - actor.enter) / max(1, leave - 1 - actor.enter)
                end = actor.start if actor.end is None else actor.end
                scale = _lerp(actor.scale, actor.scale if actor.end_scale is None else actor.end_scale, t)
                gain = _lerp(actor.brightness[0], actor.brightness[1], t)
                img, alpha = _scaled(actor.face, scale)
                ph, pw = img.shape[:2]
                x0 = int(round(_lerp(actor.start[0], end[0], t) * width - pw / 2))
                y0 = int(round(_lerp(actor.start[1], end[1], t) * height - ph / 2))
                # Paste the part of the crop that lies inside the frame.
                fx1, fy1, fx2, fy2 = max(0, x0), max(0, y0), min(width, x0 + pw), min(height, y0 + ph)
                if fx1 >= fx2 or fy1 >= fy2:
                    continue
                src = img[fy1 - y0 : fy2 - y0, fx1 - x0 : fx2 - x0]
                a = alpha[fy1 - y0 : fy2 - y0, fx1 - x0 : fx2 - x0]
                if gain != 1.0:
                    src = src * gain
                dst = frame[fy1:fy2, fx1:fx2].astype(np.float32)
                frame[fy1:fy2, fx1:fx2] = np.clip(src * a + dst * (1 - a), 0, 255).astype(np.uint8)
                fb = actor.face.face_box
                face = (x0 + fb[0] * scale, y0 + fb[1] * scale, x0 + fb[2] * scale, y0 + fb[3] * scale)
                placed.append((actor, (fx1, fy1, fx2, fy2), face))
            if shot.lighting != (1.0, 1.0) or shot.tint != (1.0, 1.0, 1.0):
                f0, f1 = shot.fade or (0, shot.frames - 1)
                t_fade = min(1.0, max(0.0, (k - f0) / max(1, f1 - f0)))
                gain = _lerp(shot.lighting[0], shot.lighting[1], t_fade)
                channels = np.array([_lerp(1.0, c, t_fade) for c in shot.tint], np.float32) * gain
                frame = np.clip(frame.astype(np.float32) * channels, 0, 255).astype(np.uint8)
            faces: list[FaceTruth] = []
            for i, (actor, region, face) in enumerate(placed):
                full = max(1.0, (face[2] - face[0]) * (face[3] - face[1]))
                box = _clip(face, width, height)
                bw, bh = box[2] - box[0], box[3] - box[1]
                if bw <= 0 or bh <= 0:
                    continue
                covered = np.zeros((bh, bw), bool)
                for _, later, _ in placed[i + 1 :]:
                    cx1, cy1 = max(later[0], box[0]) - box[0], max(later[1], box[1]) - box[1]
                    cx2, cy2 = min(later[2], box[2]) - box[0], min(later[3], box[3]) - box[1]
                    if cx1 < cx2 and cy1 < cy2:
                        covered[cy1:cy2, cx1:cx2] = True
                visible = float((bw * bh - covered.sum()) / full)
                faces.append(FaceTruth(actor.face.person, box, region, shot_index, round(min(1.0, visible), 3)))
            yield frame, faces


def write_video(
    scene: Scene | Sequence[Shot],
    path: str | Path,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    fourcc: str = "MJPG",
    save_gt: bool = False,
) -> GroundTruth:
    """Render `scene` to `path` and return its ground truth.

    fps/size default to the Scene's own (10 fps, 640x480 for a plain list of shots). MJPG in
    .avi is what OpenCV's wheel writes reliably (it cannot write H.264); a `.webm` path is
    written as VP8 with PyAV instead (browsers play it). `save_gt=True` also writes
    `<stem>.gt.json` next to the video.
    """
    if fps is None:
        fps = scene.fps if isinstance(scene, Scene) else 10.0
    if size is None:
        size = scene.size if isinstance(scene, Scene) else (640, 480)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames: list[list[FaceTruth]] = []
    if path.suffix.lower() == ".webm":
        _write_webm(scene, path, fps, size, frames)
    else:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), tuple(size))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {fourcc} to {path}")
        try:
            for frame, faces in render_frames(scene, size):
                writer.write(frame)
                frames.append(faces)
        finally:
            writer.release()
    shots, cuts, start = [], [], 0
    for i, shot in enumerate(scene):
        if i:
            cuts.append(start)
        shots.append((start, start + shot.frames))
        start += shot.frames
    gt = GroundTruth(float(fps), tuple(size), frames, cuts, shots)
    if save_gt:
        gt.save(path)
    return gt


def _write_webm(scene, path: Path, fps: float, size: tuple[int, int], frames: list) -> None:
    """VP8 in WebM with PyAV (libvpx), which browsers play (they cannot play MJPG/AVI):
    high quality, realtime speed; each frame at pts = index / fps."""
    from fractions import Fraction

    import av

    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=rate, options={"crf": "4", "b": "4M", "deadline": "realtime", "cpu-used": "8"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = 1 / rate
        for i, (frame, faces) in enumerate(render_frames(scene, size)):
            picture = av.VideoFrame.from_ndarray(frame, format="bgr24")
            picture.pts, picture.time_base = i, 1 / rate
            out.mux(stream.encode(picture))
            frames.append(faces)
        out.mux(stream.encode())


# --------------------------------------------------------------------------- ready-made scenes


def _pick(people: Sequence[FacePhoto] | None, n: int) -> list[FacePhoto]:
    pool = list(people) if people is not None else package_faces()
    distinct: list[FacePhoto] = []
    for p in pool:
        if p.person not in {d.person for d in distinct}:
            distinct.append(p)
    if len(distinct) < n:
        raise ValueError(f"need {n} distinct people, have {len(distinct)}")
    return distinct[:n]


def two_people_walking(
    people: Sequence[FacePhoto] | None = None, seconds: float = 3.0, fps: float = 10.0,
    size: tuple[int, int] = (640, 480), background: Background | None = None,
) -> Scene:
    """One shot: person A walks left to right in the upper half while B walks right to left
    in the lower half (their paths cross in x, the crops never overlap); A brightens a little.
    Defaults: astronaut and tom_hanks."""
    a, b = _pick(people, 2)
    w, h = size
    frames = max(2, int(round(seconds * fps)))
    # Keep every crop (about 190x220 px at scale 1) wholly inside the frame.
    ax = (a.size[0] / 2 + 4) / w
    bx = (b.size[0] / 2 + 4) / w
    ay = (a.size[1] / 2 + 4) / h
    by = 1 - (b.size[1] / 2 + 4) / h
    return Scene(
        [
            Shot(
                frames,
                background or background_for(0),
                [
                    Actor(a, (ax, ay), (1 - ax, ay), brightness=(0.9, 1.1)),
                    Actor(b, (1 - bx, by), (bx, by)),
                ],
            )
        ],
        size=size,
        fps=fps,
    )


def cut_and_return(
    people: Sequence[FacePhoto] | None = None, seconds_per_shot: float = 2.0, fps: float = 10.0,
    size: tuple[int, int] = (640, 480), return_photo: FacePhoto | None = None,
) -> Scene:
    """Shot A: P and Q side by side; hard cut; shot B: R alone; cut; shot C: P again, at
    another place, scale and brightness ("leaves and comes back"). `people` = (P, Q, R);
    `return_photo` may be another photo of P for shot C. Defaults: astronaut, tom_hanks, t1_0."""
    p, q, r = _pick(people, 3)
    p_again = return_photo or p
    n = max(2, int(round(seconds_per_shot * fps)))
    return Scene(
        [
            Shot(n, background_for(0), [
                Actor(p, (0.25, 0.5), (0.30, 0.48)),
                Actor(q, (0.75, 0.5), (0.70, 0.52), brightness=(1.0, 0.9)),
            ]),
            Shot(n, background_for(1), [Actor(r, (0.4, 0.5), (0.6, 0.5), scale=1.0, end_scale=1.3)]),
            Shot(n, background_for(2), [
                Actor(p_again, (0.65, 0.45), (0.55, 0.5), scale=1.3, end_scale=1.1, brightness=(0.85, 0.95)),
            ]),
        ],
        size=size,
        fps=fps,
    )


def faceless(seconds: float = 3.0, fps: float = 10.0, size: tuple[int, int] = (640, 480), shots: int = 2) -> Scene:
    """Moving flat shapes on changing backgrounds, `shots` shots, no faces at all."""
    n = max(2, int(round(seconds * fps / shots)))
    rng = np.random.default_rng(7)
    kinds = ("circle", "rect", "ellipse", "triangle")
    out = []
    for s in range(shots):
        shapes = [
            Shape(
                kinds[(s + i) % len(kinds)],
                tuple(int(v) for v in rng.integers(0, 256, 3)),
                (float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.1, 0.9))),
                (float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.1, 0.9))),
                int(rng.integers(40, 140)),
            )
            for i in range(5)
        ]
        out.append(Shot(n, background_for(s + 3), [], shapes))
    return Scene(out, size=size, fps=fps)


def sized(
    width: int, height: int, seconds: float, people: int | Sequence[FacePhoto] = 3, fps: float = 10.0,
) -> Scene:
    """One shot for benchmarks at any size: `people` (a count of package people, or photos)
    each walk across their own cell of a grid, alternating directions, at the biggest scale
    (at most 1.5) that fits the cell. Render with `write_video(scene, path)` (size is kept)."""
    photos = _pick(None, people) if isinstance(people, int) else _pick(people, len(people))
    n = len(photos)
    cw = max(p.size[0] for p in photos)
    ch = max(p.size[1] for p in photos)
    # Rows of people, as many as fit at scale >= 0.8, then columns for the rest.
    rows = max(1, min(n, int(height // (ch * 0.8))))
    cols = math.ceil(n / rows)
    rows = math.ceil(n / cols)
    cell_w, cell_h = width / cols, height / rows
    scale = min(1.5, cell_h / (ch + 8), cell_w / (cw + 8))
    frames = max(2, int(round(seconds * fps)))
    actors = []
    for i, photo in enumerate(photos):
        r, c = divmod(i, cols)
        half_w = photo.size[0] * scale / 2 + 4
        x_lo = (c * cell_w + half_w) / width
        x_hi = ((c + 1) * cell_w - half_w) / width
        y = (r + 0.5) * cell_h / height
        start, end = ((x_lo, y), (x_hi, y)) if i % 2 == 0 else ((x_hi, y), (x_lo, y))
        actors.append(Actor(photo, start, end, scale=scale, brightness=(0.95, 1.05) if i % 3 == 0 else (1.0, 1.0)))
    return Scene([Shot(frames, background_for(0), actors)], size=(width, height), fps=fps)


__all__ = [
    "Actor", "Background", "Box", "FacePhoto", "FaceTruth", "GroundTruth", "PALETTE", "Scene", "Shape", "Shot",
    "background_for", "cut_and_return", "face_by_person", "faceless", "gt_path_for", "package_faces",
    "photos_from_folder", "redetected", "render_frames", "sized", "two_people_walking", "write_video",
]
