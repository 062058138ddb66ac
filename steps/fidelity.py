"""What an output keeps of its input, and what it cannot: each difference said in the report.

An output keeps every frame with its timestamp, every audio stream packet for packet, the
subtitle streams its container can carry, metadata and chapters (see steps.ffio.Encoder).
Everything else is listed in the report's ``changes``, one sentence each, so that nothing is
lost without a word: streams that are not copied (cover art above all: a picture that may
show a face is dropped, not copied unanonymized), and pictures converted to what H.264 in
its most widely played form needs (8-bit 4:2:0, even sizes).
"""

from __future__ import annotations

from steps.containers import Container, subtitle_streams
from steps.ffio import even
from steps.probe import MediaInfo

#: Pixel formats the encoder writes as they are (8-bit 4:2:0; "j" is the full-range JPEG variant).
_KEPT_PIXEL_FORMATS = {"yuv420p", "yuvj420p"}


def changes(info: MediaInfo, container: Container) -> list[str]:
    """How the output of *info* in *container* will differ from it, beyond the hidden faces."""
    notes = []
    width, height = info.video.display_size
    if (even(width), even(height)) != (width, height):
        notes.append(f"the picture is padded from {width}x{height} to {even(width)}x{even(height)} with a black "
                     "line (H.264 4:2:0 needs even sizes); nothing of the picture is lost")
    if info.video.pix_fmt and info.video.pix_fmt not in _KEPT_PIXEL_FORMATS:
        notes.append(f"the picture format {info.video.pix_fmt} is converted to 8-bit 4:2:0 (yuv420p), which every "
                     "H.264 player reads")
    carried = {info.video.index, *(a["index"] for a in info.audio),
               *(s["index"] for s in subtitle_streams(container, info))}
    notes += [_dropped(s, container) for s in info.streams if s.get("index") not in carried]
    return notes


def _dropped(stream: dict, container: Container) -> str:
    index, kind = stream.get("index"), stream.get("codec_type") or "unknown"
    codec = stream.get("codec_name") or stream.get("codec_tag_string") or "unknown codec"
    if (stream.get("disposition") or {}).get("attached_pic"):
        return (f"the cover art (stream {index}, {codec}) is dropped: a picture that may show a face is not "
                "copied, and it is not anonymized")
    if kind == "video":
        return f"video stream {index} ({codec}) is dropped: only the first video stream is anonymized"
    if kind == "subtitle":
        return f"subtitle stream {index} ({codec}) is dropped: the {container.muxer} output cannot carry it unchanged"
    if kind == "attachment":
        name = (stream.get("tags") or {}).get("filename") or codec
        return f"the attachment {name!r} (stream {index}) is dropped"
    return f"{kind} stream {index} ({codec}) is dropped"
