"""Long videos in segments: where a video is cut, what a fan-out item names, where the parts live.

A video longer than the segment length is cut at interior times ``c1 < c2 < ...`` (seconds, on
the input's own timestamps, as ffmpeg reads them with ``-copyts``). Segment k holds exactly
the frames whose presentation time t satisfies ``c_k <= t < c_(k+1)``; the first segment has
no lower bound and the last no upper one, so every frame belongs to exactly one segment,
whatever the cut times and wherever the input's keyframes are. A segment's pod seeks the
input to the keyframe at or before its start, decodes from there and keeps only its own
frames (steps.ffio.Decoder), and encodes them into a video-only NUT file that starts with an
IDR frame and keeps the input's timestamps; steps.join copies the segments' packets, in
order and without re-encoding, into the final file together with the original's audio.

Fan-out items are short strings: ``"3"`` is the whole of manifest item 3, ``"3:2"`` its
segment 2 (from 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional

#: The folder of a video's segments, beside its output: hidden, removed once the video is joined.
SEGMENTS_PREFIX = ".segments-"
SEGMENT_SUFFIX = ".nut"
DEFAULT_SEGMENT_SECONDS = 300


@dataclass(frozen=True)
class Span:
    """Segment *index* of *count*: the frames with ``start <= t < end`` (None: unbounded)."""

    index: int
    count: int
    start: Optional[float]
    end: Optional[float]

    def before(self, seconds: Fraction) -> bool:
        """True when a frame at *seconds* comes before this segment."""
        return self.start is not None and seconds < Fraction(self.start)

    def after(self, seconds: Fraction) -> bool:
        """True when a frame at *seconds* comes after this segment."""
        return self.end is not None and seconds >= Fraction(self.end)

    @property
    def seconds(self) -> Optional[float]:
        return None if self.start is None or self.end is None else self.end - self.start


def cut_times(duration: Optional[float], start: Optional[float], segment_seconds: float) -> list[float]:
    """Where a video of *duration* seconds starting at *start* is cut into equal segments of at most
    *segment_seconds*: nowhere when it is not longer or segment_seconds is 0, and nowhere when its
    timestamps are unknown or start below zero (the raw-frame pipe would shift them, and not the
    same way for every segment, see steps.ffio.Decoder)."""
    if not segment_seconds or not duration or duration <= segment_seconds or start is None or start < 0:
        return []
    count = math.ceil(duration / segment_seconds)
    return [round(start + k * duration / count, 3) for k in range(1, count)]


def spans(cuts: list[float]) -> list[Span]:
    bounds: list[Optional[float]] = [None, *cuts, None]
    return [Span(k, len(cuts) + 1, bounds[k], bounds[k + 1]) for k in range(len(cuts) + 1)]


def work_item(index: int, segment: Optional[int] = None) -> str:
    return str(index) if segment is None else f"{index}:{segment}"


def parse_work_item(text: str) -> tuple[int, Optional[int]]:
    """``"3"`` -> (3, None), ``"3:2"`` -> (3, 2); ValueError for anything else."""
    head, sep, tail = text.strip().partition(":")
    if not head.isdigit() or (sep and not tail.isdigit()):
        raise ValueError(f"{text!r} is not a work item (INDEX or INDEX:SEGMENT, e.g. 3 or 3:2)")
    return int(head), int(tail) if sep else None


def segment_folder(output_root: Path, relative: str) -> Path:
    """Where the segments of the input at *relative* are kept until they are joined."""
    path = output_root / relative
    return path.with_name(SEGMENTS_PREFIX + path.name)


def segment_file(folder: Path, index: int) -> Path:
    return folder / f"{index:04d}{SEGMENT_SUFFIX}"


def segment_report(folder: Path, index: int) -> Path:
    return folder / f"{index:04d}.report.json"
