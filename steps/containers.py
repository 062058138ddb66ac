"""Which container an output goes into, and which of the input's streams it can carry.

The output keeps the input's container where that container can hold H.264 and every
audio stream unchanged; otherwise it becomes Matroska, which holds anything (the name
then gains ``.mkv``: ``talk.webm`` -> ``talk.webm.mkv``, so two inputs never collide).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from steps.probe import MediaInfo

_MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac", "mp2", "dts", "truehd"}
_MOV_AUDIO = _MP4_AUDIO | {"pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_s32le", "pcm_f32le",
                           "pcm_u8", "pcm_mulaw", "pcm_alaw", "adpcm_ima_qt"}
_TS_AUDIO = {"aac", "mp3", "mp2", "ac3", "eac3", "dts", "truehd", "opus", "pcm_bluray", "latm"}
# AVI is built for constant-bitrate audio: ffmpeg's AVI muxer loses the timestamps of copied
# AAC/MP3 packets (a plain "ffmpeg -i in.avi -c copy out.avi" does too), so those go to Matroska.
_AVI_AUDIO = {"pcm_s16le", "pcm_u8", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_alaw", "pcm_mulaw"}


@dataclass(frozen=True)
class Container:
    muxer: str  # ffmpeg's -f name
    audio: frozenset[str] | None  # None: any codec
    subtitles: frozenset[str]
    timescale_option: bool = False  # mp4/mov: keep the input's video time base exactly


MATROSKA = Container("matroska", None, frozenset({"subrip", "ass", "ssa", "webvtt", "hdmv_pgs_subtitle",
                                                  "dvd_subtitle", "dvb_subtitle", "text"}))
_MP4 = Container("mp4", frozenset(_MP4_AUDIO), frozenset({"mov_text"}), True)
_MOV = Container("mov", frozenset(_MOV_AUDIO), frozenset({"mov_text"}), True)
_TS = Container("mpegts", frozenset(_TS_AUDIO), frozenset({"dvb_subtitle", "dvb_teletext"}))
_AVI = Container("avi", frozenset(_AVI_AUDIO), frozenset())
#: One segment of a long video (steps.segments): its video alone, in ffmpeg's own container, which
#: keeps any time base exactly; steps.join adds the audio when it joins the segments.
SEGMENT = Container("nut", frozenset(), frozenset())

BY_SUFFIX = {
    ".mp4": _MP4, ".m4v": _MP4, ".mov": _MOV, ".qt": _MOV, ".3gp": _MP4,
    ".mkv": MATROSKA, ".ts": _TS, ".mts": _TS, ".m2ts": _TS, ".avi": _AVI,
}


def container_for(name: str) -> Container | None:
    return BY_SUFFIX.get(Path(name).suffix.lower())


def carries(container: Container, info: MediaInfo) -> bool:
    """True when *container* can hold every audio stream of *info* unchanged."""
    if container.audio is None:
        return True
    return all(a.get("codec_name") in container.audio for a in info.audio)


def output_name(input_name: str, info: MediaInfo) -> tuple[str, Container]:
    """The output file name for *input_name* and the container to write."""
    container = container_for(input_name)
    if container is not None and carries(container, info):
        return input_name, container
    return input_name + ".mkv", MATROSKA


def subtitle_streams(container: Container, info: MediaInfo) -> list[dict]:
    """The input's subtitle streams that *container* can carry unchanged."""
    return [s for s in info.subtitles if s.get("codec_name") in container.subtitles]
