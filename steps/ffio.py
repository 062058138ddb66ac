"""The two ffmpeg processes around the Python frame loop.

Frames travel as raw video inside NUT streams (ffmpeg's own streaming container), so every
frame keeps its exact presentation timestamp on the way out of the decoder, through Python
and into the encoder: variable frame rate stays variable and no frame is dropped or
duplicated. PyAV demuxes and muxes those NUT streams; the ffmpeg command lines are built
with ffmpeg-python. Frames stay in YUV 4:2:0 end to end (no colour conversion of the full
picture); the detector's and the audit's RGB pictures are made in Python from the frames they look
at (Frame.picture), not by the decoder.
"""

from __future__ import annotations

import collections
import os
import subprocess
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Optional

import av
import cv2
import ffmpeg
import numpy as np

from steps.containers import SEGMENT, Container, subtitle_streams
from steps.errors import PermanentError, TransientError
from steps.probe import MediaInfo, explain_ffmpeg_failure, ffmpeg_messages, ffmpeg_url
from steps.segments import Span

#: Marks a file URL carried hex-encoded through ffmpeg-python's graph (see graph_url).
_STAND_IN = "hex-stand-in:"


def graph_url(path: Path) -> str:
    """*path*'s ffmpeg URL as a node of ffmpeg-python's graph; ``command`` restores it.

    ffmpeg-python hashes every node's arguments as UTF-8, which a file name that is not valid
    UTF-8 (a str with PEP 383 surrogates) cannot be: such a URL travels hex-encoded instead.
    """
    url = ffmpeg_url(path)
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        return _STAND_IN + os.fsencode(url).hex()
    return url


def command(stream: ffmpeg.nodes.OutputStream, *global_args: str) -> list[str]:
    """ffmpeg-python's argument list with the global options first, where ffmpeg expects them."""
    args = [os.fsdecode(bytes.fromhex(a[len(_STAND_IN):])) if a.startswith(_STAND_IN) else a
            for a in stream.compile()]
    return [args[0], "-hide_banner", "-nostdin", "-v", "error", *global_args, *args[1:]]


class _StderrTail(threading.Thread):
    """Drains a process's stderr (so it never blocks) and keeps the last lines for error messages."""

    def __init__(self, pipe: IO[bytes]):
        super().__init__(daemon=True)
        self.pipe, self.lines = pipe, collections.deque(maxlen=40)
        self.start()

    def run(self) -> None:
        for line in iter(self.pipe.readline, b""):
            self.lines.append(line.decode(errors="replace").rstrip())

    @property
    def text(self) -> str:
        self.join(timeout=5)
        return "\n".join(self.lines)


def _pipe_url(pipe: IO[bytes]) -> str:
    """ffmpeg's URL for an open pipe: PyAV then reads and writes it in C, without the GIL or a Python
    call per 32 KiB (a file-like wrapper cost about 3 ms of CPU per 1080p frame here)."""
    return f"pipe:{pipe.fileno()}"


@dataclass
class Frame:
    """One decoded frame: the full picture as YUV 4:2:0 planes.

    The planes are a writable view into the decoder's packet, which goes back to the encoder
    with the faces hidden: the picture is never copied in Python.
    """

    index: int
    pts: int
    buffer: np.ndarray  # the raw yuv420p bytes, writable
    width: int
    height: int
    packet: Optional[av.Packet] = None  # the decoder's packet that *buffer* views

    def planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Writable views of the Y, U and V planes into the buffer."""
        w, h = self.width, self.height
        cw, ch = (w + 1) // 2, (h + 1) // 2
        y = self.buffer[: w * h].reshape(h, w)
        u = self.buffer[w * h: w * h + cw * ch].reshape(ch, cw)
        v = self.buffer[w * h + cw * ch: w * h + 2 * cw * ch].reshape(ch, cw)
        return y, u, v

    def picture(self, size: tuple[int, int], bgr: bool = False) -> np.ndarray:
        """A new RGB (or BGR) picture of the frame at *size* (width, height; even numbers).

        To shrink, the planes are resized first (fewer pixels to convert: cheap even for 4K); to enlarge
        (the detector's look for small faces), the picture is converted first, then enlarged (bilinear).
        Made here from the frames looked at, this costs less than the decoder scaling a copy of them
        (measured: BENCHMARKS.md, fourth session).
        """
        code = cv2.COLOR_YUV2BGR_I420 if bgr else cv2.COLOR_YUV2RGB_I420
        i420 = self.buffer.reshape(self.height * 3 // 2, self.width)  # the layout OpenCV converts
        if size == (self.width, self.height):
            return cv2.cvtColor(i420, code)
        if size[0] > self.width or size[1] > self.height:
            return cv2.resize(cv2.cvtColor(i420, code), size, interpolation=cv2.INTER_LINEAR)
        # Area averaging where a pixel of the result covers two or more of the frame's (bilinear would skip
        # some); bilinear for a lesser shrink, where OpenCV's area averaging costs ten times as much (a 1080p
        # plane to 0.75 times: 7.6 against 0.8 ms of CPU) for no visible difference.
        shrink = cv2.INTER_AREA if 2 * size[0] <= self.width else cv2.INTER_LINEAR
        y, u, v = self.planes()
        half = (size[0] // 2, size[1] // 2)
        shrunk = [cv2.resize(y, size, interpolation=shrink)] + [cv2.resize(p, half, interpolation=shrink)
                                                                for p in (u, v)]
        return cv2.cvtColor(np.concatenate([p.reshape(-1) for p in shrunk]).reshape(size[1] * 3 // 2, size[0]), code)


def even(n: int) -> int:
    return n + (n % 2)


class Decoder:
    """``ffmpeg`` decoding the input's main video stream to raw frames on a pipe.

    With a *span* (one segment of a long video, see steps.segments), ffmpeg seeks to the
    keyframe at or before the span's start and hands over every frame from there; frames()
    keeps exactly those whose timestamp lies in the span and stops at the first one after it.
    """

    def __init__(self, info: MediaInfo, hwaccel: Optional[str] = None, span: Optional[Span] = None):
        self.info, self.hwaccel, self.span = info, hwaccel, span
        width, height = info.video.display_size
        self.width, self.height = even(width), even(height)
        self.time_base: Optional[Fraction] = None
        self.rate: Optional[Fraction] = None
        self.stopped_early = False
        self._launch(span.start if span is not None else None)

    def _launch(self, seek: Optional[float]) -> None:
        width, height = self.info.video.display_size
        input_args = {"copyts": None}
        if self.hwaccel:
            input_args["hwaccel"] = self.hwaccel
        if seek is not None:
            # The seek point is on the input's own timestamps (those -copyts keeps), and ffmpeg must
            # not drop the frames between the keyframe and the seek point itself: frames() does that.
            input_args.update(ss=f"{seek:.6f}", seek_timestamp=1, noaccurate_seek=None)
        video = ffmpeg.input(graph_url(self.info.path), **input_args)[str(self.info.video.index)]
        if (width, height) != (self.width, self.height):  # x264 needs even sizes: pad one black line
            video = video.filter("pad", self.width, self.height)
        out = ffmpeg.output(video.filter("format", "yuv420p"), "pipe:1", format="nut", vcodec="rawvideo",
                            fps_mode="passthrough", enc_time_base=-1)
        self.args = command(out)
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self.stderr = _StderrTail(self.proc.stderr)

    def frames(self) -> Iterator[Frame]:
        """Yield every decoded frame (of the span, if any) in presentation order."""
        if self.span is None:
            yield from self._decoded()
            return
        for attempt, seek in enumerate(_seek_points(self.span.start)):
            if attempt:
                self.kill()
                self._launch(seek)
            if (yield from self._span_frames(after_seek=seek is not None)):
                return

    def _span_frames(self, after_seek: bool) -> Generator[Frame, None, bool]:
        """The span's frames from the running ffmpeg. False, having yielded nothing, when the seek may
        have skipped some of them (it landed after the span's start, or past the end of the video)."""
        decoded = self._decoded(after_seek)
        kept, first = 0, True
        for frame in decoded:
            seconds = frame.pts * self.time_base
            if first and after_seek and seconds > Fraction(self.span.start):
                decoded.close()
                return False
            first = False
            if self.span.before(seconds):
                continue
            if self.span.after(seconds):  # frames come in presentation order: the span is complete
                decoded.close()
                self.stopped_early = True
                self.kill()
                return True
            frame.index, kept = kept, kept + 1
            yield frame
        return not (first and after_seek)

    def _decoded(self, after_seek: bool = False) -> Iterator[Frame]:
        """Every frame ffmpeg sends."""
        try:
            container = av.open(_pipe_url(self.proc.stdout), mode="r", format="nut")
        except av.error.FFmpegError:
            self.proc.wait()
            if after_seek and self.proc.returncode == 0:
                return  # no frame after the seek point
            raise self.failure("the decoder produced no video") from None
        with container:
            stream = container.streams.video[0]
            self.time_base = stream.time_base
            self.rate = stream.average_rate or self.info.video.avg_rate
            frame_bytes = self.width * self.height + 2 * ((self.width + 1) // 2) * ((self.height + 1) // 2)
            index = 0
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                data = np.frombuffer(packet, np.uint8)
                if data.size != frame_bytes:
                    raise self.failure(f"the decoder sent a frame of {data.size} bytes, expected {frame_bytes}")
                yield Frame(index, packet.pts, data, self.width, self.height, packet=packet)
                index += 1

    def finish(self) -> None:
        """Wait for ffmpeg and raise a clear error if decoding failed."""
        if self.stopped_early:
            return  # stopped on purpose at the end of its span
        code = self.proc.wait()
        if code != 0:
            raise self.failure(f"the decoder exited with code {code}")

    def failure(self, what: str) -> Exception:
        text = self.stderr.text
        if self.proc.returncode is not None and self.proc.returncode < 0:
            return TransientError(f"{what}: ffmpeg was killed by signal {-self.proc.returncode}")
        return PermanentError(explain_ffmpeg_failure(text, f"{self.info.path.name!r} could not be decoded: {what}"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _seek_points(start: Optional[float]) -> list[Optional[float]]:
    """Where to seek for a span starting at *start*: there, then earlier, then not at all (the whole input).

    Demuxers seek to a keyframe at or before the point asked for; the earlier tries are for
    those that land after it (their first frame is then after the span's start).
    """
    if start is None:
        return [None]
    return [start] + [start - back for back in (10.0, 120.0) if start - back > 0] + [None]


#: ffmpeg's messages for an output it could not complete, which version 5.1 does not reflect in its exit code.
_UNFINISHED = ("Error writing trailer", "Error closing file")


@dataclass(frozen=True)
class EncoderSettings:
    codec: str = "libx264"  # or "h264_nvenc" where the GPU has NVENC (steps.accel)
    crf: int = 20
    preset: str = "veryfast"
    threads: int = 0

    def args(self) -> dict[str, object]:
        """ffmpeg's video codec options, shared by the anonymizer and the benchmark's plain transcode."""
        if self.codec == "copy":  # joining segments already encoded
            return {"vcodec": "copy"}
        args: dict[str, object] = {"vcodec": self.codec, "pix_fmt": "yuv420p"}
        if self.codec == "h264_nvenc":
            # NVENC has no CRF: constant quality (-cq) with the same number is its nearest equivalent;
            # p4 is NVENC's middle preset, about x264's veryfast in quality per bit.
            args.update({"preset": "p4", "rc": "vbr", "cq": self.crf, "b:v": 0})
        else:
            args.update(crf=self.crf, preset=self.preset)
            if self.threads:
                args["threads"] = self.threads
        return args


class Encoder:
    """``ffmpeg`` encoding raw frames from a pipe and muxing them with the input's own audio.

    Audio (and subtitle) streams are copied packet for packet from the original file; the
    container metadata (creation time and other tags), stream metadata and chapters are
    copied too. ``-copyts`` with the input's time base keeps every timestamp as it was.

    Two variants serve long videos cut in segments (steps.segments): into the SEGMENT
    container, only the video is written (one segment); with a *template* stream and the
    ``copy`` codec, already encoded packets given to write_packet() are muxed as they are,
    with the original's audio (the segments joined, steps.join).
    """

    def __init__(self, info: MediaInfo, output: Path, container: Container, width: int, height: int,
                 time_base: Fraction, rate: Optional[Fraction], settings: EncoderSettings, name: str = "",
                 template: Optional[av.video.stream.VideoStream] = None):
        self.info, self.output, self.name = info, output, name or output.name
        piped = ffmpeg.input("pipe:0", format="nut", copyts=None)
        whole = container is not SEGMENT
        video_args = {**settings.args(), "fps_mode": "passthrough", "max_muxing_queue_size": 9999,
                      "format": container.muxer}
        video = piped["v:0"]
        if settings.codec != "copy":
            # The input's own time base, so timestamps are stored as they were (the pipe's may differ).
            video_args["enc_time_base"] = str(info.video.time_base)
            top_field_first = info.video.top_field_first
            if top_field_first is not None:
                # Interlaced input: its fields were never separated (no deinterlacing), so the output is
                # coded and flagged interlaced in the same field order, for players to deinterlace as before.
                video = video.filter("setfield", "tff" if top_field_first else "bff")
                if settings.codec == "libx264":
                    video_args["flags"] = "+ildct+ilme"
        streams, copied = [video], []
        if whole:
            original = ffmpeg.input(graph_url(info.path), copyts=None)
            # "1:a?" maps every audio stream, in order, and keeps the original as input 1 even
            # without audio (ffmpeg-python leaves out inputs no stream comes from).
            subtitles = subtitle_streams(container, info)
            streams += [original["a?"], *(original[str(s["index"])] for s in subtitles)]
            copied = [*info.audio, *subtitles]
            video_args.update(acodec="copy", scodec="copy", map_metadata=1, map_chapters=1)
        else:  # a segment keeps the input's timestamps, even where B-frames make its first decoding time negative
            video_args["avoid_negative_ts"] = "disabled"
        colour = {"color_range": "color_range", "color_space": "colorspace",
                  "color_transfer": "color_trc", "color_primaries": "color_primaries"}
        for key, option in colour.items():
            if key in info.video.color:
                video_args[option] = info.video.color[key]
        original_tb = info.video.time_base
        if container.timescale_option and original_tb.numerator == 1 and original_tb.denominator <= 10_000_000:
            video_args["video_track_timescale"] = original_tb.denominator
        # Stream metadata (language, handler, creation time): video from the input's video stream,
        # the copied streams from themselves.
        if whole:
            video_args["map_metadata:s:0"] = f"1:s:{info.video.index}"
        for i, s in enumerate(copied, start=1):
            video_args[f"map_metadata:s:{i}"] = f"1:s:{s['index']}"
        out = ffmpeg.output(*streams, graph_url(output), **video_args)
        self.args = command(out, "-y")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.stderr = _StderrTail(self.proc.stderr)
        # The segments' packets keep their timestamps, even a negative decoding time before the first frame.
        options = {"avoid_negative_ts": "disabled"} if template is not None else None
        self.muxer = av.open(_pipe_url(self.proc.stdin), mode="w", format="nut", options=options)
        if template is None:
            self.stream = self.muxer.add_stream("rawvideo", rate=rate or Fraction(25))
            self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        else:
            self.stream = self.muxer.add_stream_from_template(template)
        self.stream.time_base = time_base
        self.frames = 0

    def write(self, frame: Frame) -> None:
        packet = frame.packet if frame.packet is not None else av.Packet(frame.buffer)
        packet.pts = packet.dts = frame.pts
        packet.time_base = self.stream.time_base
        packet.stream = self.stream
        try:
            self.muxer.mux(packet)
        except (BrokenPipeError, OSError, av.error.FFmpegError) as exc:
            raise self.failure("the encoder stopped accepting frames") from exc
        self.frames += 1

    def write_packet(self, packet: av.Packet) -> None:
        """An encoded packet of the template's stream, muxed as it is (its timestamps included)."""
        packet.stream = self.stream
        try:
            self.muxer.mux(packet)
        except (BrokenPipeError, OSError, av.error.FFmpegError) as exc:
            raise self.failure("the muxer stopped accepting packets") from exc
        self.frames += 1

    def finish(self) -> None:
        try:
            self.muxer.close()
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, av.error.FFmpegError) as exc:
            raise self.failure("the encoder stopped accepting frames") from exc
        code = self.proc.wait()
        if code != 0:
            raise self.failure(f"the encoder exited with code {code}")
        if any(line.startswith(_UNFINISHED) for line in self.stderr.text.splitlines()):
            # ffmpeg 5.1 exits 0 when it could not finish the file (a disk full while writing the trailer).
            raise self.failure("the encoder could not finish the file")

    def failure(self, what: str) -> Exception:
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        text = self.stderr.text
        if "No space left on device" in text:
            return TransientError(f"writing {self.name!r} failed: no space left on the output volume")
        if "Permission denied" in text or "Read-only file system" in text:
            return PermanentError(f"writing {self.name!r} failed: the output folder is not writable")
        if self.proc.returncode is not None and self.proc.returncode < 0:
            return TransientError(f"{what}: ffmpeg was killed by signal {-self.proc.returncode}")
        return TransientError(explain_ffmpeg_failure(text, f"encoding {self.name!r} failed: {what}"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def count_video_packets(path: Path) -> int:
    """Frames in the output's video stream, counted from its packets (no decoding)."""
    try:
        data = ffmpeg.probe(ffmpeg_url(path), v="error", select_streams="v:0", count_packets=None,
                            show_entries="stream=nb_read_packets")
        return int(data["streams"][0]["nb_read_packets"])
    except (ffmpeg.Error, LookupError, ValueError) as exc:
        reason = ffmpeg_messages((getattr(exc, "stderr", None) or b"").decode(errors="replace")) or str(exc)
        raise TransientError(f"the encoded video cannot be read back ({reason})") from None
