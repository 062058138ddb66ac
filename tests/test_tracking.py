"""The tracker on detections we write ourselves: gaps, rolls, frames not detected, smoothing, bounded memory."""

from __future__ import annotations

import numpy as np

from steps.tracking import DETECTED, FILLED, HELD, MAX_REACH, SOURCE, TRACK, Tracker, TrackerConfig

NONE = np.zeros((0, 5), np.float32)


def face(x: float, y: float = 100, size: float = 40, score: float = 0.9) -> np.ndarray:
    return np.array([[x, y, x + size, y + size, score]], np.float32)


def run(config: TrackerConfig, frames: list) -> dict[int, np.ndarray]:
    """Push every frame's detections; return the boxes decided for each frame (each frame exactly once, in order)."""
    tracker = Tracker(config)
    decided = []
    for index, boxes in enumerate(frames):
        decided += tracker.push(index, boxes)
        assert len(tracker.pending) <= tracker.lag + 1
    decided += tracker.finish()
    assert [index for index, _ in decided] == list(range(len(frames)))
    return dict(decided)


def test_a_gap_is_filled_by_interpolation():
    frames = [face(10 * i) if i not in (5, 6, 7) else NONE for i in range(12)]
    out = run(TrackerConfig(max_gap=3, pre_roll=0, post_roll=0, smooth=0), frames)
    for i in (5, 6, 7):
        assert len(out[i]) == 1 and out[i][0, SOURCE] == FILLED
        centre = (out[i][0, 0] + out[i][0, 2]) / 2
        assert abs(centre - (10 * i + 20)) < 1.0  # where the face was: linear motion interpolated
        assert out[i][0, 0] <= 10 * i and out[i][0, 2] >= 10 * i + 40  # and the whole face is covered
    assert {int(out[i][0, TRACK]) for i in range(12)} == {0}


def test_a_gap_longer_than_max_gap_is_not_bridged():
    frames = [face(100) if i < 3 or i >= 10 else NONE for i in range(14)]
    out = run(TrackerConfig(max_gap=3, pre_roll=0, post_roll=2, smooth=0), frames)
    assert [len(out[i]) for i in range(3, 10)] == [1, 1, 0, 0, 0, 0, 0]  # post-roll only
    assert out[3][0, SOURCE] == HELD
    assert out[2][0, TRACK] != out[10][0, TRACK]  # a new track starts


def test_pre_roll_and_post_roll_hide_a_face_before_and_after_it_is_found():
    frames = [face(200) if 10 <= i < 15 else NONE for i in range(25)]
    out = run(TrackerConfig(pre_roll=4, post_roll=3, smooth=0), frames)
    covered = [i for i in range(25) if len(out[i])]
    assert covered == list(range(6, 18))
    assert all(out[i][0, SOURCE] == HELD for i in (6, 9, 15, 17))
    assert out[8][0, 0] < 200 and out[8][0, 2] > 240  # held boxes grow a little: the face may have moved


def test_post_roll_follows_the_motion():
    frames = [face(10 * i) if i < 10 else NONE for i in range(16)]
    out = run(TrackerConfig(pre_roll=0, post_roll=5, smooth=0), frames)
    for i in range(10, 15):
        box = out[i][0]
        assert box[0] <= 10 * i and box[2] >= 10 * i + 40, i  # where the face would be if it kept going


def test_frames_not_detected_carry_tracks_without_counting_as_misses():
    # Detection on every 5th frame only (a stride): the face moves 4 px a frame.
    frames = [face(4 * i) if i % 5 == 0 else None for i in range(41)]
    out = run(TrackerConfig(max_gap=1, pre_roll=0, post_roll=0, smooth=0, stride=5), frames)
    for i in range(41):
        assert len(out[i]) == 1, i
        box = out[i][0]
        assert box[0] <= 4 * i + 1 and box[2] >= 4 * i + 39, i
        assert box[SOURCE] == (DETECTED if i % 5 == 0 else FILLED)
    assert {int(out[i][0, TRACK]) for i in range(41)} == {0}


def test_on_a_stride_a_fast_face_keeps_its_track_and_is_covered_between_looks():
    # One look in 4 frames; the 40-px face moves 12 px a frame: 48 px, more than its size, between two looks.
    frames = [face(12 * i) if i % 4 == 0 else None for i in range(41)]
    out = run(TrackerConfig(max_gap=1, pre_roll=0, post_roll=0, smooth=0, stride=4), frames)
    assert {int(out[i][0, TRACK]) for i in range(41)} == {0}  # one track, not one per look
    for i in range(41):
        # Until its second look the track knew no velocity: that link was a jump, both ends held between and the
        # first look's box at the second (see below).
        assert len(out[i]) == (3 if 0 < i < 4 else 2 if i == 4 else 1), i
        box = out[i][0]
        assert box[0] <= 12 * i + 1 and box[2] >= 12 * i + 39, i  # interpolated where the face is
        assert box[SOURCE] == (DETECTED if i % 4 == 0 else FILLED)


def test_a_face_far_off_after_a_long_gap_starts_its_own_track():
    """However long since a track's last detection, a detection more than MAX_REACH faces from it is another face
    (a neighbour in a crowd), not the same one having moved."""
    frames = [face(100) if i < 3 else NONE for i in range(12)] + [face(100 + (MAX_REACH + 1) * 40)]
    out = run(TrackerConfig(max_gap=20, pre_roll=0, post_roll=0, smooth=0), frames)
    assert out[0][0, TRACK] != out[12][0, TRACK]
    assert all(len(out[i]) == 0 for i in range(3, 12))  # nothing interpolated towards the neighbour


def test_small_fast_faces_seen_far_apart_keep_one_track_and_are_covered():
    # A 20-px face panning 7 px a frame, seen one frame in 8 (a small face at 1080p is only found in the
    # full-resolution looks): 2.8 of its sizes between two looks.
    frames = [face(7 * i, size=20) if i % 8 == 0 else None for i in range(49)]
    out = run(TrackerConfig(max_gap=1, pre_roll=0, post_roll=0, smooth=0, stride=8), frames)
    assert {int(b[TRACK]) for i in range(49) for b in out[i]} == {0}
    for i in range(49):
        assert any(b[0] <= 7 * i + 1 and b[2] >= 7 * i + 19 for b in out[i]), i


def test_a_far_link_keeps_both_ends_covered():
    """A still face's track may be drawn to another face's detection three sizes off: whichever it was, both
    places stay hidden across the gap (the first face may still be there, the second may have been there)."""
    frames = [face(100) if i < 3 else NONE for i in range(12)] + [face(220)]
    out = run(TrackerConfig(max_gap=20, pre_roll=0, post_roll=0, smooth=0), frames)
    assert out[0][0, TRACK] == out[12][0, TRACK]  # linked: it could be one face that moved
    for i in range(3, 12):
        assert any(b[0] <= 220 and b[2] >= 260 for b in out[i]), i  # the second, had it been there
        assert {int(b[SOURCE]) for b in out[i]} == {FILLED, HELD}
    for i in range(3, 13):  # the first face, had it stayed: also where the second face is detected
        assert any(b[0] <= 100 and b[2] >= 140 for b in out[i]), i


def test_a_far_link_keeps_the_face_seen_before_covered_as_it_goes_on_moving():
    """A face moving right is lost (it leaves, say) and its track is drawn to a detection three sizes below where it
    was last seen: across the gap the face that went on moving stays covered for the post-roll, as if its track had
    ended (seen on bikes_cuts.mp4)."""
    frames = [face(10 * i) if i < 9 else NONE for i in range(16)] + [face(80, y=220)]
    out = run(TrackerConfig(max_gap=20, pre_roll=0, post_roll=5, smooth=0), frames)
    assert out[0][0, TRACK] == out[16][0, TRACK]  # linked: it could be one face that moved
    for i in range(9, 14):
        assert any(b[0] <= 10 * i and b[2] >= 10 * i + 40 and b[1] <= 100 and b[3] >= 140 for b in out[i]), i
    # The interpolated box and both ends' held boxes; the moving one for the post-roll only.
    assert [len(out[i]) for i in range(9, 16)] == [4, 4, 4, 4, 4, 3, 3]


def test_a_face_found_again_where_it_was_is_no_jump():
    # A face drifting 3 px a frame, then not found for 24 frames, is found again where it stopped: far from where
    # its velocity would have taken it, but not from where it was last seen. One box across the gap.
    frames = [face(100 + 3 * i) if i < 6 else NONE for i in range(30)] + [face(115)]
    out = run(TrackerConfig(max_gap=30, pre_roll=0, post_roll=0, smooth=0), frames)
    assert out[0][0, TRACK] == out[30][0, TRACK]
    assert all(len(out[i]) == 1 and out[i][0, SOURCE] == FILLED for i in range(6, 30))


def test_pre_roll_still_covers_where_a_face_was_first_found():
    # A face standing at x=200 until found at frame 10; its next detections run left (jitter, or it set off):
    # its path back is a guess, so where it was found stays covered too.
    frames = [NONE] * 10 + [face(200 - 8 * i) for i in range(6)]
    out = run(TrackerConfig(pre_roll=4, post_roll=0, smooth=0), frames)
    for i in range(6, 10):
        box = out[i][0]
        assert box[SOURCE] == HELD and box[0] <= 200 and box[2] >= 240, i


def test_pre_roll_comes_along_the_faces_path():
    # A face found from frame 10 on, moving 15 px a frame: before it was found it was further back on its way.
    frames = [face(15 * i) if i >= 10 else NONE for i in range(20)]
    out = run(TrackerConfig(pre_roll=4, post_roll=0, smooth=0), frames)
    for i in range(6, 10):
        box = out[i][0]
        assert box[SOURCE] == HELD and box[0] <= 15 * i and box[2] >= 15 * i + 40, i


def test_frames_detected_with_no_face_are_misses():
    frames = [face(100) if i % 5 == 0 else NONE for i in range(21)]
    out = run(TrackerConfig(max_gap=1, pre_roll=0, post_roll=0, smooth=0, stride=5), frames)
    assert len(out[2]) == 0  # four detected frames without the face: more than max_gap


def test_weak_detections_continue_a_track_but_never_start_one():
    frames = [face(100, score=0.9 if i < 3 else 0.15) for i in range(8)]
    frames += [NONE, face(600, score=0.15), face(600, score=0.15)]
    out = run(TrackerConfig(threshold=0.3, keep_threshold=0.1, pre_roll=0, post_roll=0, smooth=0), frames)
    assert all(len(out[i]) == 1 for i in range(8))
    assert len(out[9]) == 0 and len(out[10]) == 0


def test_two_faces_crossing_keep_their_tracks():
    frames = [np.concatenate([face(10 * i, y=50), face(300 - 10 * i, y=200)]) for i in range(30)]
    out = run(TrackerConfig(pre_roll=0, post_roll=0, smooth=0), frames)
    for i in range(30):
        by_track = {int(b[TRACK]): b for b in out[i]}
        assert set(by_track) == {0, 1}
        assert by_track[0][1] < 100 < by_track[1][1]


def test_smoothing_steadies_the_box_and_still_covers_each_detection():
    rng = np.random.default_rng(3)
    jitter = rng.normal(0, 3, (60, 4))
    raw = [face(5 * i) + np.array([[*jitter[i], 0]], np.float32) for i in range(60)]
    out = run(TrackerConfig(pre_roll=0, post_roll=0, smooth=3), raw)
    for i in range(60):
        r, b = raw[i][0], out[i][0]
        assert b[0] <= r[0] + 1e-3 and b[1] <= r[1] + 1e-3 and b[2] >= r[2] - 1e-3 and b[3] >= r[3] - 1e-3

    def wobble(boxes):  # second difference of the box centre: zero for steady motion
        centre = np.array([(b[0] + b[2]) / 2 for b in boxes])
        return np.abs(np.diff(centre, 2)).mean()

    assert wobble([out[i][0] for i in range(5, 55)]) < 0.5 * wobble([raw[i][0] for i in range(5, 55)])


def test_memory_stays_bounded_on_a_long_video():
    config = TrackerConfig()
    tracker = Tracker(config)
    for i in range(5000):
        boxes = face(i % 500) if i % 7 else NONE
        tracker.push(i, boxes)
        assert len(tracker.pending) <= tracker.lag + 1
        assert sum(len(t.frames) for t in tracker.tracks) < 50
    assert len(tracker.finish()) <= tracker.lag + 1


def test_without_tracking_each_frame_stands_alone():
    frames = [face(100, score=0.5), NONE, face(100, score=0.2)]
    out = run(TrackerConfig(enabled=False, threshold=0.3), frames)
    assert len(out[0]) == 1 and len(out[1]) == 0 and len(out[2]) == 0
    assert Tracker(TrackerConfig(enabled=False)).lag == 0


def test_a_detection_of_another_size_starts_its_own_track():
    """A small weak box, then a large face near it: the face is not interpolated from the small box (it would
    be half uncovered in the frames between), it starts a track held over the frames before it."""
    small = np.array([[100, 100, 125, 133, 0.9]], np.float32)
    large = np.array([[72, 167, 169, 284, 0.9]], np.float32)  # centres less than a face apart, four times larger
    frames = [small, None, None, large, None, None, large]
    out = run(TrackerConfig(pre_roll=2, post_roll=0, smooth=0, stride=3), frames)
    for i in (1, 2):  # the frames before the large face was found cover it whole
        assert any((b[0] <= 72 and b[1] <= 167 and b[2] >= 169 and b[3] >= 284) for b in out[i]), out[i]
    assert len({int(b[TRACK]) for i in (0, 3) for b in out[i]}) == 2
