"""The bad-input corpus: every kind of file a real collection holds, built with ffmpeg in a temp folder.

Each case is a relative path, how to make it, and what must come of it: ``done`` (a correct
output: every frame, every audio stream, timestamps kept, plus the case's own checks),
``failed`` (a clear one-sentence error, the right exit-code class, no output) or ``ignored``
(passed over by discover, with its reason in the manifest and the summary). No media is
committed: the clips are a fraction of a second of ffmpeg's test pattern.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2

from steps.summarize import NO_REPORT
from workflows.synthetic import astronaut

#: A name that is not valid UTF-8 (Latin-1 "café"), as an old file server may hold.
LATIN1_NAME = os.fsdecode(b"caf\xe9.mp4")

#: 244 bytes: a valid name, too long once ".report.json" (255 bytes at most on Linux file systems) is added.
LONG_NAME = "long-" + "n" * 235 + ".mp4"

#: Names that would do harm if any part of the system pasted them into a shell, a template or a
#: path: each is a copy of a small clip and must come out done, under the very same name.
HOSTILE_NAMES = [
    "it's a \"quoted\" name.mp4", "ünïcødé 映像.mp4", "-leading-dash.mp4", "$(touch pwned)`touch pwned`.mp4",
    ";rm -rf canary;.mp4", "{{workflow.name}}.mp4", "..\\..\\up.mp4", "[/]x.mp4", "line\nbreak.mp4",
    "http:100%d.mp4", LATIN1_NAME,
]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def pattern(size: str = "160x90", seconds: float = 0.4, rate: int = 25) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


def tone(seconds: float = 0.4, frequency: int = 440) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate=48000:duration={seconds}"]


X264 = ["-c:v", "libx264", "-preset", "ultrafast"]


def clip(path: Path) -> None:
    """The small clip the hostile names are copies of: 0.4 s of test pattern with a tone."""
    ffmpeg(*pattern(), *tone(), *X264, "-pix_fmt", "yuv420p", "-c:a", "aac", str(path))


def cover_picture(path: Path) -> None:
    """A cover that shows a face (the public-domain astronaut): it must never reach the output unanonymized."""
    cv2.imwrite(str(path), cv2.resize(astronaut(), (128, 128)))


def make_subtitles_cover_mp4(path: Path) -> None:
    srt, cover = path.with_suffix(".srt"), path.with_suffix(".jpg")
    srt.write_text("1\n00:00:00,000 --> 00:00:00,300\nHello\n")
    cover_picture(cover)
    ffmpeg(*pattern(), *tone(), "-i", str(srt), "-i", str(cover), "-map", "0", "-map", "1", "-map", "2", "-map", "3",
           *X264, "-c:a", "aac", "-c:s", "mov_text", "-c:v:1", "mjpeg", "-disposition:v:1", "attached_pic", str(path))
    srt.unlink()
    cover.unlink()


def make_subtitles_cover_mkv(path: Path) -> None:
    srt, cover = path.with_suffix(".srt"), path.with_suffix(".jpg")
    srt.write_text("1\n00:00:00,000 --> 00:00:00,300\nHello\n")
    cover_picture(cover)
    ffmpeg(*pattern(), *tone(), "-i", str(srt), "-map", "0", "-map", "1", "-map", "2", *X264, "-c:a", "aac",
           "-c:s", "srt", "-attach", str(cover), "-metadata:s:t", "mimetype=image/jpeg", str(path))
    srt.unlink()
    cover.unlink()


def make_three_audio(path: Path) -> None:
    ffmpeg(*pattern(), *tone(frequency=440), *tone(frequency=880), *tone(frequency=220),
           "-map", "0", "-map", "1", "-map", "2", "-map", "3", *X264, "-c:a:0", "aac", "-c:a:1", "mp3", "-c:a:2", "ac3",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra", "-metadata:s:a:2", "language=deu",
           str(path))


def make_rotated(path: Path) -> None:
    plain = path.with_name("plain-" + path.name)
    ffmpeg(*pattern(), *tone(), *X264, "-c:a", "aac", str(plain))
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(path))  # ffmpeg 5.1: only when copying
    plain.unlink()


def make_photo(path: Path) -> None:
    """A JPEG named .mp4."""
    ok, data = cv2.imencode(".jpg", astronaut())
    path.write_bytes(data.tobytes())


def make_locked(path: Path) -> None:
    """A video nobody may read (root included, once it has dropped CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH)."""
    clip(path)
    path.chmod(0)


def make_truncated(path: Path, keep: float, faststart: bool) -> None:
    whole = path.with_name("whole-" + path.name)
    ffmpeg(*pattern(seconds=1), *tone(seconds=1), *X264, "-c:a", "aac",
           *(["-movflags", "+faststart"] if faststart else []), str(whole))
    data = whole.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    whole.unlink()


@dataclass(frozen=True)
class Case:
    path: str
    make: Callable[[Path], None]
    outcome: str  # done, failed or ignored
    #: failed: a fragment of the error; ignored: of the reason
    says: str = ""
    #: done: fragments each expected among the report's changes (steps.fidelity)
    changes: tuple[str, ...] = ()
    #: done: the output's picture size (default: the input's display size, made even)
    size: Optional[tuple[int, int]] = None
    #: done: the output name when it differs (a container that cannot hold the audio)
    output: Optional[str] = None
    extra: dict = field(default_factory=dict)


def bad_inputs() -> list[Case]:
    """Files that cannot become a video: each must fail with its own clear sentence, permanently."""
    return [
        Case("empty.mp4", lambda p: p.write_bytes(b""), "failed", "is empty (0 bytes)"),
        Case("notes.mp4", lambda p: p.write_text("this is a text file, not a video\n" * 20), "failed",
             "is not a video ffmpeg can read"),
        Case("photo.mp4", make_photo, "failed", "is a still image"),
        Case("audio_only.mp4", lambda p: ffmpeg(*tone(), "-c:a", "aac", str(p)), "failed", "has no video stream"),
        Case("deep/cut_end.mp4", lambda p: make_truncated(p, 0.5, faststart=False), "failed", "moov atom not found"),
        Case("cut_middle.mp4", lambda p: make_truncated(p, 0.6, faststart=True), "failed", "truncated or damaged"),
        Case("locked.mp4", make_locked, "failed", "cannot be read (permission denied)"),
        Case(LONG_NAME, clip, "failed", NO_REPORT,  # not even its report's name fits: the log says why
             extra={"log": "the name is too long for the output file system"}),
    ]


def odd_formats() -> list[Case]:
    """Unusual but valid videos: each must come out whole."""
    return [
        Case("no_audio.mp4", lambda p: ffmpeg(*pattern(), *X264, str(p)), "done"),
        Case("three_audio.mp4", make_three_audio, "done"),
        Case("subtitles_cover.mp4", make_subtitles_cover_mp4, "done", changes=("cover art",)),
        Case("subtitles_cover.mkv", make_subtitles_cover_mkv, "done", changes=("cover art",)),
        Case("odd_size.mp4", lambda p: ffmpeg(*pattern(size="162x92"), "-vf", "format=yuv444p,crop=161:91:0:0",
                                              *X264, str(p)),
             "done", changes=("padded from 161x91 to 162x92", "yuv444p is converted"), size=(162, 92)),
        Case("hevc_10bit.mp4", lambda p: ffmpeg(*pattern(size="320x180", seconds=0.3), "-c:v", "libx265",
                                                "-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le",
                                                "-tag:v", "hvc1", str(p)),
             "done", changes=("yuv420p10le is converted",)),
        Case("uhd_4k.mp4", lambda p: ffmpeg(*pattern(size="3840x2160", seconds=0.12), *X264, str(p)), "done",
             size=(3840, 2160)),
        Case("one_frame.mp4", lambda p: ffmpeg(*pattern(), "-frames:v", "1", *X264, str(p)), "done"),
        Case("vfr.mp4", lambda p: ffmpeg(*pattern(seconds=1), *tone(seconds=1), "-vf",
                                         "settb=1/1000,setpts='(N*40+mod(N\\,3)*13)/(1000*TB)'", "-fps_mode", "vfr",
                                         *X264, "-c:a", "aac", "-video_track_timescale", "1000", str(p)),
             "done", extra={"variable": True}),
        Case("rotated.mp4", make_rotated, "done", size=(90, 160)),
        Case("interlaced.mpg", lambda p: ffmpeg(*pattern(size="320x180"), *tone(), "-c:v", "mpeg2video", "-flags",
                                                "+ildct+ilme", "-top", "1", "-c:a", "mp2", str(p)),
             "done", output="interlaced.mpg.mkv", extra={"interlaced": True}),
    ]


def hostile_names() -> list[Case]:
    """Each a copy of the small clip ("[/]x.mp4" is ``]x.mp4`` in a folder ``[``: rich markup's closing tag)."""
    return [Case(name, clip, "done") for name in HOSTILE_NAMES]


def passed_over(outside: Path) -> list[Case]:
    """What discover lists as ignored, with its reason: links it does not follow, a folder it cannot read."""
    def link(target: str) -> Callable[[Path], None]:
        return lambda p: p.symlink_to(target)

    def private(p: Path) -> None:
        p.parent.mkdir(exist_ok=True)
        clip(p)
        p.parent.chmod(0)

    return [
        Case("loop_a.mp4", link("loop_b.mp4"), "ignored", "symbolic link loop"),
        Case("loop_b.mp4", link("loop_a.mp4"), "ignored", "symbolic link loop"),
        Case("outside.mp4", link(str(outside)), "ignored", "symbolic link out of the input folder"),
        Case("alias.mp4", link("no_audio.mp4"), "ignored", "listed under its real name"),
        Case("deep/up", link(".."), "ignored", "symbolic link to a folder"),
        Case("private", private, "ignored", "folder cannot be read"),
        Case("readme.txt", lambda p: p.write_text("not a video"), "ignored", "not a video"),
    ]


def build(root: Path, cases: list[Case]) -> None:
    """Make every case under *root* (a file of *private* is made inside its folder, made unreadable last)."""
    for case in cases:
        path = root / case.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if case.path == "private":
            case.make(path / "hidden.mp4")
        else:
            case.make(path)


def remove(root: Path) -> None:
    """Remove a corpus, unreadable folders and files included."""
    for folder, dirnames, _ in os.walk(root):  # top-down: a folder is opened before it is entered
        for name in dirnames:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
    shutil.rmtree(root, ignore_errors=True)
