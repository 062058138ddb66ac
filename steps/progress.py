"""Progress reporting from inside a step, for people and for Argo.

Argo shows a pod's self-reported progress when the step writes ``done/total`` to the file
named by ``ARGO_PROGRESS_FILE``; the local runner reads the same file to draw its bars.
When stderr is not a terminal (a pod's log), a line with frames, fps and ETA is printed
every few seconds.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

PROGRESS_FILE_ENV = "ARGO_PROGRESS_FILE"


def write_progress_file(path: Path, done: int, total: int) -> None:
    """Argo's format: ``N/M``. Written via rename so a reader never sees half a line."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{done}/{max(total, done, 1)}\n")
    os.replace(tmp, path)


def read_progress_file(path: Path) -> Optional[tuple[int, int]]:
    try:
        done, total = path.read_text().strip().split("/")
        return int(done), int(total)
    except (OSError, ValueError):
        return None


class StepProgress:
    """The engine's progress callback: updates the Argo progress file and logs a line now and then."""

    def __init__(self, name: str, file: Optional[Path] = None, log_every: float = 10.0, min_interval: float = 1.0):
        env_file = os.environ.get(PROGRESS_FILE_ENV)
        self.name, self.file = name, file or (Path(env_file) if env_file else None)
        self.log_every = log_every if not sys.stderr.isatty() else None
        self.min_interval = min_interval
        self.started = time.monotonic()
        self.last_file, self.last_log = 0.0, self.started

    def __call__(self, done: int, total: Optional[int]) -> None:
        now = time.monotonic()
        if self.file is not None and now - self.last_file >= self.min_interval:
            self.last_file = now
            try:
                write_progress_file(self.file, done, total or 0)
            except OSError:
                self.file = None  # progress is a courtesy: never fail a video over it
        if self.log_every is not None and now - self.last_log >= self.log_every:
            self.last_log = now
            elapsed = now - self.started
            fps = done / elapsed if elapsed > 0 else 0.0
            eta = f"{(total - done) / fps:.0f}s" if total and fps > 0 and total > done else "?"
            of = f"/{total}" if total else ""
            print(f"{self.name}: {done}{of} frames, {fps:.1f} fps, ETA {eta}", file=sys.stderr, flush=True)
