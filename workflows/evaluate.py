"""The quality harness: anonymize labelled clips and measure, against ground truth, what stays visible.

``python -m workflows eval`` renders scenes (workflows.synthetic: real public-domain portraits
placed, moved, zoomed, motion-blurred, entering and leaving the frame, 16 to 300 px, landscape
and portrait frames), anonymizes each with the given settings, decodes the input and the
output and compares them where the faces are and where they are not.

Whether a face is hidden (or fully visible) is decided by steps.likeness, the definition the
audit pass uses too. Only faces with at least half of their box inside the frame count; their
box is clipped to the frame.

- Size buckets use the face box's height in pixels (its full height, even when clipped). The
  ground-truth boxes are generous: hairline (or some hair) to below the chin, ear to ear.
- **Over-blur** is the share of pixels away from every face (outside each face box grown to
  ``AWAY_SCALE`` times its size, plus ``AWAY_MARGIN`` pixels) whose local SSIM (7x7 Gaussian
  window, sigma 1.5) falls below the same 0.5: picture damaged without need.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from steps.likeness import HIDDEN_SHARE, HIDDEN_SSIM, VISIBLE_SHARE, changed_share
from steps.settings import Settings
from workflows.synthetic import Scene, SceneTruth, Walker, render_scene

MIN_INSIDE = 0.5
AWAY_SCALE = 1.6
AWAY_MARGIN = 8
#: Size buckets (face height in px): label, lowest size included, highest excluded.
BUCKETS = (("<32", 0, 32), ("32-96", 32, 96), (">96", 96, 10_000))

_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def ssim_map(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Local SSIM of every pixel (Gaussian window, sigma 1.5, 7x7), as float32."""
    a, b = before.astype(np.float32), after.astype(np.float32)

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (7, 7), 1.5)

    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    return ((2 * ma * mb + _C1) * (2 * cov + _C2)) / ((ma * ma + mb * mb + _C1) * (va + vb + _C2))


def away_mask(shape: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """True where a pixel is away from every face box."""
    mask = np.ones(shape, bool)
    h, w = shape
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        hw, hh = (x2 - x1) * AWAY_SCALE / 2 + AWAY_MARGIN, (y2 - y1) * AWAY_SCALE / 2 + AWAY_MARGIN
        mask[max(0, int(cy - hh)):min(h, int(np.ceil(cy + hh))), max(0, int(cx - hw)):min(w, int(np.ceil(cx + hw)))] = 0
    return mask


def grey_frames(path: Path, width: int, height: int) -> Iterator[np.ndarray]:
    """The luma of every frame of *path*, decoded by ffmpeg, one at a time."""
    args = ["ffmpeg", "-v", "error", "-nostdin", "-i", f"file:{path.absolute()}", "-map", "0:v:0",
            "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    with subprocess.Popen(args, stdout=subprocess.PIPE) as proc:
        size = width * height
        while True:
            data = proc.stdout.read(size)
            if len(data) < size:
                break
            yield np.frombuffer(data, np.uint8).reshape(height, width)
        proc.stdout.close()


@dataclass
class FaceResult:
    frame: int
    walker: int
    size: float
    changed: float

    @property
    def hidden(self) -> bool:
        return self.changed >= HIDDEN_SHARE

    @property
    def fully_visible(self) -> bool:
        return self.changed < VISIBLE_SHARE


@dataclass
class ClipResult:
    name: str
    size: tuple[int, int]
    frames: int
    faces: list[FaceResult] = field(default_factory=list)
    away_pixels: int = 0
    away_changed: int = 0
    seconds: float = 0.0
    fps: Optional[float] = None


def measure(truth: SceneTruth, source: Path, output: Path) -> ClipResult:
    """Compare *output* with *source* frame by frame against *truth*."""
    scene = truth.scene
    result = ClipResult(scene.name, (scene.width, scene.height), scene.frames)
    frames = zip(grey_frames(source, scene.width, scene.height), grey_frames(output, scene.width, scene.height))
    count = 0
    for index, (before, after) in enumerate(frames):
        count += 1
        faces = truth.faces[index]
        for face in faces:
            if face.inside >= MIN_INSIDE:
                share = changed_share(before, after, face.box, face.size)
                result.faces.append(FaceResult(index, face.walker, face.size, share))
        away = away_mask(before.shape, [f.box for f in faces])
        changed = ssim_map(before, after) < HIDDEN_SSIM
        result.away_pixels += int(away.sum())
        result.away_changed += int((changed & away).sum())
    if count != scene.frames:
        raise RuntimeError(f"{output.name}: {count} frames decoded, {scene.frames} expected")
    return result


@dataclass
class BucketRow:
    bucket: str
    faces: int
    hidden: int
    recall: Optional[float]
    frames_visible: int
    frames_fully_visible: int


def bucket_rows(clips: list[ClipResult]) -> list[BucketRow]:
    rows = []
    for label, low, high in BUCKETS:
        faces = [(c.name, f) for c in clips for f in c.faces if low <= f.size < high]
        hidden = sum(f.hidden for _, f in faces)
        visible_frames = {(name, f.frame) for name, f in faces if not f.hidden}
        fully = {(name, f.frame) for name, f in faces if f.fully_visible}
        rows.append(BucketRow(label, len(faces), hidden, hidden / len(faces) if faces else None,
                              len(visible_frames), len(fully)))
    return rows


def over_blur(clips: list[ClipResult]) -> float:
    pixels = sum(c.away_pixels for c in clips)
    return sum(c.away_changed for c in clips) / pixels if pixels else 0.0


@dataclass
class Evaluation:
    settings: dict
    clips: list[ClipResult]
    rows: list[BucketRow]
    over_blur: float

    def to_json(self) -> dict:
        return {"settings": self.settings, "rows": [asdict(r) for r in self.rows], "over_blur": self.over_blur,
                "clips": [{"name": c.name, "size": c.size, "frames": c.frames, "fps": c.fps,
                           "faces": len(c.faces), "hidden": sum(f.hidden for f in c.faces),
                           "over_blur": c.away_changed / c.away_pixels if c.away_pixels else 0.0,
                           "missed": [asdict(f) for f in c.faces if not f.hidden]} for c in self.clips]}

    def markdown(self) -> str:
        lines = ["| face height | faces | hidden | recall | frames with a visible face | frames with a fully visible "
                 "face |", "|---|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            recall = "-" if r.recall is None else f"{100 * r.recall:.2f} %"
            lines.append(f"| {r.bucket} px | {r.faces} | {r.hidden} | {recall} | {r.frames_visible} | "
                         f"{r.frames_fully_visible} |")
        frames = sum(c.frames for c in self.clips)
        lines.append("")
        lines.append(f"Over-blur: {100 * self.over_blur:.2f} % of the pixels away from faces; {len(self.clips)} clips, "
                     f"{frames} frames.")
        return "\n".join(lines)


def _scene(name: str, width: int, height: int, frames: int, *walkers: Walker, **options) -> Scene:
    return Scene(name, width, height, frames, tuple(walkers), **options)


def quick_suite() -> list[Scene]:
    """Three short, small clips covering every size bucket, motion, zoom, entries and exits (for CI)."""
    W = Walker
    return [
        _scene("quick_walk_640x360", 640, 360, 40,
               W("astronaut", (0.2, 0.35), (0.75, 0.4), (70, 70)),
               W("camera", (0.85, 0.75), (0.45, 0.7), (26, 26), flip=True),
               W("astronaut", (0.1, 0.8), (0.25, 0.85), (18, 22))),
        _scene("quick_zoom_enter_640x360", 640, 360, 40,
               W("astronaut", (0.55, 0.5), (0.5, 0.5), (40, 150)),
               W("camera", (-0.05, 0.3), (0.35, 0.25), (48, 48)),
               W("astronaut", (0.9, 0.2), (1.08, 0.2), (30, 30), flip=True), backdrop="coffee"),
        _scene("quick_portrait_360x640", 360, 640, 40,
               W("astronaut", (0.5, 0.3), (0.45, 0.35), (110, 110)),
               W("camera", (0.2, 0.75), (0.8, 0.7), (22, 26)),
               W("astronaut", (0.7, 0.55), (0.75, 0.6), (36, 34), flip=True), wobble=0.3, backdrop="rocket"),
    ]


def full_suite() -> list[Scene]:
    """The harness run by hand: HD and portrait frames, 16 to 300 px faces, fast motion (small faces too), small
    crowds."""
    W = Walker
    return [
        *quick_suite(),
        _scene("walk_640x360", 640, 360, 75,
               W("astronaut", (0.1, 0.35), (0.9, 0.4), (64, 64)),
               W("camera", (0.9, 0.7), (0.2, 0.75), (28, 28), flip=True),
               W("astronaut", (0.3, 0.85), (0.4, 0.85), (16, 20))),
        _scene("zoom_1920x1080", 1920, 1080, 75,
               W("astronaut", (0.5, 0.5), (0.45, 0.45), (24, 300)),
               W("camera", (0.15, 0.3), (0.3, 0.35), (40, 20)),
               W("astronaut", (0.85, 0.8), (0.8, 0.75), (16, 16), flip=True), backdrop="coffee"),
        _scene("enter_leave_1280x720", 1280, 720, 60,
               W("astronaut", (-0.1, 0.4), (1.1, 0.45), (100, 100)),
               W("camera", (1.05, 0.75), (0.5, 0.7), (48, 60), flip=True),
               W("astronaut", (0.5, -0.05), (0.55, 0.3), (36, 36), span=(0.3, 1.0))),
        _scene("tiny_1920x1080", 1920, 1080, 50,
               *(W("astronaut" if k % 2 else "camera", (0.1 + 0.15 * k, 0.2 + 0.1 * k),
                   (0.15 + 0.15 * k, 0.25 + 0.1 * k), (16 + 3 * k, 16 + 3 * k), flip=bool(k % 3 == 0))
                 for k in range(6)), backdrop="rocket"),
        _scene("portrait_608x1080", 608, 1080, 75,
               W("astronaut", (0.5, 0.3), (0.5, 0.35), (160, 170)),
               W("camera", (0.9, 0.8), (0.1, 0.75), (36, 40)), wobble=0.25),
        _scene("fast_640x360", 640, 360, 50,
               W("astronaut", (0.05, 0.5), (0.95, 0.5), (48, 48)),
               W("camera", (0.9, 0.2), (0.1, 0.3), (32, 32), flip=True), wobble=0.8),
        _scene("crowd_960x540", 960, 540, 50,
               *(W("astronaut" if k % 3 else "camera", (0.08 + 0.09 * k, 0.25 + 0.05 * (k % 4)),
                   (0.1 + 0.09 * k, 0.3 + 0.05 * (k % 4)), (20 + 5 * k, 20 + 5 * k), flip=bool(k % 2))
                 for k in range(10))),
        # Small faces moving fast for their size (a pan, or people far off on bicycles): 16 to 26 px, 0.25 to 0.4
        # of their height a frame; at 1080p they are only seen in the full-resolution looks.
        _scene("small_fast_1280x720", 1280, 720, 80,
               *(W("astronaut" if k % 2 else "camera", (0.05 + 0.12 * k, 0.15 + 0.13 * k),
                   (0.05 + 0.12 * k + (0.3 if k % 2 else -0.25) * (1 if k < 3 else 1.3), 0.2 + 0.12 * k),
                   (16 + 2 * k, 16 + 2 * k), flip=bool(k % 3 == 0)) for k in range(6))),
        _scene("small_fast_1920x1080", 1920, 1080, 60,
               *(W("camera" if k % 2 else "astronaut", (0.9 - 0.14 * k, 0.1 + 0.15 * k),
                   (0.7 - 0.14 * k, 0.15 + 0.15 * k), (16 + 2 * k, 18 + 2 * k), flip=bool(k % 2))
                 for k in range(6)), backdrop="coffee"),
    ]


SUITES = {"quick": quick_suite, "full": full_suite}


def evaluate(scenes: list[Scene], settings: Settings, workdir: Path, progress=None) -> Evaluation:
    """Render, anonymize and measure every scene in *workdir*."""
    from steps.anonymize import anonymize_file

    results = []
    for scene in scenes:
        source, output = workdir / f"{scene.name}.mp4", workdir / f"{scene.name}.anon.mp4"
        truth = render_scene(scene, source)
        started = time.monotonic()
        report = anonymize_file(source, output, workdir / f"{scene.name}.report.json", settings, force=True)
        if report.status != "done":
            raise RuntimeError(f"{scene.name}: {report.error}")
        result = measure(truth, source, output)
        result.seconds, result.fps = time.monotonic() - started, report.fps
        results.append(result)
        if progress:
            progress(result)
    return Evaluation(settings.model_dump(mode="json"), results, bucket_rows(results), over_blur(results))


def run_eval(settings: Settings, suite: str = "full", workdir: Optional[Path] = None, progress=None) -> Evaluation:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return evaluate(SUITES[suite](), settings, workdir, progress)
    with tempfile.TemporaryDirectory(prefix="anonymizer-eval-") as tmp:
        return evaluate(SUITES[suite](), settings, Path(tmp), progress)


def save(evaluation: Evaluation, path: Path) -> None:
    from steps.fsutil import atomic_write_text

    atomic_write_text(path, json.dumps(evaluation.to_json(), indent=2) + "\n")
