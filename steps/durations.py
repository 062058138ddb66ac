"""How long each video is: probed in-process with PyAV (ffmpeg's own libraries), in parallel, cached.

discover orders the fan-out longest first and cuts long videos with these figures, and
``workflows plan`` predicts a job's time from them. Starting one ffprobe process costs about
0.15 s of CPU (25 minutes for 10,000 files on one core); PyAV reads the same headers in
about 15 ms. The cache, a JSON file, keys each file by its real path, size and modification
time, so a second discover or plan over the same files probes nothing again.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import av
from pydantic import BaseModel

from steps.errors import AnonymizeError
from steps.fsutil import atomic_write_text
from steps.probe import ffmpeg_url

PROBE_THREADS = 8


class Length(BaseModel):
    """The facts planning needs about one video."""

    duration: Optional[float] = None  # seconds: the video stream's when known, else the file's
    start: Optional[float] = None  # seconds: the video stream's first timestamp
    frames: Optional[int] = None  # declared, else duration x average frame rate
    width: Optional[int] = None
    height: Optional[int] = None


def measure(path: Path) -> Optional[Length]:
    """*path*'s length, or None when it is empty or holds no video stream PyAV can open."""
    try:
        if os.path.getsize(path) == 0:
            return None
        with av.open(ffmpeg_url(path), metadata_errors="ignore") as container:
            video = next((s for s in container.streams.video
                          if not s.disposition & av.stream.Disposition.attached_pic), None)
            if video is None:
                return None
            base = video.time_base
            duration = float(video.duration * base) if video.duration and base else None
            if duration is None and container.duration:
                duration = container.duration / av.time_base
            start = float(video.start_time * base) if video.start_time is not None and base else None
            if start is None and container.start_time is not None:
                start = container.start_time / av.time_base
            rate = video.average_rate or video.guessed_rate
            frames = video.frames or (round(duration * rate) if duration and rate else None)
            return Length(duration=duration, start=start, frames=frames or None,
                          width=video.codec_context.width or None, height=video.codec_context.height or None)
    except (av.error.FFmpegError, OSError, ValueError, ZeroDivisionError):
        return None


class ProbeCache:
    """Lengths already measured, in a JSON file (None: no cache file)."""

    def __init__(self, path: Optional[Path]):
        self.path, self.changed, self.lock = path, False, threading.Lock()
        self.entries: dict[str, Optional[dict]] = {}
        if path is not None:
            try:
                self.entries = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.entries = {}

    @staticmethod
    def key(path: Path) -> Optional[str]:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return f"{os.path.realpath(path)}|{stat.st_size}|{stat.st_mtime_ns}"

    def measure(self, path: Path) -> Optional[Length]:
        key = self.key(path)
        with self.lock:
            if key is not None and key in self.entries:
                entry = self.entries[key]
                return None if entry is None else Length(**entry)
        length = measure(path)
        if key is not None:
            with self.lock:
                self.entries[key] = None if length is None else length.model_dump()
                self.changed = True
        return length

    def save(self) -> None:
        if self.path is not None and self.changed:
            try:
                atomic_write_text(self.path, json.dumps(self.entries, separators=(",", ":")) + "\n")
            except AnonymizeError:
                pass  # a cache that cannot be written only costs time next run


def measure_all(paths: list[Path], cache_file: Optional[Path] = None) -> list[Optional[Length]]:
    """The length of every path (None where unreadable), probed by PROBE_THREADS threads, cached in *cache_file*."""
    cache = ProbeCache(cache_file)
    with ThreadPoolExecutor(PROBE_THREADS) as pool:
        lengths = list(pool.map(cache.measure, paths))
    cache.save()
    return lengths
