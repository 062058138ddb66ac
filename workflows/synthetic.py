"""Test clips built from public-domain photos that ship in wheels, with known face boxes.

The astronaut portrait (NASA, public domain; ``skimage/data/astronaut.png``) is pasted over
a textured background at positions and sizes chosen here, so the box of every face in
every frame is known exactly: the ground truth for tests and for the quick-start sample.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

#: The face in skimage's 512x512 astronaut.png (x1, y1, x2, y2), measured by eye and CenterFace.
ASTRONAUT_FACE = (178, 52, 274, 182)
#: The crop of the portrait that is pasted: head and shoulders around the face.
ASTRONAUT_CROP = (130, 10, 330, 260)


def astronaut() -> np.ndarray:
    """The portrait, BGR."""
    import skimage.data

    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def background(width: int, height: int) -> np.ndarray:
    """A textured, face-free background (skimage's brick and grass photos), BGR."""
    import skimage.data

    brick = cv2.cvtColor(skimage.data.brick(), cv2.COLOR_GRAY2BGR)
    grass = cv2.cvtColor(skimage.data.grass(), cv2.COLOR_GRAY2BGR)
    tile = np.hstack([brick, grass])
    tile = cv2.resize(tile, (width, height), interpolation=cv2.INTER_AREA)
    tint = np.array([[[0.9, 1.0, 1.1]]], np.float32)
    return np.clip(tile * tint, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Placement:
    """One pasted portrait: its crop's top-left corner and width on the canvas."""

    x: float
    y: float
    width: float


def paste(canvas: np.ndarray, portrait: np.ndarray, place: Placement) -> tuple[int, int, int, int]:
    """Paste the astronaut crop at *place*; return the face box on the canvas (clipped to it)."""
    cx1, cy1, cx2, cy2 = ASTRONAUT_CROP
    crop = portrait[cy1:cy2, cx1:cx2]
    scale = place.width / crop.shape[1]
    w, h = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
    resized = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    x, y = round(place.x), round(place.y)
    H, W = canvas.shape[:2]
    sx1, sy1, sx2, sy2 = max(0, -x), max(0, -y), min(w, W - x), min(h, H - y)
    if sx2 > sx1 and sy2 > sy1:
        canvas[y + sy1:y + sy2, x + sx1:x + sx2] = resized[sy1:sy2, sx1:sx2]
    fx1, fy1, fx2, fy2 = ASTRONAUT_FACE
    box = (x + (fx1 - cx1) * scale, y + (fy1 - cy1) * scale, x + (fx2 - cx1) * scale, y + (fy2 - cy1) * scale)
    return (max(0, round(box[0])), max(0, round(box[1])), min(W, round(box[2])), min(H, round(box[3])))


def sample_placements(frame: int, frames: int, width: int, height: int) -> list[Placement]:
    """Two portraits: a large one drifting right, a smaller one drifting left and growing."""
    t = frame / max(1, frames - 1)
    return [
        Placement(x=0.05 * width + 0.25 * width * t, y=0.12 * height, width=0.30 * width),
        Placement(x=0.75 * width - 0.15 * width * t, y=0.45 * height, width=(0.12 + 0.06 * t) * width),
    ]


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 25, audio: bool = True,
               extra_args: Optional[list[str]] = None) -> None:
    """Encode BGR *frames* to *path* (H.264, with a 440 Hz tone as audio when *audio*)."""
    height, width = frames[0].shape[:2]
    args = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
            "-r", str(fps), "-i", "pipe:0"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={len(frames) / fps}",
                 "-c:a", "aac", "-b:a", "96k"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p", *(extra_args or []),
             str(path)]
    subprocess.run(args, input=b"".join(f.tobytes() for f in frames), check=True)


def make_sample_clip(path: Path, seconds: float = 4.0, width: int = 640, height: int = 360, fps: int = 25,
                     audio: bool = True) -> list[list[tuple[int, int, int, int]]]:
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
