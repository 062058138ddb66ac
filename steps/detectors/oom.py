"""Out of memory on the GPU: retry once with half the batch, then fail as transient.

A batch that fits one video may not fit another (a 4K frame's detector copy is no bigger,
but YOLO at a higher resolution or a GPU shared with other pods leaves less room), so the
first out-of-memory error halves the batch for the rest of the video; a second one is a
TransientError (exit 75): Argo retries the pod, maybe on a GPU with more free memory.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Optional

import numpy as np

from steps.detectors.base import Boxes, Detector
from steps.errors import TransientError, one_sentence

#: How ONNX Runtime words an allocation failure (CUDA, TensorRT, its own memory arena), in the
#: message of the Fail / RuntimeException / EPFail it raises; older torch raised RuntimeError so.
_MESSAGES = ("out of memory", "failed to allocate memory", "is smaller than requested bytes",
             "cudnn_status_alloc_failed", "cublas_status_alloc_failed")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a framework's out-of-memory failure: torch.cuda.OutOfMemoryError, ONNX Runtime's, MemoryError."""
    torch = sys.modules.get("torch")  # never imported here: only a detector that uses torch has loaded it
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    if isinstance(exc, MemoryError):
        return True
    from_runtime = type(exc).__module__.startswith("onnxruntime") or isinstance(exc, RuntimeError)
    return from_runtime and any(message in str(exc).lower() for message in _MESSAGES)


def _release_cached_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class HalvingOnOutOfMemory:
    """``detector.detect`` that survives one out-of-memory error by halving the batch for good.

    ``batch_limit`` is None until that happens, then the number of frames per call.
    """

    def __init__(self, detector: Detector):
        self.detector = detector
        self.batch_limit: Optional[int] = None

    def __call__(self, images: Sequence[np.ndarray]) -> list[Boxes]:
        if self.batch_limit is None:
            try:
                return self.detector.detect(images)
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
                if not is_out_of_memory(exc):
                    raise
                if len(images) < 2:
                    raise TransientError(one_sentence(f"the detector ran out of memory on a single frame ({exc})")) \
                        from exc
                self.batch_limit = (len(images) + 1) // 2
                _release_cached_memory()
                print(f"the detector ran out of memory with {len(images)} frames per batch: retrying with "
                      f"{self.batch_limit}", file=sys.stderr, flush=True)
        limit = self.batch_limit
        try:
            return [boxes for start in range(0, len(images), limit)
                    for boxes in self.detector.detect(images[start:start + limit])]
        except Exception as exc:  # noqa: BLE001
            if is_out_of_memory(exc):
                raise TransientError(one_sentence(f"the detector ran out of memory even with {limit} frames per "
                                                  f"batch ({exc})")) from exc
            raise
