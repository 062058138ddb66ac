"""Every hidden box of a video, in a compact file beside its report, for audits and re-use.

The file is a gzip-compressed CSV (``<video>.detections.csv.gz``) with one row per box:
``frame`` (0-based, in presentation order), ``time`` (seconds, the frame's timestamp),
``x1, y1, x2, y2`` (pixels of the displayed picture, before the mask is grown), ``score``,
``track`` (-1 without tracking) and ``source`` (``detected``, ``filled`` between two
detections of the track, ``held`` before, after or across frames not detected, or ``audit``:
found left visible by the audit pass and hidden by its second pass, see steps.audit). It is
written to a hidden temporary file and renamed when complete, like the video.
"""

from __future__ import annotations

import csv
import gzip
import os
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

from steps.fsutil import partial_path, remove_quietly
from steps.tracking import SOURCE, TRACK

SUFFIX = ".detections.csv.gz"
COLUMNS = ["frame", "time", "x1", "y1", "x2", "y2", "score", "track", "source"]
SOURCES = {0: "detected", 1: "filled", 2: "held", 3: "audit"}


class DetectionsWriter:
    """Streams rows to a temporary file; :meth:`commit` renames it into place, :meth:`discard` removes it."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = partial_path(path, "")
        self._raw = gzip.open(self.tmp, "wt", newline="", encoding="utf-8")
        self._csv = csv.writer(self._raw)
        self._csv.writerow(COLUMNS)
        self.rows = 0

    def write(self, frame: int, pts: Optional[int], time_base: Optional[Fraction], boxes: np.ndarray) -> None:
        time = "" if pts is None or time_base is None else f"{float(pts * time_base):.6f}"
        for box in boxes:
            self._csv.writerow([frame, time, *(f"{v:.1f}" for v in box[:4]), f"{box[4]:.3f}", int(box[TRACK]),
                                SOURCES.get(int(box[SOURCE]), "detected")])
            self.rows += 1

    def append(self, path: Path, frame_offset: int) -> None:
        """Every row of another detections file (a segment's), its frames numbered *frame_offset* later."""
        with gzip.open(path, "rt", newline="", encoding="utf-8") as handle:
            rows = csv.reader(handle)
            if next(rows, None) != COLUMNS:
                raise ValueError(f"{path.name} is not a detections file")
            for row in rows:
                self._csv.writerow([int(row[0]) + frame_offset, *row[1:]])
                self.rows += 1

    def commit(self) -> Path:
        self._raw.close()
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        try:
            self._raw.close()
        except OSError:
            pass
        remove_quietly(self.tmp)


def read_detections(path: Path) -> list[dict[str, str]]:
    """The rows of a detections file, as dictionaries of strings."""
    with gzip.open(path, "rt", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
