"""Progress reporting from inside a step, for people and for Argo.

Argo shows a pod's self-reported progress when the step writes ``N/M`` to the file named by
``ARGO_PROGRESS_FILE`` (Argo v3.3 and later; the controller sets the variable while its
``ARGO_PROGRESS_PATCH_TICK_DURATION`` and ``ARGO_PROGRESS_FILE_TICK_DURATION`` are not 0, their
default; the executor reads the file every 3 s and patches the pod's
``workflows.argoproj.io/progress`` annotation every minute). The local runner reads the same
file to draw its bars. When stderr is not a terminal (a pod's log), a line with frames, fps
and ETA is printed every few seconds.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Optional

PROGRESS_FILE_ENV = "ARGO_PROGRESS_FILE"
#: What Argo's executor parses: two non-negative integers, N <= M.
PROGRESS_PATTERN = re.compile(r"^(\d+)/(\d+)$")


def progress_text(done: int, total: Optional[int]) -> str:
    """``N/M`` with 0 <= N <= M. An unknown or exceeded total shows as one more than done (never 100 % early)."""
    done = max(0, done)
    if not total or total <= done:
        total = done + 1
    return f"{done}/{total}"


def write_progress_file(path: Path, text: str) -> None:
    """Written via rename, so Argo's executor never reads half a line."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def read_progress_file(path: Path) -> Optional[tuple[int, int]]:
    try:
        match = PROGRESS_PATTERN.match(path.read_text().strip())
    except OSError:
        return None
    return (int(match.group(1)), int(match.group(2))) if match else None


def format_eta(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class StepProgress:
    """The engine's progress callback: updates the Argo progress file and logs a line every few seconds.

    ``finish`` writes the final ``N/N`` (Argo then shows the pod complete) and logs the last line.
    """

    def __init__(self, name: str, file: Optional[Path] = None, log_every: Optional[float] = 5.0,
                 min_interval: float = 1.0, stream=None):
        env_file = os.environ.get(PROGRESS_FILE_ENV)
        self.name, self.file = name, file or (Path(env_file) if env_file else None)
        self.stream = stream or sys.stderr
        self.log_every = None if log_every is None or self.stream.isatty() else log_every
        self.min_interval = min_interval
        self.started = time.monotonic()
        self.last_file, self.last_log = float("-inf"), self.started

    def _write(self, text: str) -> None:
        if self.file is None:
            return
        try:
            write_progress_file(self.file, text)
        except OSError:
            self.file = None  # progress is a courtesy: never fail a video over it

    def line(self, done: int, total: Optional[int], now: Optional[float] = None) -> str:
        """``name: 1200/4500 frames (27%), 41.2 fps, ETA 1m20s``."""
        elapsed = (now if now is not None else time.monotonic()) - self.started
        fps = done / elapsed if elapsed > 0 else 0.0
        if total and total >= done:
            eta = format_eta((total - done) / fps) if fps > 0 else "?"
            return f"{self.name}: {done}/{total} frames ({100 * done // total}%), {fps:.1f} fps, ETA {eta}"
        return f"{self.name}: {done} frames, {fps:.1f} fps"

    def __call__(self, done: int, total: Optional[int]) -> None:
        now = time.monotonic()
        if now - self.last_file >= self.min_interval:
            self.last_file = now
            self._write(progress_text(done, total))
        if self.log_every is not None and now - self.last_log >= self.log_every:
            self.last_log = now
            print(self.line(done, total, now), file=self.stream, flush=True)

    def finish(self, done: int) -> None:
        self._write(f"{done}/{done}" if done else "0/0")
        if self.log_every is not None:
            print(self.line(done, done), file=self.stream, flush=True)
