"""The frame pipeline for one video: decode -> detect -> track -> hide -> encode, as concurrent stages.

The decoder and the encoder are ffmpeg processes; between them, a reader thread pulls
frames from the decoder, a detector thread runs the model on batches of RGB pictures of the
frames it looks at (made from them, steps.ffio.Frame.picture), the calling thread links
detections into tracks, a hiding thread hides the faces and an encoder thread feeds the
encoder, so that on a machine with cores to spare (a GPU worker's) their work does not add up
in one thread. How far the threads overlap is bounded by Python's lock, which each of hiding's
many short OpenCV calls gives back and takes again, as does the write to the encoder's pipe.
The tracker decides a frame's boxes only a few frames later (steps.tracking), so that many
frames wait in memory. Bounded queues link the stages, so memory stays the same whatever
the video's length and the slowest stage sets the pace.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from steps import accel
from steps.containers import Container
from steps.detections import DetectionsWriter
from steps.detectors import Detector
from steps.detectors.oom import HalvingOnOutOfMemory
from steps.errors import PermanentError
from steps.ffio import Decoder, Encoder, EncoderSettings, Frame
from steps.probe import MediaInfo
from steps.redact import hide
from steps.segments import Span
from steps.settings import Settings
from steps.tracking import DETECTED, SOURCE, Tracker, TrackerConfig

#: Called after each frame with (frames done, frames expected or None).
Progress = Callable[[int, Optional[int]], None]
#: Called with each frame as it goes to the encoder (faces already hidden) and its face boxes.
FrameHook = Callable[[Frame, np.ndarray], None]
_END = object()
STAGES = ("decode", "detect", "track", "hide", "encode")


@dataclass
class Stats:
    """What one video's run did. ``seconds`` is each stage's busy time, measured in its own thread:

    - decode: waiting for the ffmpeg decoder's next frame and demuxing it (not the time the reader
      was held back because the stages after it were full);
    - detect: the detector's calls (input preparation, model, boxes);
    - track: linking the detections into tracks and deciding each frame's boxes (steps.tracking);
    - hide: hiding the faces in the picture;
    - encode: handing frames to the ffmpeg encoder (it blocks while the encoder is behind) and its final flush.

    The stages overlap, so the seconds add up to more than the wall time; the stage whose busy
    time is close to the wall time is the one that sets the pace.

    ``cpu_seconds`` is the CPU time the same code took in its own thread (what busy time is when the
    stage is never kept off a core), plus ``other``: the rest of the process's CPU time in the run,
    mostly the model's own worker threads (OpenVINO, ONNX Runtime) and OpenCV's. On a machine whose
    cores are all busy it says where they go; on a many-core GPU machine the largest per-thread figure
    bounds the frames/s.
    """

    frames: int = 0
    frames_with_faces: int = 0
    faces: int = 0  # boxes the detector found and that were hidden
    boxes_hidden: int = 0  # with the boxes tracking added (gaps, pre/post-roll)
    tracks: int = 0
    #: Frames per detector call after running out of memory once (steps.detectors.oom); None if it never did.
    batch_after_oom: Optional[int] = None
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    cpu_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys((*STAGES, "other"), 0.0))

    def add(self, stage: str, started: tuple[float, float]) -> None:
        """Count the time since *started* (from :func:`_clock`, in this thread) to *stage*."""
        wall, cpu = started
        self.seconds[stage] += time.perf_counter() - wall
        self.cpu_seconds[stage] += time.thread_time() - cpu


def _clock() -> tuple[float, float]:
    """Wall and this thread's CPU time, for Stats.add."""
    return time.perf_counter(), time.thread_time()


def tracker_config(settings: Settings) -> TrackerConfig:
    """The tracker the settings ask for. On a stride, a face is held at least across the frames the detector
    skips before its first and after its last detection (it may have been there in them); a small face,
    found only at full resolution, across those between two full-resolution looks (``fine_every``)."""
    skipped = settings.stride * settings.fine_every - 1
    return TrackerConfig(enabled=settings.tracking, threshold=settings.threshold,
                         keep_threshold=min(settings.keep_threshold, settings.threshold), max_gap=settings.max_gap,
                         pre_roll=max(settings.pre_roll, skipped), post_roll=max(settings.post_roll, skipped),
                         smooth=settings.smooth, stride=settings.stride)


class _Stage(threading.Thread):
    """A pipeline thread whose exception stops the others and is added to *failures*, for the caller to raise."""

    def __init__(self, target: Callable[[], None], name: str, stop: threading.Event, failures: list[BaseException]):
        super().__init__(daemon=True, name=name)
        self._target_fn, self._halt, self._failures = target, stop, failures

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self._failures.append(exc)
            self._halt.set()


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> object:
    while True:
        try:
            return q.get(timeout=0.2)
        except queue.Empty:
            if stop.is_set():
                return _END


def run(info: MediaInfo, output: Path, container: Container, settings: Settings, detector: Detector,
        threads: int = 0, progress: Optional[Progress] = None, name: str = "",
        on_frame: Optional[FrameHook] = None, detections: Optional[DetectionsWriter] = None,
        span: Optional[Span] = None, video_path: Optional[accel.VideoPath] = None,
        extra: Optional[Mapping[int, np.ndarray]] = None) -> Stats:
    """Anonymize *info*'s video into *output* (a temporary path the caller renames, *name* in messages).

    *on_frame* sees each frame after its faces are hidden, before the encoder (see steps.thumbnails).
    Every hidden box is also written to *detections* when given.
    With a *span*, only that segment's frames (see steps.segments); a span without frames
    writes nothing and returns zero frames.
    *video_path* says how ffmpeg decodes and encodes (default: the fastest that works here, see steps.accel).
    *extra* boxes (frame index -> N x 7, as the tracker's) are hidden too: the audit's second pass.
    """
    video_path = video_path or accel.video_path()
    width, height = info.video.display_size
    det_size = detector.input_size(width, height)
    stats = Stats()
    tracker = Tracker(tracker_config(settings))
    waiting: deque[Frame] = deque()  # frames whose boxes the tracker has not decided yet
    expected = info.video.nb_frames or (round(info.duration * info.fps) if info.duration and info.fps else None)
    if span is not None:
        expected = round(span.seconds * info.fps) if span.seconds and info.fps else None
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=(2 * settings.batch + 2) * settings.stride)
    detected: queue.Queue = queue.Queue(maxsize=2 * settings.batch + 2)
    decoder = Decoder(info, hwaccel=video_path.hwaccel, span=span)

    def read() -> None:
        frames: Iterator[Frame] = decoder.frames()
        while True:
            started = _clock()
            frame = next(frames, None)
            stats.add("decode", started)
            if frame is None or not _put(decoded, frame, stop):
                break
        if _put(decoded, _END, stop):
            decoder.finish()

    detect_batch = HalvingOnOutOfMemory(detector)
    coarse_size = detector.coarse_size(width, height) if settings.fine_every > 1 else None
    looked_at_total = 0

    def detect_scaled(frames: list[Frame], size: tuple[int, int]) -> dict[int, np.ndarray]:
        """Boxes in full-frame pixels for *frames*, seen by the detector at *size*."""
        if not frames:
            return {}
        pictures = [f.picture(size) for f in frames]
        found = {}
        sx, sy = decoder.width / size[0], decoder.height / size[1]
        for frame, boxes in zip(frames, detect_batch(pictures)):
            boxes = boxes.copy()
            boxes[:, [0, 2]] *= sx
            boxes[:, [1, 3]] *= sy
            found[frame.index] = boxes
        return found

    def detect() -> None:
        """Runs the model on batches of the frames it looks at (one in ``settings.stride``, counted from
        the first frame of the video or span, and its last frame; with ``settings.fine_every`` > 1, all but
        one in that many of them at the cheaper coarse size); the others pass with None.

        The last frame is looked at (at full resolution) because after the last look the tracker can only
        guess where a face went, and it is only known to be the last once the decoder has ended: so the
        frames after the latest look wait here until a later frame or the end comes."""
        nonlocal looked_at_total
        held: list[Frame] = []  # frames after the latest one looked at
        ended = False
        while not ended:
            batch, held = held, []
            fine: list[Frame] = []
            coarse: list[Frame] = []
            item = _get(decoded, stop)
            while item is not _END:
                batch.append(item)
                if item.index % settings.stride == 0:
                    use_coarse = coarse_size is not None and looked_at_total % settings.fine_every != 0
                    (coarse if use_coarse else fine).append(item)
                    looked_at_total += 1
                    if len(fine) + len(coarse) >= settings.batch:  # a batch of either size, or of both
                        break
                try:
                    item = decoded.get_nowait()
                except queue.Empty:
                    break
            ended = item is _END
            if ended and batch and batch[-1].index % settings.stride != 0 and not stop.is_set():
                fine.append(batch[-1])
            started = _clock()
            found = {**detect_scaled(fine, det_size), **detect_scaled(coarse, coarse_size or det_size)}
            if fine or coarse:
                stats.batch_after_oom = detect_batch.batch_limit
                stats.add("detect", started)
            if not ended:
                looked = [i for i, frame in enumerate(batch) if frame.index in found]
                cut = looked[-1] + 1 if looked else 0
                batch, held = batch[:cut], batch[cut:]
            for frame in batch:
                if not _put(detected, (frame, found.get(frame.index)), stop):
                    return
        _put(detected, _END, stop)

    decided_frames: queue.Queue = queue.Queue(maxsize=settings.batch + 2)
    hidden_frames: queue.Queue = queue.Queue(maxsize=settings.batch + 2)
    encoder: Optional[Encoder] = None

    def hide_faces() -> None:
        """Hides each decided frame's boxes, in order, and passes the frame on to the encoder's thread."""
        while (item := _get(decided_frames, stop)) is not _END:
            frame, boxes = item
            started = _clock()
            if len(boxes):
                hide(frame.planes(), boxes, settings.mode, settings.mask_scale)
                stats.frames_with_faces += 1
                stats.boxes_hidden += len(boxes)
                stats.faces += int((boxes[:, SOURCE] == DETECTED).sum())
                if detections is not None:
                    detections.write(frame.index, frame.pts, decoder.time_base, boxes)
            if on_frame:
                on_frame(frame, boxes)
            stats.add("hide", started)
            if not _put(hidden_frames, frame, stop):
                return
        _put(hidden_frames, _END, stop)

    def encode() -> None:
        """Hands each hidden frame to the ffmpeg encoder, in order (the pipe's write gives Python's lock back, so
        that the next frame's hiding goes on meanwhile)."""
        nonlocal encoder
        while (frame := _get(hidden_frames, stop)) is not _END:
            if encoder is None:  # the decoder's time base is known once the first frame arrived
                encoder = Encoder(info, output, container, decoder.width, decoder.height,
                                  decoder.time_base, decoder.rate,
                                  EncoderSettings(video_path.encoder, settings.crf, settings.preset, threads), name)
            started = _clock()
            encoder.write(frame)
            stats.add("encode", started)
            stats.frames += 1
            if progress:
                progress(stats.frames, expected)

    failures: list[BaseException] = []  # the stages' errors, in the order they happened
    stages = [_Stage(target, name, stop, failures)
              for target, name in ((read, "decode"), (detect, "detect"), (hide_faces, "hide"), (encode, "encode"))]

    def emit_all(decided: list) -> bool:
        """Send each frame the tracker decided, with its boxes (and the *extra* ones), to be hidden."""
        for index, boxes in decided:
            frame = waiting.popleft()
            if frame.index != index:
                raise RuntimeError(f"the tracker decided frame {index} while frame {frame.index} was next")
            if extra is not None and index in extra:
                boxes = np.concatenate([boxes, extra[index]])
            if not _put(decided_frames, (frame, boxes), stop):
                return False
        return True

    process_started = time.process_time()
    try:
        for stage in stages:
            stage.start()
        while True:
            item = _get(detected, stop)
            if item is _END:
                break
            frame, boxes = item
            waiting.append(frame)
            started = _clock()
            decided = tracker.push(frame.index, boxes)
            stats.add("track", started)
            if not emit_all(decided):
                break
        if not stop.is_set() and emit_all(tracker.finish()):
            _put(decided_frames, _END, stop)
        stats.tracks = tracker.tracks_started
        # A stage failed: unblock the others, wait for them all, then raise the first error (the others may
        # follow from it: a stage stopped early, a process killed).
        if stop.is_set():
            decoder.kill()
        for stage in stages:
            stage.join()
        if failures:
            raise failures[0]
        if encoder is None and span is not None:
            return stats
        if encoder is None:
            raise PermanentError(f"{info.path.name!r} holds no decodable video frame")
        started = _clock()
        encoder.finish()
        stats.add("encode", started)
        stats.cpu_seconds["other"] = max(0.0, time.process_time() - process_started - sum(stats.cpu_seconds.values()))
    except BaseException:
        stop.set()
        decoder.kill()
        if encoder is not None:
            encoder.kill()
        for stage in stages:  # let the detector finish its batch: a process that exits while ONNX Runtime
            if stage.ident is not None:  # runs aborts ("terminate called"), losing the exit code
                stage.join(timeout=60)
        raise
    return stats
