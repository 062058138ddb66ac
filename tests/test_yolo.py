"""The YOLO backend: a real ultralytics model (built from its yaml, random weights) through the real code path,
offline, and known boxes through its post-processing and the redaction."""

from __future__ import annotations

import shutil
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")

from steps.anonymize import anonymize_file  # noqa: E402
from steps.detectors import load  # noqa: E402
from steps.detectors.yolo import HEAD_HEIGHT_PER_WIDTH, Yolo, offline_ultralytics  # noqa: E402
from steps.redact import hide  # noqa: E402
from steps.report import VideoReport  # noqa: E402
from steps.settings import Mode, Settings, Target  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from workflows.synthetic import make_sample_clip  # noqa: E402

NAMES = {0: "person", 1: "bicycle", 2: "face"}


@pytest.fixture(scope="module")
def no_network():
    """Any attempt to open a network connection fails the test."""
    original = socket.socket.connect

    def refuse(self, address):
        raise AssertionError(f"network access attempted: {address}")

    socket.socket.connect = refuse
    yield
    socket.socket.connect = original


@pytest.fixture(scope="module")
def weights(tmp_path_factory, no_network):
    """A YOLOv8n detection model with random weights and three named classes, saved as a .pt file."""
    offline_ultralytics()
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml", task="detect")
    model.model.names = dict(NAMES)
    path = tmp_path_factory.mktemp("yolo") / "random.pt"
    model.save(str(path))
    return path


def _results(boxes: list[list[float]], shape=(360, 640)):
    from ultralytics.engine.results import Results

    return Results(np.zeros((*shape, 3), np.uint8), "frame", NAMES, boxes=torch.tensor(boxes, dtype=torch.float32))


def test_a_real_model_runs_batched_on_the_engines_pictures(weights, no_network):
    detector = load(Settings(detector="yolo", model=weights, threshold=0.3))
    assert isinstance(detector, Yolo) and detector.device == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert detector.classes == [2]  # the class named face
    size = detector.input_size(640, 360)
    assert size == (960, 540)  # small frames are enlarged so that small faces are found
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) for _ in range(3)]
    found = detector.detect(images)
    assert len(found) == 3
    for boxes in found:
        assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 5
        assert (boxes[:, 4] >= 0.1).all()  # the detector reports down to the tracker's keep threshold


def test_known_boxes_keep_the_targets_class_and_persons_become_heads(weights):
    faces = Yolo(weights, threshold=0.3, target="face")
    heads = Yolo(weights, threshold=0.3, target="person")
    bodies = Yolo(weights, threshold=0.3, target="person", whole_person=True)
    result = _results([[100, 50, 140, 100, 0.9, 2],    # a face
                       [300, 40, 360, 240, 0.8, 0],    # a standing person, 60 x 200
                       [400, 100, 500, 150, 0.95, 1],  # a bicycle
                       [10, 10, 30, 30, 0.2, 2]])      # a face under the threshold
    assert faces.boxes_of(result).tolist() == [[100, 50, 140, 100, pytest.approx(0.9)]]
    head = heads.boxes_of(result)
    assert head[:, :4].tolist() == [[300, 40, 360, 40 + HEAD_HEIGHT_PER_WIDTH * 60]]
    assert bodies.boxes_of(result)[:, :4].tolist() == [[300, 40, 360, 240]]


def test_known_person_boxes_come_out_blurred(weights):
    """A person box from the model's output, through the post-processing and the redaction."""
    rng = np.random.default_rng(1)
    y = rng.integers(16, 235, (360, 640), dtype=np.uint8)
    u, v = np.full((180, 320), 128, np.uint8), np.full((180, 320), 128, np.uint8)
    before = y.copy()
    boxes = Yolo(weights, target="person").boxes_of(_results([[200, 40, 280, 300, 0.9, 0]]))
    hide((y, u, v), boxes, Mode.blur, 1.3)
    head = (slice(45, 80), slice(210, 270))
    assert np.abs(y[head].astype(int) - before[head]).mean() > 20  # the head region lost its detail
    assert y[head].std() < before[head].std() / 4
    assert (y[200:300, 200:280] == before[200:300, 200:280]).all()  # the legs are not the head


def test_the_pipeline_runs_with_yolo_and_says_so(weights, tmp_path):
    clip = tmp_path / "in.mp4"
    make_sample_clip(clip, seconds=0.4, audio=False)
    report = anonymize_file(clip, tmp_path / "out.mp4", tmp_path / "out.report.json",
                            Settings(detector="yolo", model=weights, target=Target.person))
    assert report.status == "done", report.error
    assert report.detector["name"] == "yolo" and report.detector["classes"] == [0]
    assert report.frames_out == 10


def test_a_local_run_takes_the_model_path_relative_to_where_it_was_started(weights, tmp_path):
    """The workers `workflows run` starts get --model as it was typed: they run in the same folder."""
    (tmp_path / "in").mkdir()
    make_sample_clip(tmp_path / "in" / "a.mp4", seconds=0.2, audio=False)
    shutil.copy(weights, tmp_path / "weights.pt")
    result = run_cli("workflows", "run", "in", "out", "--detector", "yolo", "--model", "weights.pt",
                     "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = VideoReport.load(tmp_path / "out" / "a.mp4.report.json")
    assert report.status == "done" and report.detector["name"] == "yolo", report.error


def test_yolo_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="needs --model"):
        Settings(detector="yolo")
    with pytest.raises(ValueError, match="--target person needs --detector yolo"):
        Settings(target="person")
    clip = tmp_path / "in.mp4"
    make_sample_clip(clip, seconds=0.2, audio=False)
    report = anonymize_file(clip, tmp_path / "o.mp4", tmp_path / "r.json",
                            Settings(detector="yolo", model=tmp_path / "nothing.pt"))
    assert report.status == "failed" and report.exit_code == 3
    assert "nothing.pt" in report.error and "does not exist" in report.error
    assert not (tmp_path / "o.mp4").exists()
