"""Faces followed across frames, so that a face the detector misses for a few frames stays hidden.

Detections are linked into tracks online (IoU and centre distance against each track's
constant-velocity prediction, assigned with the Hungarian method; confident detections first,
then weaker ones that may only continue an existing track, as ByteTrack does). A frame's
boxes are decided only once ``lag`` more frames have been seen, which is what allows:

- **gap filling**: a track missed for up to ``max_gap`` detected frames and found again is
  interpolated across the gap;
- **pre-roll**: a track is hidden ``pre_roll`` frames before its first detection (faces are
  often found late, when they have fully entered or turned), where it was first found and back
  along its first detections' path;
- **post-roll**: and ``post_roll`` frames after its last one, moving on its last velocity;
- **jumps**: the longer since a track's last detection, the farther a detection may be and still
  continue it (a small face seen only in the full-resolution looks moves several of its sizes
  between two); such a link may be wrong, so across its gap both ends' boxes stay as well;
- **smoothing**: each box is the average of the track's boxes ``smooth`` frames either side,
  widened to still cover the raw detection, so the blur neither jitters nor uncovers a face;
- **motion**: a moving face's box is stretched by one frame's travel along its path (the
  shutter smears a moving face over that distance).

Frames given without detections (``None``: the detector did not look at them, e.g. on a
stride) are different from frames where it looked and found nothing: tracks carry their
boxes across them and are not counted as missed. Memory is bounded by ``lag`` frames and
the tracks alive in them.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy.optimize import linear_sum_assignment

from steps.detectors.base import Boxes

#: What each output box is, in column SOURCE: found by the detector in this frame, interpolated
#: between two detections, or held (pre-roll, post-roll, or carried over a frame not detected);
#: AUDITED boxes never come from the tracker: the audit pass found them left visible (steps.audit).
DETECTED, FILLED, HELD, AUDITED = 0, 1, 2, 3
#: Output columns: x1, y1, x2, y2, score, track id, source.
TRACK, SOURCE = 5, 6
NO_TRACKED = np.zeros((0, 7), np.float32)
#: Growth of a box per frame away from the detection it comes from (motion it may not know of).
GROWTH_PER_FRAME = 0.04
MAX_GROWTH = 1.5
#: A detection whose longest side is more than this many times a track's (or less than its inverse)
#: does not continue that track.
MAX_SIZE_RATIO = 2.0
#: Velocity is fitted over the detections of this many last frames (detections jitter).
VELOCITY_FRAMES = 8
#: A detection continues a track when its centre is within NEAR face sizes of the track's prediction, or, the
#: longer since the track's last detection, up to MAX_SPEED face sizes per frame since, but never more than
#: MAX_REACH sizes. Between two looks a stride apart a fast face moves more than its size (a face crossing a
#: 640-pixel frame in two seconds, on a stride of 4), and a small face at 1080p is only seen in the
#: full-resolution looks, 8 frames apart by default (16 to 26-pixel faces panning 6 pixels a frame: 3 sizes);
#: a track of one detection knows no velocity yet. Such a far link may also be wrong (a still face's track
#: drawn to a weak detection 3 sizes off, seen on hamilton_audio.mp4), so a detection found farther than NEAR
#: both from where its track was expected and from its last detection is a jump, across which both ends'
#: boxes stay (Tracker._jump_cover).
NEAR = 1.0
MAX_SPEED = 0.5
MAX_REACH = 4.0


@dataclass(frozen=True)
class TrackerConfig:
    enabled: bool = True
    threshold: float = 0.3  # a detection at or above it is hidden and may start a track
    keep_threshold: float = 0.1  # a weaker detection is used only to continue a track
    max_gap: int = 10
    pre_roll: int = 4
    post_roll: int = 6
    smooth: int = 2
    min_iou: float = 0.1
    #: Detection runs on one frame in this many (the others are pushed as None): gaps are counted in
    #: detected frames, so bridging one takes this many times more frames of look-ahead.
    stride: int = 1
    #: Frames held back; at least what gap filling, pre-roll and smoothing need.
    lag: int = 0

    @property
    def frames_held(self) -> int:
        if not self.enabled:
            return 0
        return max(self.lag, (self.max_gap + 1) * self.stride, self.pre_roll, self.smooth)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of *a* (N x >=4) with every box of *b* (M x >=4)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _to_cwh(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]], np.float64)


def _from_cwh(cwh: np.ndarray, grow: float = 1.0) -> np.ndarray:
    cx, cy, w, h = cwh
    return np.array([cx - w * grow / 2, cy - h * grow / 2, cx + w * grow / 2, cy + h * grow / 2], np.float64)


def _growth(steps: int) -> float:
    """How much a box held or interpolated *steps* frames away from its detection is enlarged."""
    return min(MAX_GROWTH, 1 + GROWTH_PER_FRAME * steps)


def _sizes_apart(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between the centres of boxes *a* and *b*, in the larger one's longest sides."""
    ca, cb = _to_cwh(a), _to_cwh(b)
    return float(np.linalg.norm(ca[:2] - cb[:2]) / max(ca[2:].max(), cb[2:].max(), 1.0))


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])], np.float64)


@dataclass
class Track:
    id: int
    frames: list[int] = field(default_factory=list)  # frames where it was detected, increasing
    boxes: list[np.ndarray] = field(default_factory=list)  # x1, y1, x2, y2, score at those frames
    misses: int = 0  # detected frames since its last detection
    jumps: set[int] = field(default_factory=set)  # frames of detections that were jumps (see MAX_REACH)
    ended: bool = False
    #: velocity() and smoothed() results, valid until the detections change (each frame between two
    #: detections asks for the same ones again); read-only arrays, so no caller can alter them.
    _memo: dict = field(default_factory=dict, repr=False)

    def add(self, frame: int, box: np.ndarray) -> None:
        """A new detection, after the others."""
        self.frames.append(frame)
        self.boxes.append(np.asarray(box[:5], np.float64))
        self._memo.clear()

    def drop_first(self, count: int) -> None:
        """Forget the *count* oldest detections."""
        del self.frames[:count]
        del self.boxes[:count]
        self.jumps = {f for f in self.jumps if self.frames and f >= self.frames[0]}
        self._memo.clear()

    def _memoized(self, key: tuple, compute) -> np.ndarray:
        if key not in self._memo:
            value = compute()
            value.flags.writeable = False
            self._memo[key] = value
        return self._memo[key]

    def velocity(self) -> np.ndarray:
        """Centre and size change per frame: a least-squares line through its recent detections (zero with one)."""
        return self.velocity_at(len(self.frames) - 1)

    def velocity_at(self, position: int) -> np.ndarray:
        """velocity() as it was at detection *position*, from the detections up to it."""
        return self._memoized(("velocity", position), lambda: self._velocity_at(position))

    def _velocity_at(self, position: int) -> np.ndarray:
        first = bisect.bisect_left(self.frames, self.frames[position] - VELOCITY_FRAMES)
        return self._fit(min(first, position - 1), position + 1)

    def start_velocity(self) -> np.ndarray:
        """The same as velocity(), over its first detections (where it came from, for the pre-roll)."""
        return self._memoized(("start_velocity",), self._start_velocity)

    def _start_velocity(self) -> np.ndarray:
        return self._fit(0, max(2, bisect.bisect_right(self.frames, self.frames[0] + VELOCITY_FRAMES)))

    def _fit(self, first: int, end: int) -> np.ndarray:
        """Least-squares change per frame of centre and size over detections first..end-1 (zero with one)."""
        if first < 0 or end - first < 2 or end > len(self.frames):
            return np.zeros(4)
        t = np.array(self.frames[first:end], np.float64)
        x = np.array([_to_cwh(b) for b in self.boxes[first:end]])
        t -= t.mean()
        return (t[:, None] * (x - x.mean(axis=0))).sum(axis=0) / (t * t).sum()

    def predict(self, frame: int) -> np.ndarray:
        """Where the track's box should be at *frame* (constant velocity), x1, y1, x2, y2."""
        cwh = _to_cwh(self.boxes[-1]) + self.velocity() * (frame - self.frames[-1])
        cwh[2:] = np.maximum(cwh[2:], _to_cwh(self.boxes[-1])[2:] * 0.5)
        return _from_cwh(cwh)

    def smoothed(self, position: int, smooth: int) -> np.ndarray:
        """The average box (centre and size) of its detections within *smooth* frames of detection *position*."""
        return self._memoized(("smoothed", position, smooth), lambda: self._smoothed(position, smooth))

    def _smoothed(self, position: int, smooth: int) -> np.ndarray:
        frame = self.frames[position]
        lo = bisect.bisect_left(self.frames, frame - smooth)
        hi = bisect.bisect_right(self.frames, frame + smooth)
        cwh = np.mean([_to_cwh(b) for b in self.boxes[lo:hi]], axis=0)
        return _union(_from_cwh(cwh), self.boxes[position])


class Tracker:
    """Feed it every frame in order (:meth:`push`); it hands back frames whose boxes are final."""

    def __init__(self, config: TrackerConfig):
        self.config = config
        self.lag = config.frames_held
        self.pending: deque[int] = deque()
        self.tracks: list[Track] = []
        self.next_id = 0
        self.tracks_started = 0

    def push(self, frame: int, boxes: Optional[Boxes]) -> list[tuple[int, np.ndarray]]:
        """Add *frame*'s detections (None: not detected); return the frames now final, with their boxes."""
        if not self.config.enabled:
            return [(frame, self._untracked(boxes))]
        if boxes is not None:
            self._associate(frame, boxes)
        self.pending.append(frame)
        done = []
        while self.pending and self.pending[0] <= frame - self.lag:
            done.append(self._finalize(self.pending.popleft()))
        return done

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """The remaining frames, at the end of the video."""
        done = []
        while self.pending:
            done.append(self._finalize(self.pending.popleft()))
        return done

    def _untracked(self, boxes: Optional[Boxes]) -> np.ndarray:
        if boxes is None or not len(boxes):
            return NO_TRACKED
        kept = boxes[boxes[:, 4] >= self.config.threshold]
        out = np.zeros((len(kept), 7), np.float32)
        out[:, :5], out[:, TRACK], out[:, SOURCE] = kept[:, :5], -1, DETECTED
        return out

    def _associate(self, frame: int, boxes: Boxes) -> None:
        cfg = self.config
        alive = [t for t in self.tracks if not t.ended]
        strong = [b for b in boxes if b[4] >= cfg.threshold]
        weak = [b for b in boxes if cfg.keep_threshold <= b[4] < cfg.threshold]
        unmatched_tracks = alive
        for group, may_start in ((strong, True), (weak, False)):
            matched, leftover = self._match(frame, unmatched_tracks, group)
            for track, box, distance in matched:
                if distance > NEAR and _sizes_apart(track.boxes[-1], box) > NEAR:
                    track.jumps.add(frame)
                track.add(frame, box)
                track.misses = 0
            unmatched_tracks = [t for t in unmatched_tracks if all(t is not m for m, _, _ in matched)]
            if may_start:
                for box in leftover:
                    track = Track(self.next_id)
                    track.add(frame, box)
                    self.tracks.append(track)
                    self.next_id += 1
                    self.tracks_started += 1
        for track in unmatched_tracks:
            track.misses += 1
            if track.misses > cfg.max_gap:
                track.ended = True

    def _match(self, frame: int, tracks: list[Track], boxes: list[np.ndarray]):
        if not tracks or not boxes:
            return [], boxes
        predicted = np.array([t.predict(frame) for t in tracks])
        found = np.array([b[:4] for b in boxes], np.float64)
        overlap = iou_matrix(predicted, found)
        pc, fc = (predicted[:, :2] + predicted[:, 2:]) / 2, (found[:, :2] + found[:, 2:]) / 2
        size = np.maximum((predicted[:, None, 2:] - predicted[:, None, :2]).max(-1),
                          (found[None, :, 2:] - found[None, :, :2]).max(-1))
        distance = np.linalg.norm(pc[:, None, :] - fc[None, :, :], axis=-1) / np.maximum(size, 1.0)
        # Close enough: overlapping, or (small, fast faces) centres less than a face apart (more on a stride,
        # see MAX_SPEED); and of a like
        # size: a face does not double between two detections, while a small weak box near a large
        # new face would make the frames between them interpolated from the wrong box (seen on
        # crowd_walk.mp4: a face half uncovered for two frames).
        sides = np.array([np.maximum(predicted[:, 2] - predicted[:, 0], predicted[:, 3] - predicted[:, 1])]).T
        found_sides = np.maximum(found[:, 2] - found[:, 0], found[:, 3] - found[:, 1])[None, :]
        ratio = np.maximum(sides, found_sides) / np.maximum(np.minimum(sides, found_sides), 1.0)
        elapsed = np.array([[frame - t.frames[-1]] for t in tracks], np.float64)
        reach = np.clip(MAX_SPEED * elapsed, NEAR, MAX_REACH)
        allowed = ((overlap >= self.config.min_iou) | (distance < reach)) & (ratio <= MAX_SIZE_RATIO)
        cost = np.where(allowed, (1.0 - overlap) + distance, 1e6)
        rows, cols = linear_sum_assignment(cost)
        matched = [(tracks[r], boxes[c], distance[r, c]) for r, c in zip(rows, cols) if allowed[r, c]]
        used = {c for r, c in zip(rows, cols) if allowed[r, c]}
        return matched, [b for i, b in enumerate(boxes) if i not in used]

    def _finalize(self, frame: int) -> tuple[int, np.ndarray]:
        out = []
        for track in self.tracks:
            box = self._box_at(track, frame)
            if box is not None:
                out.append(box)
                out.extend(self._jump_cover(track, frame))
        self._forget(frame)
        return frame, (np.array(out, np.float32) if out else NO_TRACKED)

    def _box_at(self, track: Track, frame: int) -> Optional[np.ndarray]:
        """The track's box at *frame*, or None when the track does not cover it."""
        cfg = self.config
        after = bisect.bisect_left(track.frames, frame)
        if after < len(track.frames) and track.frames[after] == frame:
            box, source = track.smoothed(after, cfg.smooth), DETECTED
            score = track.boxes[after][4]
        elif 0 < after < len(track.frames):  # between two detections: interpolate
            p, n = after - 1, after
            fp, fn = track.frames[p], track.frames[n]
            u = (frame - fp) / (fn - fp)
            cwh = (1 - u) * _to_cwh(track.smoothed(p, cfg.smooth)) + u * _to_cwh(track.smoothed(n, cfg.smooth))
            box = _from_cwh(cwh, _growth(min(frame - fp, fn - frame)))
            source, score = FILLED, min(track.boxes[p][4], track.boxes[n][4])
        elif after == len(track.frames) and frame - track.frames[-1] <= cfg.post_roll:  # after the last one
            box = self._held(track, after - 1, frame - track.frames[-1], moving=True)
            source, score = HELD, track.boxes[-1][4]
        elif after == 0 and track.frames[0] - frame <= cfg.pre_roll:  # before the first one
            cwh = _to_cwh(track.smoothed(0, cfg.smooth))
            steps = track.frames[0] - frame
            grow = _growth(steps)
            # Where it was found, and back along its first detections' path: a face entering fast came from there,
            # but that path is only a guess from two or three detections (on crowd_walk.mp4, a still face's first
            # two, one of them weak, made it run off): cover both.
            came = cwh.copy()
            came[:2] -= track.start_velocity()[:2] * steps
            box = _union(_from_cwh(cwh, grow), _from_cwh(came, grow))
            source, score = HELD, track.boxes[0][4]
        else:
            return None
        # A moving face is smeared along its path by the shutter: cover one frame's travel.
        travel = np.abs(track.velocity()[:2]) / 2
        box = box + np.array([-travel[0], -travel[1], travel[0], travel[1]])
        return np.array([*box, score, track.id, source], np.float64)

    def _jump_cover(self, track: Track, frame: int) -> list[np.ndarray]:
        """Up to a jump (a detection found more than a face's size from where its track was expected and from
        its last detection), the boxes of both ends of the gap, held.

        Only the reach that grows with the time since a track's last detection links such a detection,
        and the link may be wrong: the face may have stayed where it was seen before (its track drawn away
        by another face's detection), and the new detection's face may have been there all along. Either
        way the interpolated box alone would leave it visible, so each end's box also stays, growing as a
        held box does, for the whole gap; the earlier end's also at the jump's own frame (where the track's
        box is the new detection), after which that face, if it stayed, is covered by its own new track's
        pre-roll once it is detected again.
        """
        after = bisect.bisect_left(track.frames, frame)
        if not 0 < after < len(track.frames) or track.frames[after] not in track.jumps:
            return []
        before, since, until = after - 1, frame - track.frames[after - 1], track.frames[after] - frame
        ends = [(before, self._held(track, before, since))]
        if until:
            ends.append((after, self._held(track, after, until)))
        # The face seen before may also have gone on moving (out of the frame, say) while the track was drawn
        # elsewhere: its post-roll, as if its track had ended there (seen on bikes_cuts.mp4 at one look in 8).
        if since <= self.config.post_roll and track.velocity_at(before)[:2].any():
            ends.append((before, self._held(track, before, since, moving=True)))
        return [np.array([*box, track.boxes[position][4], track.id, HELD], np.float64) for position, box in ends]

    def _held(self, track: Track, position: int, steps: int, moving: bool = False) -> np.ndarray:
        """Detection *position*'s box *steps* frames away, grown as held boxes are; *moving*: carried on along the
        track's velocity at that detection (a post-roll), where the face would be if it kept going."""
        cwh = _to_cwh(track.smoothed(position, self.config.smooth))
        if moving:
            cwh[:2] += track.velocity_at(position)[:2] * steps
        return _from_cwh(cwh, _growth(steps))

    def _forget(self, frame: int) -> None:
        """Drop what later frames cannot need: ended tracks past their post-roll, detections out of reach."""
        cfg = self.config
        kept = []
        for track in self.tracks:
            if track.ended and track.frames[-1] + cfg.post_roll <= frame:
                continue
            # Later frames use the last detection at or before frame + 1 (interpolation, post-roll),
            # the one before it, those within `smooth` frames of either and those the velocity is fitted on.
            last = bisect.bisect_right(track.frames, frame + 1) - 1
            if last >= 1:
                oldest = min(track.frames[last - 1] - cfg.smooth, track.frames[last] - VELOCITY_FRAMES)
                cut = min(last - 1, bisect.bisect_left(track.frames, oldest))
                if cut > 0:
                    track.drop_first(cut)
            kept.append(track)
        self.tracks = kept
