"""What this machine offers the pipeline: a CUDA GPU, ffmpeg's CUDA decoding, NVENC. Probed once per process.

Each capability is checked by a tiny real run (a test decode, a test encode, a CUDA query),
because "compiled in" is not "works here": an H100 has no NVENC, a container may lack the
driver's video libraries, an ffmpeg build may have no CUDA at all. Whatever fails falls back
to the CPU without an error. ``ANON_DEVICE=cpu`` forces the CPU path (benchmarks, debugging).

The detectors ask :func:`torch_cuda` (device and half precision for torch backends) and
:func:`onnx_gpu_providers` (ONNX Runtime's GPU execution providers); the engine asks
:func:`video_path` for the decoder's hwaccel and the encoder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

DEVICE_ENV = "ANON_DEVICE"
_PROBE_TIMEOUT = 30


def cpu_forced() -> bool:
    """True when ``ANON_DEVICE=cpu`` asks for the CPU path whatever the machine has."""
    return os.environ.get(DEVICE_ENV, "auto").strip().lower() == "cpu"


@lru_cache(maxsize=1)
def nvidia_driver() -> bool:
    """True when an NVIDIA driver is loaded (cheap: no library is imported)."""
    return (Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()
            or shutil.which("nvidia-smi") is not None)


def gpu_count() -> int:
    """NVIDIA GPUs visible to this process (0 without a driver), as ``nvidia-smi -L`` lists them."""
    if not nvidia_driver() or shutil.which("nvidia-smi") is None:
        return 0
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=_PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU ")) if listed.returncode == 0 else 0


@dataclass(frozen=True)
class TorchCuda:
    """The CUDA device torch sees: what torch backends (YOLO, CenterFace through onnx2torch) run on."""

    device: str  # "cuda:0"
    name: str
    capability: tuple[int, int]
    half: bool  # float16 is fast and supported (compute capability 7.0 and later: tensor cores)


@lru_cache(maxsize=1)
def torch_cuda() -> Optional[TorchCuda]:
    """The GPU torch can use, or None (no driver, no torch, CPU-only torch, or ``ANON_DEVICE=cpu``)."""
    if cpu_forced() or not nvidia_driver():
        return None  # torch is not even imported: it is large and a CPU worker does not need it
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        capability = torch.cuda.get_device_capability(0)
        return TorchCuda("cuda:0", torch.cuda.get_device_name(0), capability, capability >= (7, 0))
    except Exception:  # noqa: BLE001 - a broken CUDA set-up means the CPU path, not a failure
        return None


@lru_cache(maxsize=1)
def onnx_gpu_providers() -> tuple[str, ...]:
    """ONNX Runtime's GPU execution providers usable here, best first (TensorRT, CUDA); empty on the CPU path."""
    if cpu_forced() or not nvidia_driver():
        return ()
    import onnxruntime as ort

    available = ort.get_available_providers()
    return tuple(p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available)


def _ffmpeg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", *args], capture_output=True,
                          text=True, timeout=_PROBE_TIMEOUT, stdin=subprocess.DEVNULL)


def _works(*args: str) -> bool:
    try:
        result = _ffmpeg(*args)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and not result.stderr.strip()


@lru_cache(maxsize=1)
def cuda_decoding() -> bool:
    """True when ffmpeg decodes H.264 on the GPU here: a tiny clip is encoded, then decoded with ``-hwaccel cuda``."""
    if cpu_forced() or not nvidia_driver():
        return False
    with tempfile.TemporaryDirectory(prefix="anon-hwaccel-") as folder:
        clip = os.path.join(folder, "probe.mp4")
        if not _works("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", "8", "-c:v", "libx264",
                      "-pix_fmt", "yuv420p", "file:" + clip):
            return False
        return _works("-hwaccel", "cuda", "-i", "file:" + clip, "-f", "null", "-")


@lru_cache(maxsize=1)
def nvenc() -> bool:
    """True when ffmpeg can encode with h264_nvenc here (a tiny test encode; an H100 has no NVENC)."""
    if cpu_forced() or not nvidia_driver():
        return False
    return _works("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", "4", "-c:v", "h264_nvenc",
                  "-pix_fmt", "yuv420p", "-f", "null", "-")


@lru_cache(maxsize=1)
def gpu_name() -> Optional[str]:
    """The GPU this worker's detector can use (torch's or ONNX Runtime's), or None."""
    gpu = torch_cuda()
    if gpu is not None:
        return gpu.name
    if not onnx_gpu_providers():
        return None
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=_PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return "NVIDIA GPU"
    return (listed.stdout.strip().splitlines() or ["NVIDIA GPU"])[0]


@dataclass(frozen=True)
class VideoPath:
    """How ffmpeg decodes and encodes on this machine."""

    hwaccel: Optional[str]  # the decoder's -hwaccel, or None for software decoding
    encoder: str  # "h264_nvenc" or "libx264"

    def describe(self) -> dict[str, Any]:
        return {"decoder": f"ffmpeg -hwaccel {self.hwaccel}" if self.hwaccel else "ffmpeg (software)",
                "encoder": self.encoder}


def video_path() -> VideoPath:
    """The fastest decode and encode that work here; software decoding and libx264 (all cores) otherwise."""
    return VideoPath("cuda" if cuda_decoding() else None, "h264_nvenc" if nvenc() else "libx264")


def describe() -> dict[str, Any]:
    """The machine's side of the path, for reports and benchmarks: GPU, CPU cores, decoder, encoder.

    Where the detector runs (ONNX Runtime provider, torch on CUDA) is in the detector's own description.
    """
    facts = {"gpu": gpu_name(), "cpu_cores": os.cpu_count(), **video_path().describe()}
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # a worker pinned to one GPU by workflows run --gpus
        facts["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return facts
