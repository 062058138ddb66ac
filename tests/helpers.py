"""Facts about media files, read with ffprobe/ffmpeg, for assertions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np


def ffprobe(path: Path, *args: str) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *args, f"file:{Path(path).absolute()}"],
                         check=True, capture_output=True).stdout
    return json.loads(out)


def streams(path: Path) -> list[dict]:
    return ffprobe(path, "-show_streams")["streams"]


def video_stream(path: Path) -> dict:
    return next(s for s in streams(path) if s["codec_type"] == "video"
                and not s.get("disposition", {}).get("attached_pic"))


def decoded_frames(path: Path) -> int:
    """Frames of the main video stream, counted by decoding."""
    index = video_stream(path)["index"]
    data = ffprobe(path, "-count_frames", "-select_streams", str(index), "-show_entries", "stream=nb_read_frames")
    return int(data["streams"][0]["nb_read_frames"])


def frame_times(path: Path) -> list[float]:
    """Presentation time of every frame of the main video stream, as ffprobe reports it.

    AVI gives no timestamp to some frames of a stream with B-frames (at its ends): those are
    filled in from the nearest known one, a frame duration apart.
    """
    index = video_stream(path)["index"]
    data = ffprobe(path, "-select_streams", str(index), "-show_entries",
                   "frame=pts_time,best_effort_timestamp_time,pkt_duration_time,duration_time")
    times = [f.get("best_effort_timestamp_time") or f.get("pts_time") for f in data["frames"]]
    durations = [float(f.get("duration_time") or f.get("pkt_duration_time") or 0) for f in data["frames"]]
    known = next(i for i, t in enumerate(times) if t is not None)
    result = [float(t) if t is not None else None for t in times]
    for i in range(known - 1, -1, -1):
        result[i] = result[i + 1] - durations[i]
    for i in range(known + 1, len(result)):
        if result[i] is None:
            result[i] = result[i - 1] + durations[i - 1]
    return result


def audio_packet_hashes(path: Path) -> list[list[str]]:
    """Per audio stream, the md5 of every packet's payload (the payload, not its container framing).

    AAC in AVI or MPEG-TS carries a 7-byte ADTS header per packet that MP4 and Matroska do not
    store: it is removed (aac_adtstoasc) before hashing, which leaves other packets as they are.
    """
    result = []
    for s in streams(path):
        if s["codec_type"] != "audio":
            continue
        bsf = ["-bsf:a", "aac_adtstoasc"] if s["codec_name"] == "aac" else []
        out = subprocess.run(["ffmpeg", "-v", "error", "-i", f"file:{Path(path).absolute()}", "-map",
                              f"0:{s['index']}", "-c", "copy", *bsf, "-f", "framemd5", "-"],
                             check=True, capture_output=True, text=True).stdout
        # framemd5 lines: stream, dts, pts, duration, size, hash[, side data]
        result.append([line.split(",")[5].strip() for line in out.splitlines() if not line.startswith("#")])
    return result


def read_frames(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """All frames as an (N, H, W, 3) uint8 BGR array (ffmpeg applies the display rotation)."""
    vs = video_stream(path)
    w, h = size or (int(vs["width"]), int(vs["height"]))
    if size is None and any(abs(int(sd.get("rotation", 0))) in (90, 270) for sd in vs.get("side_data_list", [])):
        w, h = h, w
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", f"file:{Path(path).absolute()}", "-map",
                          f"0:{vs['index']}", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "bgr24",
                          "-s", f"{w}x{h}", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
