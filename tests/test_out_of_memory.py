"""Out of memory in the detector: one retry with half the batch, then a transient failure (exit 75).

The errors are the frameworks' own: torch.cuda.OutOfMemoryError (constructed, as torch raises
it; there is no GPU here), and ONNX Runtime's real allocation failure, provoked on the CPU by
capping its memory arena so that a batch of 8 frames does not fit and 4 do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from steps import anonymize as anonymize_step
from steps.detectors.base import NO_BOXES, Detector
from steps.detectors.oom import HalvingOnOutOfMemory, is_out_of_memory
from steps.errors import TransientError
from steps.settings import Settings
from tests.conftest import ROOT
from workflows.synthetic import make_sample_clip

torch = pytest.importorskip("torch")


class TightGpu(Detector):
    """Raises torch's CUDA out-of-memory error for batches above *fits* frames; else finds no face."""

    name = "tight-gpu"

    def __init__(self, fits: int, first_call_seconds: float = 0.0):
        self.fits, self.calls, self.first_call_seconds = fits, [], first_call_seconds

    def input_size(self, width, height):
        return 64, 36

    def infer(self, images):
        self.calls.append(len(images))
        if len(self.calls) == 1:
            time.sleep(self.first_call_seconds)  # lets the decoder fill the queue: the next batches are full
        if len(images) > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total "
                                              "capacity; 6.10 GiB already allocated)")
        return [NO_BOXES for _ in images]


def frames(n):
    return [np.zeros((36, 64, 3), np.uint8) for _ in range(n)]


def test_halves_the_batch_once_and_keeps_it_halved():
    detector = TightGpu(fits=2)
    detect = HalvingOnOutOfMemory(detector)
    assert len(detect(frames(4))) == 4
    assert detector.calls == [4, 2, 2] and detect.batch_limit == 2
    assert len(detect(frames(3))) == 3  # the next batches go in halves straight away
    assert detector.calls[3:] == [2, 1]


def test_a_second_out_of_memory_is_transient():
    detect = HalvingOnOutOfMemory(TightGpu(fits=1))
    with pytest.raises(TransientError, match="even with 2 frames per batch"):
        detect(frames(4))
    with pytest.raises(TransientError, match="on a single frame"):
        HalvingOnOutOfMemory(TightGpu(fits=0))(frames(1))


def test_other_errors_pass_through():
    class Broken(TightGpu):
        def infer(self, images):
            raise ValueError("a bug, not memory")

    with pytest.raises(ValueError):
        HalvingOnOutOfMemory(Broken(fits=8))(frames(4))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))  # torch before OutOfMemoryError existed


#: Runs CenterFace with ONNX Runtime's CPU memory arena capped at argv[1] bytes, through the wrapper.
ORT_SCRIPT = """
import json, sys
import numpy as np, onnxruntime as ort
info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
ort.create_and_register_allocator(info, ort.OrtArenaCfg(int(sys.argv[1]), -1, -1, -1))
ort.set_default_logger_severity(4)
from steps.detectors.centerface import CenterFace, model_bytes
from steps.detectors.oom import HalvingOnOutOfMemory
from steps.errors import TransientError
detector = CenterFace(providers=["CPUExecutionProvider"], threads=1)
options = ort.SessionOptions()
options.add_session_config_entry("session.use_env_allocators", "1")  # the capped arena
options.intra_op_num_threads = 1
detector.runner.session = ort.InferenceSession(model_bytes(), options, providers=["CPUExecutionProvider"])
images = [np.zeros((180, 320, 3), np.uint8) for _ in range(8)]
try:
    direct = detector.detect(images)
    print(json.dumps({"direct": "ok"}))
except Exception as exc:
    print(json.dumps({"direct": type(exc).__module__ + "." + type(exc).__name__, "message": str(exc)[-200:]}))
detect = HalvingOnOutOfMemory(detector)
try:
    print(json.dumps({"boxes": len(detect(images)), "batch_limit": detect.batch_limit}))
except TransientError as exc:
    print(json.dumps({"transient": str(exc)}))
"""


@pytest.mark.parametrize("arena,expected", [(60_000_000, "halved"), (30_000_000, "transient")])
def test_onnx_runtime_out_of_memory_is_caught(arena, expected):
    result = subprocess.run([sys.executable, "-c", ORT_SCRIPT, str(arena)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 2, result.stdout + result.stderr
    direct, wrapped = lines
    assert direct["direct"].startswith("onnxruntime"), direct  # a batch of 8 really does not fit
    assert "smaller than requested bytes" in direct["message"]
    if expected == "halved":
        assert wrapped == {"boxes": 8, "batch_limit": 4}
    else:
        assert "even with 4 frames per batch" in wrapped["transient"]


def test_a_video_goes_on_with_half_the_batch_or_fails_as_transient(tmp_path, monkeypatch):
    clip = tmp_path / "in.mp4"
    # 30 frames, 9 of them looked at (one in 4, and the last): whatever the first batch took, at least 5 wait behind the
    # first call's pause, so a batch of 4 comes, does not fit, and is halved (fine_every=1: all at one size,
    # so no batch is split between two).
    make_sample_clip(clip, seconds=1.2, width=160, height=90)
    for fits, status in ((2, "done"), (0, "failed")):
        monkeypatch.setattr(anonymize_step, "_detector", lambda settings, threads, fits=fits: TightGpu(fits, 1.0))
        out = tmp_path / f"out{fits}.mp4"
        report = anonymize_step.anonymize_file(clip, out, tmp_path / f"{fits}.json",
                                               Settings(batch=4, fine_every=1))
        assert report.status == status, report.error
        if status == "done":
            assert "ran out of memory with 4 frames per batch; it went on with 2" in report.note
            assert report.frames_out == 30 and out.is_file()
        else:
            assert report.exit_code == 75 and report.error_kind == "transient"
            assert "ran out of memory" in report.error and not out.exists()
        assert not list(tmp_path.glob(".partial-*"))
