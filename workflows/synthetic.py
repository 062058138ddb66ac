"""Test clips built from public-domain photos that ship in wheels, with known face boxes.

Two portraits are pasted over face-free backgrounds at positions and sizes chosen here, so
the box of every face in every frame is known exactly: the ground truth for the tests, the
quality harness (workflows.evaluate) and the quick-start sample. The photos, all in the
scikit-image wheel (licences from ``skimage.data``'s docstrings):

- ``astronaut.png``: Eileen Collins, NASA, public domain; a frontal colour face;
- ``camera.png``: the cameraman, CC0 (photographer Lav Varshney); a grey face in
  three-quarter profile, half in shadow;
- backgrounds: ``brick.png`` and ``grass.png`` (CC0 textures), ``coffee.png`` (CC0) and
  ``rocket.jpg`` (SpaceX, public domain).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

#: The face in skimage's 512x512 astronaut.png (x1, y1, x2, y2), measured by eye and CenterFace.
ASTRONAUT_FACE = (178, 52, 274, 182)
#: The crop of the portrait that is pasted: head and shoulders around the face.
ASTRONAUT_CROP = (130, 10, 330, 260)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Photo:
    """A portrait: which skimage image, the face box in it and the head-and-shoulders crop pasted."""

    name: str
    face: Box
    crop: Box


#: The cameraman's face (hairline to chin, ear to nose tip), measured by eye and CenterFace.
PHOTOS = {
    "astronaut": Photo("astronaut", ASTRONAUT_FACE, ASTRONAUT_CROP),
    "camera": Photo("camera", (198, 110, 262, 200), (120, 50, 340, 290)),
}


@lru_cache(maxsize=8)
def photo_pixels(name: str) -> np.ndarray:
    """A skimage photo as BGR (grey ones as three equal channels)."""
    import skimage.data

    image = getattr(skimage.data, name)()
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)


def astronaut() -> np.ndarray:
    """The portrait, BGR."""
    return photo_pixels("astronaut").copy()


def background(width: int, height: int, kind: str = "texture") -> np.ndarray:
    """A face-free background, BGR: ``texture`` (brick and grass), ``coffee`` or ``rocket``."""
    if kind == "texture":
        tile = np.hstack([photo_pixels("brick"), photo_pixels("grass")])
        tile = cv2.resize(tile, (width, height), interpolation=cv2.INTER_AREA)
        tint = np.array([[[0.9, 1.0, 1.1]]], np.float32)
        return np.clip(tile * tint, 0, 255).astype(np.uint8)
    return cv2.resize(photo_pixels(kind), (width, height), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Placement:
    """One pasted portrait: its crop's top-left corner and width on the canvas."""

    x: float
    y: float
    width: float


def paste(canvas: np.ndarray, portrait: np.ndarray, place: Placement, photo: Photo = PHOTOS["astronaut"],
          flip: bool = False) -> Box:
    """Paste *photo*'s crop at *place* (mirrored with *flip*); return the face box on the canvas (clipped to it)."""
    cx1, cy1, cx2, cy2 = photo.crop
    crop = portrait[cy1:cy2, cx1:cx2]
    fx1, fy1, fx2, fy2 = photo.face
    if flip:
        crop = crop[:, ::-1]
        fx1, fx2 = cx1 + cx2 - fx2, cx1 + cx2 - fx1
    scale = place.width / crop.shape[1]
    w, h = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
    resized = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    x, y = round(place.x), round(place.y)
    H, W = canvas.shape[:2]
    sx1, sy1, sx2, sy2 = max(0, -x), max(0, -y), min(w, W - x), min(h, H - y)
    if sx2 > sx1 and sy2 > sy1:
        canvas[y + sy1:y + sy2, x + sx1:x + sx2] = resized[sy1:sy2, sx1:sx2]
    box = (x + (fx1 - cx1) * scale, y + (fy1 - cy1) * scale, x + (fx2 - cx1) * scale, y + (fy2 - cy1) * scale)
    return (min(W, max(0, round(box[0]))), min(H, max(0, round(box[1]))), max(0, min(W, round(box[2]))),
            max(0, min(H, round(box[3]))))


def sample_placements(frame: int, frames: int, width: int, height: int) -> list[Placement]:
    """Two portraits: a large one drifting right, a smaller one drifting left and growing."""
    t = frame / max(1, frames - 1)
    return [
        Placement(x=0.05 * width + 0.25 * width * t, y=0.12 * height, width=0.30 * width),
        Placement(x=0.75 * width - 0.15 * width * t, y=0.45 * height, width=(0.12 + 0.06 * t) * width),
    ]


def write_clip(path: Path, frames: Iterable[np.ndarray], fps: int = 25, audio: bool = True,
               extra_args: Optional[list[str]] = None, count: Optional[int] = None) -> None:
    """Encode BGR *frames* (a list, or an iterator of *count*) to *path*: H.264, a 440 Hz tone with *audio*."""
    if count is None:
        frames = list(frames)
        count = len(frames)
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    args = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
            "-r", str(fps), "-i", "pipe:0"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={count / fps}",
                 "-c:a", "aac", "-b:a", "96k"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p", *(extra_args or []),
             str(path)]
    with subprocess.Popen(args, stdin=subprocess.PIPE) as proc:
        proc.stdin.write(first.tobytes())
        for frame in frames:
            proc.stdin.write(frame.tobytes())
        proc.stdin.close()
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, args)


def make_sample_clip(path: Path, seconds: float = 4.0, width: int = 640, height: int = 360, fps: int = 25,
                     audio: bool = True) -> list[list[Box]]:
    """Write the sample clip; return the face boxes of every frame."""
    portrait, base = astronaut(), background(width, height)
    count = max(1, round(seconds * fps))
    frames, truth = [], []
    for i in range(count):
        canvas = base.copy()
        truth.append([paste(canvas, portrait, p) for p in sample_placements(i, count, width, height)])
        frames.append(canvas)
    write_clip(path, frames, fps, audio)
    return truth


# --- Scenes for the quality harness -------------------------------------------------------------


@dataclass(frozen=True)
class Walker:
    """One face moving in a straight line while its size changes linearly, during part of a scene.

    Positions are the face box's centre as fractions of the frame (outside 0..1: outside the
    frame, so a face can enter or leave); sizes are the face box's height in pixels.
    """

    photo: str
    start: tuple[float, float]
    end: tuple[float, float]
    size: tuple[float, float]
    flip: bool = False
    #: The part of the scene (fractions of its length) during which the face is there.
    span: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class Scene:
    """A labelled clip: frame size, length, the faces in it, and whether motion blurs them."""

    name: str
    width: int
    height: int
    frames: int
    walkers: tuple[Walker, ...]
    fps: int = 25
    backdrop: str = "texture"
    #: Motion blur: each moving face is smeared along its path over this share of a frame's travel
    #: (0.5: the usual 180-degree shutter, open half of each frame's time).
    shutter: float = 0.5
    wobble: float = 0.0  # sideways sway, in face heights, to make motion non-linear


@dataclass
class FaceTruth:
    """One face in one frame: its box clipped to the frame, its full height and the share inside the frame."""

    box: Box
    size: float
    inside: float
    walker: int


@dataclass
class SceneTruth:
    scene: Scene
    faces: list[list[FaceTruth]] = field(default_factory=list)  # per frame


def _walker_state(walker: Walker, scene: Scene, frame: int) -> Optional[tuple[float, float, float]]:
    """Face centre (px) and height (px) of *walker* at *frame*, or None when it is not in the scene then."""
    t = frame / max(1, scene.frames - 1)
    a, b = walker.span
    if not a <= t <= b:
        return None
    u = (t - a) / max(1e-9, b - a)
    cx = (walker.start[0] + (walker.end[0] - walker.start[0]) * u) * scene.width
    cy = (walker.start[1] + (walker.end[1] - walker.start[1]) * u) * scene.height
    size = walker.size[0] + (walker.size[1] - walker.size[0]) * u
    if scene.wobble:
        cy += scene.wobble * size * np.sin(2 * np.pi * 2 * u)
    return cx, cy, size


def _motion_blur(canvas: np.ndarray, region: Box, dx: float, dy: float) -> None:
    """Smear *region* of *canvas* along (dx, dy) pixels, as a camera shutter open during the motion does."""
    length = int(round(np.hypot(dx, dy)))
    if length < 2:
        return
    kernel = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    ux, uy = dx / np.hypot(dx, dy), dy / np.hypot(dx, dy)
    for s in np.linspace(-c, c, 2 * length):
        kernel[int(round(c + s * uy)), int(round(c + s * ux))] = 1.0
    kernel /= kernel.sum()
    x1, y1, x2, y2 = region
    H, W = canvas.shape[:2]
    x1, y1, x2, y2 = max(0, x1 - length), max(0, y1 - length), min(W, x2 + length), min(H, y2 + length)
    if x2 > x1 and y2 > y1:
        canvas[y1:y2, x1:x2] = cv2.filter2D(canvas[y1:y2, x1:x2], -1, kernel, borderType=cv2.BORDER_REPLICATE)


def render_scene(scene: Scene, path: Path, audio: bool = False) -> SceneTruth:
    """Write *scene* to *path* (H.264) and return the ground truth of every frame."""
    truth = SceneTruth(scene)
    write_clip(path, _scene_frames(scene, truth), scene.fps, audio, count=scene.frames)
    return truth


def _scene_frames(scene: Scene, truth: SceneTruth) -> Iterator[np.ndarray]:
    """The frames of *scene*, one at a time, appending each frame's faces to *truth*."""
    base = background(scene.width, scene.height, scene.backdrop)
    for i in range(scene.frames):
        canvas = base.copy()
        faces = []
        for k, walker in enumerate(scene.walkers):
            state = _walker_state(walker, scene, i)
            if state is None:
                continue
            cx, cy, size = state
            photo = PHOTOS[walker.photo]
            fx1, fy1, fx2, fy2 = photo.face
            scale = size / (fy2 - fy1)
            face_w = (fx2 - fx1) * scale
            cx1, cy1, cx2, cy2 = photo.crop
            face_left = (cx1 + cx2 - fx2 if walker.flip else fx1) - cx1
            place = Placement(x=cx - face_w / 2 - face_left * scale, y=cy - size / 2 - (fy1 - cy1) * scale,
                              width=(cx2 - cx1) * scale)
            box = paste(canvas, photo_pixels(walker.photo), place, photo, walker.flip)
            previous = _walker_state(walker, scene, i - 1) if i else None
            if previous is not None and scene.shutter > 0:
                crop_box = (round(place.x), round(place.y), round(place.x + place.width),
                            round(place.y + (cy2 - cy1) * scale))
                _motion_blur(canvas, crop_box, (cx - previous[0]) * scene.shutter, (cy - previous[1]) * scene.shutter)
            full_area = face_w * size
            area = max(0, box[2] - box[0]) * max(0, box[3] - box[1])
            faces.append(FaceTruth(box=box, size=size, inside=min(1.0, area / full_area), walker=k))
        truth.faces.append(faces)
        yield canvas
