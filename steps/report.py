"""The per-video report: one JSON file beside each output, the truth the summary is built from."""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ValidationError

from steps.audit import AuditResult
from steps.errors import AnonymizeError, one_sentence
from steps.fsutil import atomic_write_text, raise_for_os_error, to_json

REPORT_SUFFIX = ".report.json"
#: "running" is on disk only while a worker processes the video (or if it was killed doing so).
Status = Literal["done", "skipped", "failed", "running"]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class InputFacts(BaseModel):
    path: str
    size: Optional[int] = None
    fingerprint: Optional[str] = None


class SegmentFacts(BaseModel):
    """Which part of the input a segment's report covers (see steps.segments)."""

    index: int
    count: int
    start: Optional[float] = None
    end: Optional[float] = None


class VideoReport(BaseModel):
    schema_version: int = 1
    status: Status
    input: InputFacts
    #: Set in the report of one segment of a long video (kept beside the segment until the join).
    segment: Optional[SegmentFacts] = None
    #: How many segments a joined video was made of.
    segments: Optional[int] = None
    output: Optional[str] = None
    frames_in: Optional[int] = None
    frames_out: Optional[int] = None
    frames_with_faces: Optional[int] = None
    faces_detected: Optional[int] = None
    #: With tracking, more boxes are hidden than detected (gaps filled, pre- and post-roll).
    boxes_hidden: Optional[int] = None
    tracks: Optional[int] = None
    #: The file listing every hidden box (steps.detections), beside this report.
    detections: Optional[str] = None
    #: With --audit: what an independent detector found in the output (steps.audit), and the number
    #: of suspect frames (what the summary counts).
    audit: Optional[AuditResult] = None
    audit_findings: Optional[int] = None
    video: dict[str, Any] = {}
    #: How the output differs from the input beyond the hidden faces: streams dropped, picture converted
    #: (steps.fidelity). Empty: every frame, audio and subtitle stream and the picture format are kept.
    changes: list[str] = []
    detector: dict[str, Any] = {}
    #: The hardware path that ran: device (cpu/gpu), GPU name, decoder, encoder (see steps.accel).
    accel: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    settings_digest: Optional[str] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    wall_seconds: Optional[float] = None
    fps: Optional[float] = None
    stage_seconds: dict[str, float] = {}
    #: CPU seconds of each stage in its own thread, and the rest of the process (steps.engine.Stats).
    stage_cpu_seconds: dict[str, float] = {}
    error: Optional[str] = None
    error_kind: Optional[str] = None
    exit_code: int = 0
    #: Which try this report comes from: 1, then 2, 3... when Argo or the local runner retried the video.
    attempt: int = 1
    #: A JPEG strip of a few anonymized frames with faces, beside the output (see steps.thumbnails).
    thumbnails: Optional[str] = None
    host: str = socket.gethostname()
    note: Optional[str] = None

    @property
    def faces_hidden(self) -> Optional[int]:
        """Face boxes hidden over all frames: what a user means by "faces" (a face in view for 10 frames counts
        10). On a stride (--detect-every) the detector sees only some frames, so ``faces_detected`` is smaller;
        a report from before ``boxes_hidden`` existed gives ``faces_detected``."""
        return self.boxes_hidden if self.boxes_hidden is not None else self.faces_detected

    def save(self, path: Path) -> None:
        atomic_write_text(path, to_json(self.model_dump(mode="json")))

    @classmethod
    def load(cls, path: Path) -> Optional[VideoReport]:
        """The report at *path*, or None when there is none or it cannot be read."""
        try:
            return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, ValidationError):
            return None

    def matches(self, fingerprint: str, settings_digest: str, segment: Optional[SegmentFacts] = None) -> bool:
        """True when this report already covers the same input (the same *segment* of it) with the same
        settings, and its output exists (a segment without frames has none)."""
        return (
            self.status in ("done", "skipped")
            and self.input.fingerprint == fingerprint
            and self.settings_digest == settings_digest
            and self.segment == segment
            and ((self.output is not None and os.path.isfile(self.output))
                 or (segment is not None and self.frames_out == 0))
        )

    def record_failure(self, exc: Exception, doing: str) -> None:
        """Say in one classified sentence why the work (*doing*, for OS errors' messages) failed: an
        AnonymizeError as it is, an OSError classified by steps.fsutil, anything else as internal."""
        if isinstance(exc, OSError):
            try:
                raise_for_os_error(exc, doing)
            except AnonymizeError as classified:
                exc = classified
        if isinstance(exc, AnonymizeError):
            self.error, self.error_kind, self.exit_code = one_sentence(str(exc)), exc.kind, exc.exit_code
        else:
            self.error, self.error_kind, self.exit_code = one_sentence(f"internal error: {exc!r}"), "internal", 1

    def skipped(self) -> VideoReport:
        """This done report, as the report of a run that found the work already done."""
        return self.model_copy(update={"status": "skipped", "note": "already anonymized with the same input and "
                                                                    "settings on " + str(self.finished_at)})


def report_path_for(output_root: Path, relative: str) -> Path:
    """Where the report of the input at *relative* (to the input root) lives."""
    return output_root / (relative + REPORT_SUFFIX)


def sibling_path(report_path: Path, suffix: str) -> Path:
    """A file that belongs with a report (same name, *suffix* instead of ``.report.json``)."""
    name = report_path.name
    stem = name[: -len(REPORT_SUFFIX)] if name.endswith(REPORT_SUFFIX) else name
    return report_path.with_name(stem + suffix)
