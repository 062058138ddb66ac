"""The small interface every face detector implements, so that backends plug in.

A detector sees a copy of each frame whose size :class:`Resolution` chooses: scaled so the
smallest face to find becomes large enough for the model, and when that copy is large, seen
in overlapping tiles plus one shrunk pass over the whole copy (tiles find the small faces of
HD and 4K frames, the shrunk pass the faces too large for one tile). Backends implement
:meth:`Detector.infer` on equal-sized pictures; tiling and merging are done here.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import cv2
import numpy as np

#: A frame's detections: float32 array of shape (N, 5): x1, y1, x2, y2, score.
Boxes = np.ndarray

NO_BOXES = np.zeros((0, 5), np.float32)


def fit_size(width: int, height: int, max_side: int, multiple: int = 2) -> tuple[int, int]:
    """The size of a copy of a frame: aspect kept, longest side at most *max_side*, a multiple of *multiple*."""
    scale = min(1.0, max_side / max(width, height))
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    return w, h


@dataclass(frozen=True)
class Resolution:
    """How large a copy of each frame the detector sees.

    The copy is scaled so that a face of ``min_face`` pixels (in the video) becomes
    ``reference_face`` pixels, the size the model finds reliably: small faces need an
    enlarged copy, and a video whose faces are all large can be shrunk to save time. A copy
    larger than ``max_side`` is cut into overlapping tiles of at most ``max_side`` (plus one
    shrunk pass over the whole copy for faces too large for a tile), or, without ``tiles``,
    shrunk to ``max_side``.
    """

    min_face: int = 16
    reference_face: int = 24
    max_side: int = 1920
    tiles: bool = True
    #: Tiles overlap by this share of their side: a face up to that size lies whole in one tile.
    overlap: float = 0.1

    @property
    def scale(self) -> float:
        return self.reference_face / max(1, self.min_face)

    def copy_size(self, width: int, height: int) -> tuple[int, int]:
        scale = self.scale
        if max(width, height) * scale > self.max_side and not self.tiles:
            scale = self.max_side / max(width, height)
        return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)

    def coarse_size(self, width: int, height: int) -> Optional[tuple[int, int]]:
        """A cheaper copy for frames of *width* x *height* (see settings.fine_every), None when the full
        copy is no larger than the video: the video's own size, where faces of ``reference_face`` pixels
        are found; for a tiled copy, its overview's size (faces of 32 px in 1080p), which the model is
        already prepared for (a third picture size cost about 150 MB more at 1080p with OpenVINO)."""
        if self.scale <= 1:
            return None
        full = self.copy_size(width, height)
        if len(self.tile_grid(*full)) > 1:
            return self.overview_size(*full)
        return fit_size(width, height, self.max_side)

    def overview_size(self, width: int, height: int) -> tuple[int, int]:
        """The shrunk whole of a tiled copy, looked at for faces larger than the tiles' overlap: half size
        is plenty."""
        return fit_size(width, height, min(self.max_side, max(width, height) // 2))

    def tile_grid(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """Tiles (x, y, w, h) covering a copy of *width* x *height*; one tile when it fits in max_side."""
        if max(width, height) <= self.max_side:
            return [(0, 0, width, height)]
        overlap = int(self.max_side * self.overlap)
        xs, tw = _spread(width, self.max_side, overlap)
        ys, th = _spread(height, self.max_side, overlap)
        return [(x, y, tw, th) for y in ys for x in xs]


def _spread(length: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """Start positions and size of tiles covering *length* with at least *overlap* between neighbours."""
    if length <= tile:
        return [0], length
    count = math.ceil((length - overlap) / (tile - overlap))
    size = min(length, math.ceil((length + (count - 1) * overlap) / count))
    return [round(i * (length - size) / (count - 1)) for i in range(count)], size


class Detector(ABC):
    """Finds faces in copies of frames.

    The engine asks :meth:`input_size` once per video, has ffmpeg produce copies of that
    size, and calls :meth:`detect` on batches of them; boxes come back in the copy's pixel
    coordinates and the engine scales them to the full frame.
    """

    name: str = "detector"
    resolution: Resolution = Resolution()
    #: Most pixels given to the model in one call (None: a whole batch). On the CPU, batching barely
    #: speeds the model up while its working memory grows with the batch: a batch of four 1920x1080
    #: copies took 3.4 GB, one at a time 1.1 GB, at the same speed (measured on crowd_walk at 720p).
    max_pixels_per_call: Optional[int] = None

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) of the copy this detector wants for frames of *width* x *height*."""
        return self.resolution.copy_size(width, height)

    def coarse_size(self, width: int, height: int) -> Optional[tuple[int, int]]:
        """A cheaper copy's (width, height) for the frames not looked at in full (settings.fine_every), or None."""
        return self.resolution.coarse_size(width, height)

    @abstractmethod
    def infer(self, images: Sequence[np.ndarray]) -> list[Boxes]:
        """Boxes for each image (uint8 RGB, all of one size), in that image's pixels, scores above threshold."""

    def detect(self, images: Sequence[np.ndarray]) -> list[Boxes]:
        """Boxes for each image (uint8 RGB, all of the size given by input_size), tiled when it is large."""
        if not images:
            return []
        height, width = images[0].shape[:2]
        grid = self.resolution.tile_grid(width, height)
        if len(grid) == 1:
            return self._infer_in_calls(images, len(images))
        found: list[list[Boxes]] = [[] for _ in images]
        crops = [(i, x, y, image[y:y + h, x:x + w]) for i, image in enumerate(images) for x, y, w, h in grid]
        # As many pictures per call as frames in the batch (or fewer, see max_pixels_per_call).
        for (i, x, y, _), boxes in zip(crops, self._infer_in_calls([c[3] for c in crops], len(images))):
            found[i].append(boxes + np.array([x, y, x, y, 0], np.float32))
        ow, oh = self.resolution.overview_size(width, height)
        overview = [cv2.resize(image, (ow, oh), interpolation=cv2.INTER_AREA) for image in images]
        scale = np.array([width / ow, height / oh, width / ow, height / oh, 1], np.float32)
        for i, boxes in enumerate(self._infer_in_calls(overview, len(images))):
            found[i].append(boxes * scale)
        return [nms(np.concatenate(parts).astype(np.float32)) for parts in found]

    def _infer_in_calls(self, pictures: Sequence[np.ndarray], per_call: int) -> list[Boxes]:
        """infer() on *pictures* (all of one size), at most *per_call* at a time and within max_pixels_per_call."""
        if self.max_pixels_per_call:
            height, width = pictures[0].shape[:2]
            per_call = min(per_call, max(1, self.max_pixels_per_call // (height * width)))
        found: list[Boxes] = []
        for start in range(0, len(pictures), per_call):
            found += self.infer(pictures[start:start + per_call])
        return found

    def describe(self) -> dict[str, Any]:
        """What ran, for the report (name, providers, resolution...)."""
        return {"name": self.name}


def nms(boxes: Boxes, iou: float = 0.3) -> Boxes:
    """Non-maximum suppression: drop boxes overlapping a better-scored one by more than *iou*."""
    if len(boxes) < 2:
        return boxes
    xywh = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), boxes[:, 4].tolist(), 0.0, iou)
    return boxes[np.asarray(keep, dtype=int).reshape(-1)]
