"""Faces at positions we placed ourselves are hidden; the rest of the picture is left alone."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from steps.anonymize import anonymize_file
from steps.detections import COLUMNS, read_detections
from steps.settings import Mode, Settings
from steps.tracking import iou_matrix
from tests import helpers as h
from workflows.synthetic import make_sample_clip

#: Highest structural similarity a hidden face may keep with the original, per mode.
MAX_SSIM = {Mode.blur: 0.45, Mode.pixelate: 0.6, Mode.solid: 0.1}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces")
    truth = make_sample_clip(folder / "faces.mp4", seconds=2)
    return folder / "faces.mp4", truth


@pytest.mark.parametrize("mode", [m for m in Mode if m != Mode.boxes])
def test_every_face_box_is_changed_and_far_pixels_are_not(clip, tmp_path, mode):
    path, truth = clip
    out = tmp_path / "anon.mp4"
    report = anonymize_file(path, out, tmp_path / "report.json", Settings(mode=mode))
    assert report.status == "done", report.error
    before, after = h.read_frames(path), h.read_frames(out)
    assert len(before) == len(after) == len(truth)
    for i, boxes in enumerate(truth):
        gray_before = cv2.cvtColor(before[i], cv2.COLOR_BGR2GRAY)
        gray_after = cv2.cvtColor(after[i], cv2.COLOR_BGR2GRAY)
        far = np.ones(gray_before.shape, bool)
        for x1, y1, x2, y2 in boxes:
            similarity = structural_similarity(gray_before[y1:y2, x1:x2], gray_after[y1:y2, x1:x2], data_range=255)
            assert similarity < MAX_SSIM[mode], f"frame {i}: face {x1, y1, x2, y2} still similar ({similarity:.2f})"
            cx, cy, w, hh = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            far[max(0, int(cy - hh)):int(cy + hh), max(0, int(cx - w)):int(cx + w)] = False
        change = np.abs(gray_before.astype(int) - gray_after.astype(int))[far].mean()
        assert change < 3.0, f"frame {i}: pixels far from faces changed by {change:.1f} on average"


def test_blur_is_strong_enough_to_remove_facial_detail(clip, tmp_path):
    path, truth = clip
    out = tmp_path / "anon.mp4"
    assert anonymize_file(path, out, tmp_path / "report.json", Settings()).status == "done"
    before, after = h.read_frames(path), h.read_frames(out)
    for i in (0, len(truth) // 2, len(truth) - 1):
        for x1, y1, x2, y2 in truth[i]:
            detail_before = cv2.Laplacian(cv2.cvtColor(before[i][y1:y2, x1:x2], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()
            detail_after = cv2.Laplacian(cv2.cvtColor(after[i][y1:y2, x1:x2], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()
            assert detail_after < 0.2 * detail_before


def test_boxes_mode_draws_the_detections_and_hides_nothing(clip, tmp_path):
    path, truth = clip
    out = tmp_path / "review.mp4"
    assert anonymize_file(path, out, tmp_path / "report.json", Settings(mode=Mode.boxes)).status == "done"
    before, after = h.read_frames(path), h.read_frames(out)
    for i in (0, len(truth) // 2, len(truth) - 1):
        gray_before = cv2.cvtColor(before[i], cv2.COLOR_BGR2GRAY)
        gray_after = cv2.cvtColor(after[i], cv2.COLOR_BGR2GRAY)
        for x1, y1, x2, y2 in truth[i]:
            w, hh = x2 - x1, y2 - y1  # the middle of the face is left as it was
            middle = (slice(y1 + hh // 4, y2 - hh // 4), slice(x1 + w // 4, x2 - w // 4))
            assert structural_similarity(gray_before[middle], gray_after[middle], data_range=255) > 0.8
            around = (slice(max(0, y1 - hh), y2 + hh), slice(max(0, x1 - w), x2 + w))
            drawn = np.abs(before[i][around].astype(int) - after[i][around].astype(int)).max(axis=2) > 60
            assert drawn.sum() > w, f"frame {i}: no outline drawn around {x1, y1, x2, y2}"


def test_every_hidden_box_is_exported_beside_the_report(clip, tmp_path):
    path, truth = clip
    report = anonymize_file(path, tmp_path / "anon.mp4", tmp_path / "anon.mp4.report.json", Settings())
    assert report.status == "done"
    assert report.detections == str(tmp_path / "anon.mp4.detections.csv.gz")
    rows = read_detections(tmp_path / "anon.mp4.detections.csv.gz")
    assert list(rows[0]) == COLUMNS and len(rows) == report.boxes_hidden >= report.faces_detected > 0
    times = {int(r["frame"]): float(r["time"]) for r in rows}
    assert all(abs(times[i] - i / 25) < 1e-3 for i in times)
    for i, faces in enumerate(truth):
        boxes = np.array([[float(r[k]) for k in ("x1", "y1", "x2", "y2")] for r in rows if int(r["frame"]) == i])
        assert len(boxes) >= len(faces)
        assert (iou_matrix(np.array(faces, float), boxes).max(axis=1) > 0.4).all(), f"frame {i}"
    assert {r["source"] for r in rows} <= {"detected", "filled", "held"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial-")]


def test_on_a_stride_the_detector_looks_at_one_frame_in_n_and_every_face_stays_hidden(clip, tmp_path):
    path, truth = clip
    report = anonymize_file(path, tmp_path / "anon.mp4", tmp_path / "anon.mp4.report.json",
                            Settings(detect_every=3))
    assert report.status == "done" and report.frames_out == len(truth)
    rows = read_detections(tmp_path / "anon.mp4.detections.csv.gz")
    detected = {int(r["frame"]) for r in rows if r["source"] == "detected"}
    last = len(truth) - 1
    assert last % 3 != 0  # so that the last look is one of its own
    # The frames between were not looked at; the last frame was: after it no later look bounds the tracker.
    assert detected == {*range(0, len(truth), 3), last}
    for i, faces in enumerate(truth):  # yet every placed face is covered in every frame, carried by its track
        boxes = np.array([[float(r[k]) for k in ("x1", "y1", "x2", "y2")] for r in rows if int(r["frame"]) == i])
        assert len(boxes) >= len(faces), f"frame {i}"
        assert (iou_matrix(np.array(faces, float), boxes).max(axis=1) > 0.4).all(), f"frame {i}"


def test_without_tracking_every_frame_is_looked_at_whatever_the_stride(clip, tmp_path):
    path, truth = clip
    report = anonymize_file(path, tmp_path / "anon.mp4", tmp_path / "anon.mp4.report.json",
                            Settings(detect_every=3, tracking=False))
    assert report.status == "done"
    rows = read_detections(tmp_path / "anon.mp4.detections.csv.gz")
    assert {int(r["frame"]) for r in rows if r["source"] == "detected"} == set(range(len(truth)))


@pytest.mark.parametrize("size,cells", [((450, 300), (3, 3)), ((90, 60), (3, 3)), ((640, 480), (8, 8)),
                                        ((699, 498), (3, 3)), ((328, 296), (8, 8))])
def test_a_regions_cells_are_the_means_of_the_pixels_they_cover(size, cells):
    """Each cell of the blur and the pixelation is the mean of the pixels it covers within 2 grey levels (large
    cells are averaged over a bilinear shrink of the region, not over every pixel): on bands that follow the
    cells, and on a photo whose cells are not whole pixels."""
    from steps.redact import _cell_means
    from workflows.synthetic import astronaut

    (width, height), (across, down) = size, cells
    means = np.arange(across * down, dtype=np.uint8).reshape(down, across) * 3
    bands = np.repeat(np.repeat(means, height // down, 0), width // across, 1)
    assert np.abs(_cell_means(np.ascontiguousarray(bands), across, down).astype(int) - means).max() <= 2

    photo = cv2.resize(cv2.cvtColor(astronaut(), cv2.COLOR_BGR2GRAY), (width + 7, height + 5))
    ours = _cell_means(photo, across, down).astype(int)
    every_pixel = cv2.resize(photo, (across, down), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(ours - every_pixel).max() <= 2


def test_the_mask_is_the_ellipse_with_a_soft_edge_outside_it():
    """Inside the ellipse a face is fully replaced; across a feather a few pixels wide outside it the hidden
    region fades back to the picture, so no hard edge is drawn; beyond it nothing changes."""
    from steps.redact import FEATHER, _alpha

    cx, cy, ax, ay = 100.0, 80.0, 60.0, 40.0
    alpha = _alpha((160, 200), cx, cy, ax, ay)
    ys, xs = np.mgrid[0:160, 0:200] + 0.5
    radius = np.hypot((xs - cx) / ax, (ys - cy) / ay)  # 1 on the ellipse
    feather = max(2.0, FEATHER * min(ax, ay)) / min(ax, ay)  # its width, in the same unit
    assert (alpha[radius <= 0.999] == 1).all() and (alpha[radius >= 1.001 + feather] == 0).all()
    band = (radius > 1 + 0.1 * feather) & (radius < 1 + 0.9 * feather)
    assert band.sum() > 100 and ((alpha[band] > 0.05) & (alpha[band] < 0.95)).all()


@pytest.mark.parametrize("size", [40, 100, 250, 400])
def test_a_large_faces_blur_is_the_gaussian_of_its_cells_within_2_grey_levels(size):
    """Large faces are smoothed at a reduced size (a Gaussian on the full region is slow with their large
    kernels); the result stays within 2 grey levels of the Gaussian on the full-size enlargement of the cells."""
    from steps.redact import BLUR_CELLS, _cell_means, _hidden
    from workflows.synthetic import astronaut

    region = np.ascontiguousarray(cv2.resize(cv2.cvtColor(astronaut(), cv2.COLOR_BGR2GRAY), (size, size * 11 // 10)))
    height, width = region.shape
    diameter = size / 1.06  # the ellipse's, in a region grown by its feather
    step = diameter / BLUR_CELLS
    cells = _cell_means(region, round(width / step), round(height / step))
    kernel = int(step) | 1
    enlarged = cv2.resize(cells, (width, height), interpolation=cv2.INTER_LINEAR)
    reference = cv2.GaussianBlur(enlarged, (kernel, kernel), 0)
    assert np.abs(_hidden(region, Mode.blur, 0, diameter).astype(int) - reference).max() <= 2
