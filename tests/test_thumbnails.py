"""The report's thumbnails: a few frames with faces, taken after the faces were hidden, never originals."""

from __future__ import annotations

import cv2
import numpy as np

from steps.anonymize import anonymize_file
from steps.ffio import Frame
from steps.settings import Settings
from steps.thumbnails import THUMB_HEIGHT, FaceFrameSampler
from tests.helpers import read_frames
from workflows.synthetic import make_sample_clip

FACE = np.array([[10, 10, 40, 40, 0.9]], np.float32)
NONE = np.zeros((0, 5), np.float32)


def frame(index: int, width: int = 64, height: int = 48) -> Frame:
    buffer = np.full(width * height * 3 // 2, index % 200, np.uint8)
    return Frame(index=index, pts=index, buffer=buffer, width=width, height=height)


def test_sampler_keeps_few_copies_spread_over_the_whole_video():
    sampler = FaceFrameSampler(count=4, height=24)
    frames = [frame(i) for i in range(5000)]
    most = 0
    for f in frames:
        sampler(f, FACE if f.index % 3 == 0 else NONE)  # faces in every third frame
        most = max(most, len(sampler.kept))
        f.buffer[:] = 255  # the engine hands the buffer on: the sampler must have copied what it keeps
    assert most <= 8  # bounded, whatever the length
    chosen = [index for index, _ in sampler.chosen()]
    assert len(chosen) == 4 and all(index % 3 == 0 for index in chosen)
    assert chosen[0] == 0 and chosen[-1] >= 3750  # from the start to the last quarter
    for index, picture in sampler.chosen():
        assert picture.shape == (24, 32, 3)
        assert abs(int(picture.mean()) - int(cv2.cvtColor(
            np.full((36, 32), index % 200, np.uint8), cv2.COLOR_YUV2BGR_I420).mean())) <= 1
    empty = FaceFrameSampler()
    for f in frames[:50]:
        empty(f, NONE)
    assert empty.chosen() == []


def test_strip_shows_the_anonymized_output_not_the_original(tmp_path):
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    truth = make_sample_clip(clip, seconds=1.0, audio=False)
    report = anonymize_file(clip, out, tmp_path / "out.report.json", Settings())
    assert report.status == "done" and report.thumbnails == str(tmp_path / "out.mp4.thumbs.jpg")
    strip = cv2.imread(report.thumbnails)
    assert strip.shape[0] == THUMB_HEIGHT
    tile_w = round(640 * THUMB_HEIGHT / 360 / 2) * 2
    tiles = [strip[:, i * (tile_w + 4): i * (tile_w + 4) + tile_w] for i in range(4)]
    assert strip.shape[1] == 4 * tile_w + 3 * 4
    size = (tile_w, THUMB_HEIGHT)
    outputs = [cv2.resize(f, size, interpolation=cv2.INTER_AREA).astype(np.float32) for f in read_frames(out)]
    inputs = [cv2.resize(f, size, interpolation=cv2.INTER_AREA).astype(np.float32) for f in read_frames(clip)]
    scale = THUMB_HEIGHT / 360
    for tile in tiles:
        tile = tile.astype(np.float32)
        errors = [float(np.mean((tile - o) ** 2)) for o in outputs]
        index = int(np.argmin(errors))
        x1, y1, x2, y2 = (round(v * scale) for v in truth[index][0])  # the large face
        face = (slice(y1, y2), slice(x1, x2))
        to_output = float(np.mean((tile[face] - outputs[index][face]) ** 2))
        to_input = float(np.mean((tile[face] - inputs[index][face]) ** 2))
        assert to_output < 40, to_output  # the output's frame, give or take JPEG
        assert to_input > 4 * to_output + 100, (to_input, to_output)  # not the original: its face is hidden


def test_a_frame_is_seen_in_rgb_at_any_size_with_its_colours_and_layout():
    """Frame.picture (the detector's, the audit's and the thumbnails' view of a frame): a red left half and a
    blue right half (BT.601 limited-range Y, U, V), shrunk (by half: area; by a quarter: bilinear), as it is
    and enlarged, in RGB and BGR order."""
    width, height = 64, 48
    y = np.empty((height, width), np.uint8)
    u, v = np.empty((height // 2, width // 2), np.uint8), np.empty((height // 2, width // 2), np.uint8)
    y[:, :32], u[:, :16], v[:, :16] = 81, 90, 240  # red
    y[:, 32:], u[:, 16:], v[:, 16:] = 41, 240, 110  # blue
    f = Frame(index=0, pts=0, buffer=np.concatenate([y.ravel(), u.ravel(), v.ravel()]), width=width, height=height)
    before = f.buffer.copy()
    for size in [(32, 24), (48, 36), (64, 48), (96, 72)]:
        rgb, bgr = f.picture(size), f.picture(size, bgr=True)
        assert rgb.shape == bgr.shape == (size[1], size[0], 3)
        assert np.array_equal(rgb, bgr[:, :, ::-1])
        left, right = rgb[:, : size[0] // 4].reshape(-1, 3), rgb[:, -size[0] // 4:].reshape(-1, 3)
        assert (np.abs(left.astype(int) - (255, 0, 0)) <= 3).all(), size
        assert (np.abs(right.astype(int) - (0, 0, 255)) <= 3).all(), size
    assert np.array_equal(f.buffer, before)  # the frame itself is not changed
