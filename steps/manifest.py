"""The manifest: the list of videos a run works on, written by discover, read by every other step.

Fan-out items are indices into ``items``, so the list Argo passes between steps stays small
whatever the paths look like (see workflows).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, field_validator

from steps.fsutil import atomic_write_text, to_json

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

    @field_validator("path")
    @classmethod
    def _plain_relative(cls, value: str) -> str:
        """Only a path that stays inside the roots: a forged or hand-edited manifest cannot write elsewhere."""
        if value.startswith("/") or "\0" in value or any(part in ("", ".", "..") for part in value.split("/")):
            raise ValueError(f"the item path {value!r} is not a plain relative path (no '..', no leading '/')")
        return value


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
        atomic_write_text(path, to_json(self.model_dump(mode="json"), indent=1))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))

    def item(self, index: int) -> Item:
        if not 0 <= index < len(self.items):
            raise IndexError(f"the manifest has {len(self.items)} items; there is no item {index}")
        return self.items[index]


def manifest_path(output_root: Path, explicit: Optional[Path] = None) -> Path:
    return explicit or (output_root / MANIFEST_NAME)
