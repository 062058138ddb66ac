"""What ffprobe says about an input, reduced to the facts the anonymizer needs."""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

import ffmpeg

from steps.errors import PermanentError, TransientError, one_sentence

#: ffprobe format names of still images: a JPEG named .mp4 probes as one of these.
IMAGE_FORMATS = {"image2", "gif", "apng", "webp_pipe", "tiff_pipe"}


def ffmpeg_url(path: Path | str) -> str:
    """An absolute ``file:`` URL, so that no name is ever read as an option or a protocol."""
    return "file:" + os.path.abspath(path)


def _fraction(text: Optional[str]) -> Optional[Fraction]:
    if not text or text in ("0/0", "N/A"):
        return None
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _float(text: Any) -> Optional[float]:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _rotation(stream: dict) -> int:
    """Clockwise display rotation in degrees (0, 90, 180, 270) from the display matrix or tags."""
    degrees = 0.0
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            degrees = float(side["rotation"])
    if not degrees and "rotate" in stream.get("tags", {}):
        degrees = -float(stream["tags"]["rotate"])
    return int(round(-degrees)) % 360


@dataclass(frozen=True)
class VideoStream:
    index: int
    codec: str
    width: int  # as stored
    height: int
    pix_fmt: str
    time_base: Fraction
    avg_rate: Optional[Fraction]
    nb_frames: Optional[int]
    rotation: int
    color: dict[str, str]
    tags: dict[str, str]
    #: ffprobe's field_order: progressive, tt, bb, tb, bt (interlaced), or "" when unknown.
    field_order: str = ""

    @property
    def top_field_first(self) -> Optional[bool]:
        """For interlaced video, whether the top field is shown first; None for progressive or unknown."""
        return {"tt": True, "bt": True, "bb": False, "tb": False}.get(self.field_order)

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown, after the rotation ffmpeg applies when decoding."""
        if self.rotation in (90, 270):
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    size: int
    format_name: str
    duration: Optional[float]
    start_time: Optional[float]
    video: VideoStream
    audio: list[dict] = field(default_factory=list)
    subtitles: list[dict] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    #: Every stream ffprobe lists, cover art, data and attachments included (see steps.fidelity).
    streams: list[dict] = field(default_factory=list)

    @property
    def fps(self) -> Optional[float]:
        return float(self.video.avg_rate) if self.video.avg_rate else None

    def summary(self) -> dict[str, Any]:
        """The facts worth putting in a report."""
        width, height = self.video.display_size
        return {
            "container": self.format_name,
            "codec": self.video.codec,
            "width": width,
            "height": height,
            "rotation": self.video.rotation,
            "fps": round(self.fps, 3) if self.fps else None,
            "duration": self.duration,
            "frames_declared": self.video.nb_frames,
            "audio_streams": len(self.audio),
            "audio_codecs": [a.get("codec_name") for a in self.audio],
            "subtitle_streams": len(self.subtitles),
        }


def check_readable(path: Path) -> int:
    """Open the input read-only once: a clear error for missing, unreadable or empty files. Returns its size."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
            size = os.fstat(handle.fileno()).st_size
    except FileNotFoundError:
        raise PermanentError(f"the input {path.name!r} does not exist") from None
    except IsADirectoryError:
        raise PermanentError(f"the input {path.name!r} is a directory, not a video file") from None
    except PermissionError:
        raise PermanentError(f"the input {path.name!r} cannot be read (permission denied)") from None
    except OSError as exc:
        if exc.errno in (errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN):
            raise TransientError(f"reading {path.name!r} failed with an I/O error ({exc.strerror})") from exc
        raise PermanentError(f"the input {path.name!r} cannot be read ({exc.strerror})") from exc
    if size == 0:
        raise PermanentError(f"the input {path.name!r} is empty (0 bytes)")
    return size


def probe(path: Path) -> MediaInfo:
    """Probe *path* with ffprobe; raise PermanentError with one clear sentence if it is not a usable video."""
    path = Path(path)
    size = check_readable(path)
    try:
        data = ffmpeg.probe(ffmpeg_url(path), v="error")
    except ffmpeg.Error as exc:
        reason = ffmpeg_messages((exc.stderr or b"").decode(errors="replace")) or "ffprobe failed"
        raise PermanentError(f"{path.name!r} is not a video ffmpeg can read ({reason})") from None
    fmt = data.get("format", {})
    format_name = fmt.get("format_name", "")
    streams = data.get("streams", [])
    if format_name in IMAGE_FORMATS or format_name.endswith("_pipe"):
        raise PermanentError(f"{path.name!r} is a still image ({format_name}), not a video")
    videos = [
        s for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    if not videos:
        kinds = sorted({s.get("codec_type", "?") for s in streams}) or ["no streams"]
        raise PermanentError(f"{path.name!r} has no video stream (it holds {', '.join(kinds)})")
    v = videos[0]
    width, height = int(v.get("width") or 0), int(v.get("height") or 0)
    if width <= 0 or height <= 0:
        raise PermanentError(f"{path.name!r} has a video stream without a picture size (codec {v.get('codec_name')})")
    nb_frames = v.get("nb_frames")
    video = VideoStream(
        index=int(v["index"]),
        codec=v.get("codec_name", "unknown"),
        width=width,
        height=height,
        pix_fmt=v.get("pix_fmt", ""),
        time_base=_fraction(v.get("time_base")) or Fraction(1, 90000),
        avg_rate=_fraction(v.get("avg_frame_rate")) or _fraction(v.get("r_frame_rate")),
        nb_frames=int(nb_frames) if nb_frames and str(nb_frames).isdigit() and int(nb_frames) > 0 else None,
        rotation=_rotation(v),
        color={k: v[k] for k in ("color_range", "color_space", "color_transfer", "color_primaries")
               if v.get(k) and v[k] != "unknown"},
        tags=dict(v.get("tags", {})),
        field_order=v.get("field_order", ""),
    )
    return MediaInfo(
        path=path,
        size=size,
        format_name=format_name,
        duration=_float(fmt.get("duration")),
        start_time=_float(fmt.get("start_time")),
        video=video,
        audio=[s for s in streams if s.get("codec_type") == "audio"],
        subtitles=[s for s in streams if s.get("codec_type") == "subtitle"],
        tags=dict(fmt.get("tags", {})),
        streams=streams,
    )


def ffmpeg_messages(stderr: str, limit: int = 3) -> str:
    """ffmpeg's error lines without their "[demuxer @ 0x...]" and "file:/path:" prefixes, joined."""
    messages: list[str] = []
    for line in stderr.splitlines():
        text = re.sub(r"^\[[^]]*@ 0x[0-9a-f]+\]\s*", "", line.strip())
        text = re.sub(r"^(file:)?/\S*: ", "", text)
        if text and text not in messages:
            messages.append(text)
    return "; ".join(messages[-limit:])


def explain_ffmpeg_failure(stderr: str, what: str) -> str:
    """The most telling line of an ffmpeg error log, as one sentence."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    telling = [line for line in lines if any(w in line.lower() for w in ("error", "invalid", "no space", "denied",
                                                                          "not supported", "could not", "failed"))]
    chosen = (telling or lines or ["no message"])[-1]
    return one_sentence(f"{what} ({chosen})")
