"""The small interface every face detector implements, so that backends plug in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

#: A frame's detections: float32 array of shape (N, 5): x1, y1, x2, y2, score.
Boxes = np.ndarray

NO_BOXES = np.zeros((0, 5), np.float32)


def fit_size(width: int, height: int, max_side: int, multiple: int = 2) -> tuple[int, int]:
    """The size of the detector's copy of a frame: aspect kept, longest side at most *max_side*, even."""
    scale = min(1.0, max_side / max(width, height))
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    return w, h


class Detector(ABC):
    """Finds faces in small RGB copies of frames.

    The engine asks :meth:`input_size` once per video, has ffmpeg produce copies of that
    size, and calls :meth:`detect` on batches of them; boxes come back in the copy's pixel
    coordinates and the engine scales them to the full frame.
    """

    name: str = "detector"

    @abstractmethod
    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) of the copy this detector wants for frames of *width* x *height*."""

    @abstractmethod
    def detect(self, images: Sequence[np.ndarray]) -> list[Boxes]:
        """Boxes for each image (uint8 RGB, all of the size given by input_size)."""

    def describe(self) -> dict[str, Any]:
        """What ran, for the report (name, providers, resolution...)."""
        return {"name": self.name}


def nms(boxes: Boxes, iou: float = 0.3) -> Boxes:
    """Non-maximum suppression: drop boxes overlapping a better-scored one by more than *iou*."""
    if len(boxes) < 2:
        return boxes
    import cv2

    xywh = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), boxes[:, 4].tolist(), 0.0, iou)
    return boxes[np.asarray(keep, dtype=int).reshape(-1)]
