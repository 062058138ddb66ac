"""A strip of a few anonymized frames with faces, for the summary report.

The engine hands every frame to ``FaceFrameSampler`` just before the encoder gets it, with the
faces already hidden: what is kept is what the output file holds, never an original frame.
Which frames to keep is decided without knowing the video's length: every ``stride``-th frame
with faces is copied (a small picture, not the full frame); when more than ``2 * count`` are
kept, every other one is dropped and the stride doubles. Memory and work stay bounded (a few
dozen small copies for a 3-hour video) and the kept frames stay spread over the whole video.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from steps.ffio import Frame
from steps.fsutil import partial_path, remove_quietly

#: Height of each thumbnail in the strip, in pixels.
THUMB_HEIGHT = 96
THUMBS_PER_VIDEO = 4
THUMBS_SUFFIX = ".thumbs.jpg"


def thumbnails_path_for(output: Path) -> Path:
    """Where the strip of *output* (an anonymized video) is written: beside it."""
    return output.with_name(output.name + THUMBS_SUFFIX)


def small_bgr(frame: Frame, height: int = THUMB_HEIGHT) -> np.ndarray:
    """A small BGR copy of *frame* (its planes resized first: cheap even for 4K)."""
    width = max(2, round(frame.width * height / frame.height / 2) * 2)
    return frame.picture((width, height), bgr=True)


class FaceFrameSampler:
    """Keeps a few evenly spread small copies of the frames in which faces were hidden."""

    def __init__(self, count: int = THUMBS_PER_VIDEO, height: int = THUMB_HEIGHT):
        self.count, self.height = count, height
        self.stride, self.seen = 1, 0
        self.kept: list[tuple[int, np.ndarray]] = []

    def __call__(self, frame, boxes: np.ndarray) -> None:
        """The engine's hook: *frame* as it goes to the encoder (faces hidden), *boxes* the faces in it."""
        if not len(boxes):
            return
        self.seen += 1
        if (self.seen - 1) % self.stride:
            return
        self.kept.append((frame.index, small_bgr(frame, self.height)))
        if len(self.kept) > 2 * self.count:
            self.kept = self.kept[::2]
            self.stride *= 2

    def chosen(self) -> list[tuple[int, np.ndarray]]:
        """Up to *count* of the kept frames, evenly spread (first and last included)."""
        if len(self.kept) <= self.count:
            return list(self.kept)
        last = len(self.kept) - 1
        return [self.kept[round(i * last / (self.count - 1))] for i in range(self.count)] if self.count > 1 \
            else [self.kept[0]]

    def write_strip(self, path: Path, quality: int = 70) -> Optional[list[int]]:
        """Write the chosen frames side by side as one JPEG (atomically); their frame indices, or None if no face."""
        chosen = self.chosen()
        if not chosen:
            return None
        gap = np.full((self.height, 4, 3), 255, np.uint8)
        pictures = []
        for _, picture in chosen:
            pictures += [picture, gap]
        ok, data = cv2.imencode(".jpg", np.hstack(pictures[:-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            return None
        tmp = partial_path(path)
        try:
            tmp.write_bytes(data.tobytes())
            tmp.replace(path)
        finally:
            remove_quietly(tmp)
        return [index for index, _ in chosen]
