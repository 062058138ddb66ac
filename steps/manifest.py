"""The manifest: the list of videos a run works on, written by discover, read by every other step.

Fan-out items are indices into ``items``, so the list Argo passes between steps stays small
whatever the paths look like (see workflows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import BaseModel

from steps.fsutil import atomic_write_text

MANIFEST_NAME = "manifest.json"
SUMMARY_NAMES = ("summary.json", "summary.md")
#: Names at the output root that belong to the run itself.
RESERVED_NAMES = frozenset({MANIFEST_NAME, *SUMMARY_NAMES})


class Item(BaseModel):
    path: str  # relative to the input root, with "/" separators
    size: int
    # What probing found (steps.durations); None when the file could not be probed.
    duration: Optional[float] = None  # seconds, of the video stream when known, else of the file
    start: Optional[float] = None  # the first timestamp, in seconds
    frames: Optional[int] = None  # declared by the container, else duration x frame rate
    width: Optional[int] = None
    height: Optional[int] = None
    #: Where the video is cut into segments (steps.segments); empty: one piece.
    cuts: list[float] = []


class Ignored(BaseModel):
    path: str
    reason: str


class Manifest(BaseModel):
    schema_version: int = 1
    input_root: str
    created_at: str
    #: The segment length the cut times were made with (0: no video is cut).
    segment_seconds: float = 0
    items: list[Item]
    ignored: list[Ignored] = []

    def save(self, path: Path) -> None:
        atomic_write_text(path, self.model_dump_json(indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    def item(self, index: int) -> Item:
        if not 0 <= index < len(self.items):
            raise IndexError(f"the manifest has {len(self.items)} items; there is no item {index}")
        return self.items[index]


def manifest_path(output_root: Path, explicit: Optional[Path] = None) -> Path:
    return explicit or (output_root / MANIFEST_NAME)
