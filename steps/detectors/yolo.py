"""YOLO (ultralytics, PyTorch) as a face detector: a face model's boxes, or a COCO model's people.

``--detector yolo --model PATH`` (or ``MODEL_WEIGHT``) loads any ultralytics detection model
(.pt, or an exported .onnx / .engine). With ``--target face`` its ``face`` class is used
(every class when it has none: a one-class face model); with ``--target person`` its
``person`` class (class 0 when no class has that name, as in COCO), and the head region of
each person is hidden (``--whole-person``: the whole body). Inference runs on batches of
frames, on the first CUDA device in half precision when there is one, else on the CPU.

Ultralytics is kept offline: no update check, no settings sync, no automatic pip install,
settings written to a temporary folder (pods often have a read-only home).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from steps.detectors.base import NO_BOXES, Boxes, Detector, Resolution
from steps.errors import PermanentError

#: Head region of a person box: its full width, and this share of its width downwards from the top
#: (a standing person's head is about half as wide as the box; seated or half-body boxes are wider
#: than tall and the head takes more of their height). A heuristic: generous on purpose.
HEAD_HEIGHT_PER_WIDTH = 0.6


def offline_ultralytics() -> None:
    """Environment that keeps ultralytics from reaching the network or writing to the home folder."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(tempfile.gettempdir(), "anonymizer-ultralytics"))


def auto_device() -> tuple[str, bool]:
    """(device, half precision): the first CUDA device in half precision when there is one, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda:0", True
    return "cpu", False


def head_boxes(boxes: Boxes) -> Boxes:
    """The head region of each person box (x1, y1, x2, y2, score): its top part, full width."""
    heads = boxes.copy()
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    heads[:, 3] = boxes[:, 1] + np.minimum(height, HEAD_HEIGHT_PER_WIDTH * width)
    return heads


class Yolo(Detector):
    name = "yolo"

    def __init__(self, model: Path, threshold: float = 0.3, resolution: Resolution = Resolution(),
                 target: str = "face", whole_person: bool = False, device: Optional[str] = None):
        offline_ultralytics()
        if not Path(model).is_file():
            raise PermanentError(f"the YOLO model file {str(model)!r} does not exist")
        from ultralytics import YOLO

        try:
            self.model = YOLO(str(model), task="detect")
        except Exception as exc:  # noqa: BLE001 - ultralytics raises many kinds for a bad file
            raise PermanentError(f"the YOLO model {str(model)!r} could not be loaded: {exc}") from exc
        self.device, self.half = (device, False) if device else auto_device()
        self.threshold, self.resolution, self.target, self.whole_person = threshold, resolution, target, whole_person
        self.model_path = str(model)
        self.classes = self._classes(self.model.names or {})

    def _classes(self, names: dict[int, str]) -> Optional[list[int]]:
        """The class ids the target asks for (None: every class)."""
        by_name = {str(v).lower(): int(k) for k, v in names.items()}
        if self.target == "person":
            return [by_name.get("person", 0)]
        return [by_name["face"]] if "face" in by_name else None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model_path, "device": self.device, "half": self.half,
                "target": self.target, "whole_person": self.whole_person, "threshold": self.threshold,
                "classes": self.classes, "resolution": asdict(self.resolution)}

    def infer(self, images: Sequence[np.ndarray]) -> list[Boxes]:
        if not images:
            return []
        height, width = images[0].shape[:2]
        side = -(-max(height, width) // 32) * 32
        # ultralytics reads numpy pictures as BGR
        bgr = [np.ascontiguousarray(image[:, :, ::-1]) for image in images]
        results = self.model.predict(bgr, imgsz=side, conf=self.threshold, device=self.device, half=self.half,
                                     classes=self.classes, verbose=False)
        return [self.boxes_of(result) for result in results]

    def boxes_of(self, result: Any) -> Boxes:
        """The boxes to hide from one ultralytics ``Results``: the target's classes, person boxes cut to heads."""
        if result.boxes is None or len(result.boxes) == 0:
            return NO_BOXES
        xyxy = result.boxes.xyxy.float().cpu().numpy()
        conf = result.boxes.conf.float().cpu().numpy()
        cls = result.boxes.cls.cpu().numpy().astype(int)
        keep = conf >= self.threshold
        if self.classes is not None:
            keep &= np.isin(cls, self.classes)
        boxes = np.column_stack([xyxy[keep], conf[keep]]).astype(np.float32)
        if self.target == "person" and not self.whole_person:
            boxes = head_boxes(boxes)
        return boxes
