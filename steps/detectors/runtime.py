"""Where an ONNX model runs: ONNX Runtime (CPU, or its TensorRT/CUDA providers), or torch on a CUDA GPU.

The choice is automatic (see :func:`load`): ONNX Runtime's GPU providers when its GPU build is
installed; otherwise, on a machine whose torch sees a CUDA GPU, the graph is converted to a
torch module by ``onnx2torch`` and run there in half precision (the GPU images carry torch
for YOLO anyway, and onnxruntime-gpu is a large extra); otherwise the CPU: the model's int8
version on OpenVINO when the detector has one and OpenVINO is installed (the model about 2.2
times faster than float32 on ONNX Runtime, see BENCHMARKS.md), else ONNX Runtime in float32.
Every runner has ONNX Runtime's calling convention: ``run(output names, {input name: array})``,
and makes the network's input from a batch of pictures where it runs best (``images_to_blob``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np

from steps import accel
from steps.detectors import ov_cache


class Runner(Protocol):
    def images_to_blob(self, images: Sequence[np.ndarray], height: int, width: int) -> Any:
        """The network's input for a batch of uint8 HxWx3 pictures, zero-padded at the right and bottom to
        height x width, in the form this runner takes (N x 3 x height x width float, unless it says otherwise)."""

    def run(self, outputs: Sequence[str], feeds: dict[str, Any]) -> list[np.ndarray]: ...

    def describe(self) -> dict[str, Any]: ...


class OnnxRuntimeRunner:
    def __init__(self, model: bytes, providers: Sequence[str], threads: int = 0):
        import onnxruntime as ort

        ort.set_default_logger_severity(3)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Idle threads sleep instead of spinning: the ffmpeg decoder and encoder need those cores
        # (measured here: a third less CPU per frame for the same detection speed).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model, options, providers=list(providers))

    def images_to_blob(self, images: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
        return float_blob(images, height, width)

    def run(self, outputs: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(list(outputs), feeds)

    def describe(self) -> dict[str, Any]:
        providers = self.session.get_providers()
        return {"runtime": "onnxruntime", "providers": providers,
                "device": "gpu" if providers and providers[0] != "CPUExecutionProvider" else "cpu"}


def float_blob(images: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """The N x 3 x height x width float32 input of the CPU runners."""
    blob = np.zeros((len(images), 3, height, width), np.float32)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        blob[i, :, :h, :w] = image.transpose(2, 0, 1)
    return blob


class OpenVinoRunner:
    """An ONNX model (here: int8, quantize-dequantize form) on the CPU with OpenVINO.

    The model is compiled once per picture size (about 0.75 s) with a batch of one: on the CPU a
    batch of four is no faster per picture, and one compiled size serves every batch length. Compiled
    models are kept on disk (steps.detectors.ov_cache): a later process imports them in about 0.1 s.
    Each compiled model takes the pictures as they are (uint8, height x width x RGB) and converts them
    itself, and computes only the outputs asked for: together about 15 % less CPU per picture than
    a float32 input made in numpy and the full graph (measured at 640x352 to 1216x672, see BENCHMARKS.md).
    """

    def __init__(self, model: Path, threads: int = 0):
        import openvino as ov

        self.core, self.path = ov.Core(), model
        self.model = self.core.read_model(str(model))
        self.input = self.model.inputs[0].any_name
        # No pinning of threads to cores: OpenVINO pins each process's threads to the same first cores, so
        # two workers of one machine (or two pods of one node) ran at half speed (measured: two one-thread
        # workers at 117-160 ms per 960x544 frame pinned, 76-99 ms not).
        self.config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.requests: dict[tuple, Any] = {}

    def _request(self, shape: tuple[int, ...], outputs: tuple[str, ...]) -> Any:
        if (shape, outputs) not in self.requests:
            self.requests[shape, outputs] = self._compiled(shape, outputs).create_infer_request()
        return self.requests[shape, outputs]

    def _compiled(self, shape: tuple[int, ...], outputs: tuple[str, ...]) -> Any:
        """The model compiled for uint8 pictures of *shape* (height, width, 3) and only *outputs*, from the
        disk cache when it is there."""
        import openvino as ov

        entry = ov_cache.entry(self.path, (1, *shape), ov.get_version(),
                               self.core.get_property("CPU", "FULL_DEVICE_NAME"),
                               {**self.config, "outputs": outputs, "input": "u8 NHWC"})
        blob = ov_cache.load(entry)
        if blob is not None:
            try:
                return self.core.import_model(blob, "CPU", self.config)
            except RuntimeError:
                pass  # damaged, or from another build: compiled again below, and replaced
        compiled = self.core.compile_model(self._prepared(shape, outputs), "CPU", self.config)
        if entry is not None:
            ov_cache.store(entry, compiled.export_model().getvalue())
        return compiled

    def _prepared(self, shape: tuple[int, ...], outputs: tuple[str, ...]) -> Any:
        """The model for one uint8 NHWC picture of *shape*, cut down to *outputs*."""
        import openvino as ov
        from openvino.preprocess import PrePostProcessor

        height, width, channels = shape
        model = self.model.clone()
        model.reshape({self.input: [1, channels, height, width]})
        model = ov.Model([o for o in model.outputs if o.any_name in outputs], model.get_parameters(), "pruned")
        preprocess = PrePostProcessor(model)
        preprocess.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        preprocess.input().model().set_layout(ov.Layout("NCHW"))
        preprocess.input().preprocess().convert_element_type(ov.Type.f32)
        return preprocess.build()

    def images_to_blob(self, images: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
        """The pictures as they are (uint8 N x height x width x 3), zero-padded at the right and bottom."""
        blob = np.zeros((len(images), height, width, 3), np.uint8)
        for i, image in enumerate(images):
            blob[i, :image.shape[0], :image.shape[1]] = image
        return blob

    def run(self, outputs: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        blob = feeds[self.input]
        request = self._request(blob.shape[1:], tuple(outputs))
        results = [request.infer({0: blob[i:i + 1]}) for i in range(len(blob))]
        return [np.concatenate([r[name] for r in results]) for name in outputs]

    def describe(self) -> dict[str, Any]:
        import openvino as ov

        return {"runtime": f"openvino {ov.get_version().split('-')[0]}", "device": "cpu", "precision": "int8",
                "model": self.path.name, "model_sha256": ov_cache.file_digest(self.path)[:16]}


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class TorchRunner:
    """The ONNX graph converted to torch by onnx2torch, on *device*, in float16 when *half*."""

    def __init__(self, model: bytes, device: str = "cpu", half: bool = False):
        import onnx
        import torch
        from onnx2torch import convert

        graph = onnx.load_from_string(model)
        self.inputs = [i.name for i in graph.graph.input]
        self.outputs = [o.name for o in graph.graph.output]
        self.torch, self.device, self.half = torch, torch.device(device), half
        self.module = convert(graph).eval().to(self.device)
        if half:
            self.module = self.module.half()
        self.autotune = self.device.type == "cuda" and cudnn_autotune()
        if self.autotune:
            torch.backends.cudnn.benchmark = True  # the picture size is the same for a whole video

    def images_to_blob(self, images: Sequence[np.ndarray], height: int, width: int) -> Any:
        """The pictures go to the device as uint8 (a quarter of the float bytes) and are converted there.

        The batch is padded with blank pictures to a power of two: the engine's batches vary in
        size, and cuDNN's autotuning (``cudnn.benchmark``) runs again for every new input shape.
        The caller reads only the first ``len(images)`` results.
        """
        torch = self.torch
        with torch.inference_mode():
            batch = torch.from_numpy(np.stack(images)).to(self.device, non_blocking=True)
            blob = batch.permute(0, 3, 1, 2).to(torch.float16 if self.half else torch.float32)
            n, (h, w) = len(images), blob.shape[2:]
            return torch.nn.functional.pad(blob, (0, width - w, 0, height - h, 0, 0, 0, padded_batch(n) - n))

    def run(self, outputs: Sequence[str], feeds: dict[str, Any]) -> list[np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            args = [feeds[name] if isinstance(feeds[name], torch.Tensor) else
                    torch.from_numpy(np.ascontiguousarray(feeds[name])).to(self.device, non_blocking=True)
                    for name in self.inputs]
            if self.half:
                args = [a.half() if a.is_floating_point() else a for a in args]
            result = self.module(*args)
            if isinstance(result, torch.Tensor):
                result = (result,)
            wanted = [result[self.outputs.index(name)] for name in outputs]
            return [t.float().cpu().numpy() for t in wanted]

    def describe(self) -> dict[str, Any]:
        return {"runtime": "torch (onnx2torch)", "device": "gpu" if self.device.type == "cuda" else "cpu",
                "torch_device": str(self.device), "precision": "float16" if self.half else "float32",
                "cudnn_autotune": self.autotune}


def cudnn_autotune() -> bool:
    """Whether the torch backend lets cuDNN time its algorithms for each new input shape (the default).
    ``ANON_CUDNN_BENCHMARK=0`` turns that off: benchmarks/gpu_check.sh measures both, because on an H100
    the detector's busy time looked like a fixed cost of about 20 s per video (see BENCHMARKS.md, GPU)."""
    return os.environ.get("ANON_CUDNN_BENCHMARK", "1") != "0"


def padded_batch(n: int) -> int:
    """The batch size a batch of *n* pictures is padded to on the torch backend: the next power of two."""
    return 1 << max(0, n - 1).bit_length()


def torch_backend_available() -> bool:
    try:
        import onnx2torch  # noqa: F401
    except ImportError:
        return False
    return True


def load(model: Callable[[], bytes], threads: int = 0, providers: Sequence[str] | None = None,
         int8_model: Optional[Path] = None) -> Runner:
    """The fastest runner for the model *model()* serializes (see the module's docstring); *providers*
    forces ONNX Runtime's.

    *int8_model*: the same model quantized, used on the CPU when it exists and OpenVINO is installed; *model*
    is then not called (preparing the float graph takes about 2 s of each worker's start).
    """
    if providers is not None:
        return OnnxRuntimeRunner(model(), providers, threads)
    gpu_providers = accel.onnx_gpu_providers()
    if gpu_providers:
        return OnnxRuntimeRunner(model(), [*gpu_providers, "CPUExecutionProvider"], threads)
    gpu = accel.torch_cuda()
    if gpu is not None and torch_backend_available():
        return TorchRunner(model(), gpu.device, gpu.half)
    if int8_model is not None and int8_model.exists() and openvino_available():
        return OpenVinoRunner(int8_model, threads)
    return OnnxRuntimeRunner(model(), ["CPUExecutionProvider"], threads)
