"""Long videos in segments: every frame exactly once, the original timing and audio, joined without re-encoding."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from steps import engine
from steps.containers import MATROSKA
from steps.detections import DetectionsWriter, read_detections
from steps.detectors.base import Detector, Resolution
from steps.durations import measure_all
from steps.ffio import Decoder
from steps.probe import probe
from steps.segments import cut_times, parse_work_item, spans
from steps.settings import Settings
from tests import helpers as h
from tests.conftest import MEDIA, needs_media, run_cli


def decoded(path, span=None):
    """(pts, md5 of the picture) of every frame the decoder keeps for *span* (None: the whole video)."""
    decoder = Decoder(probe(path), span=span)
    frames = [(frame.pts, hashlib.md5(frame.buffer.tobytes()).hexdigest()) for frame in decoder.frames()]
    decoder.finish()
    return frames


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory):
    """6 s, variable frame rate (gaps of 53, 53 and 14 ms), keyframes every 30 frames, starting at 0."""
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=6",
                    "-vf", "settb=1/1000,setpts='(N*40+mod(N\\,3)*13)/(1000*TB)'", "-fps_mode", "vfr",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-video_track_timescale", "1000",
                    str(path)], check=True)
    return path


class _Recording(Detector):
    """Finds one box in every picture; keeps the pictures it was given."""

    def __init__(self):
        self.resolution, self.pictures = Resolution(), []

    def infer(self, images):
        self.pictures += [image.copy() for image in images]
        return [np.array([[10, 10, 30, 30, 0.9]], np.float32) for _ in images]


def test_in_a_segment_the_detector_looks_at_every_third_frame_of_the_segment(vfr_clip, tmp_path):
    """Decoding a segment starts at a keyframe before it; the detector's looks are still counted from the
    segment's first frame (0, 3, 6... and its last), and each look is that frame's own picture, enlarged 1.5
    times."""
    info = probe(vfr_clip)
    length = measure_all([vfr_clip])[0]
    segment = spans(cut_times(length.duration, length.start, 1.3))[2]
    whole = Decoder(info)
    reference = {frame.pts: frame.picture((240, 180)) for frame in whole.frames()}
    whole.finish()
    detector, writer = _Recording(), DetectionsWriter(tmp_path / "part.detections.csv.gz")
    stats = engine.run(info, tmp_path / "part.mkv", MATROSKA, Settings(fine_every=1, detect_every=3), detector,
                       detections=writer, span=segment)
    writer.commit()
    rows = read_detections(tmp_path / "part.detections.csv.gz")
    looked_at = sorted({int(r["frame"]) for r in rows if r["source"] == "detected"})
    assert stats.frames > 20 and looked_at == sorted({*range(0, stats.frames, 3), stats.frames - 1})
    in_span = Decoder(info, span=segment)
    pts = [frame.pts for frame in in_span.frames()]
    in_span.finish()
    assert pts[0] > min(reference)  # the segment is not the video's start
    assert len(detector.pictures) == len(looked_at)
    for index, picture in zip(looked_at, detector.pictures):
        assert np.array_equal(picture, reference[pts[index]]), index


@pytest.mark.parametrize("clip,seconds", [("vfr", 1.3), ("hamilton_audio.mp4", 2.0), ("pedestrians_far.avi", 20.0)])
def test_segments_partition_the_frames_exactly(clip, seconds, vfr_clip):
    """Cut mid-GOP (pedestrians_far.avi has a keyframe every 25 s, cut every ~20 s; hamilton starts at 0.85 s):
    the segments' frames, in order, are the whole decode's, timestamps and pictures alike."""
    if clip != "vfr" and not MEDIA.is_dir():
        pytest.skip(f"the shared test clips are not at {MEDIA}")
    path = vfr_clip if clip == "vfr" else MEDIA / clip
    length = measure_all([path])[0]
    cuts = cut_times(length.duration, length.start, seconds)
    assert len(cuts) >= 3
    whole = decoded(path)
    parts = [decoded(path, span) for span in spans(cuts)]
    assert all(parts), "a segment came out empty"
    assert [frame for part in parts for frame in part] == whole


@needs_media
def test_a_long_video_in_segments_equals_the_whole_one(shared_run, tmp_path):
    """pedestrians_far.avi (79.5 s, AAC audio) in 20 s segments, against the input and the unsegmented output."""
    _, shared_out, _ = shared_run
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    source = inp / "pedestrians_far.avi"
    shutil.copyfile(MEDIA / "pedestrians_far.avi", source)
    result = run_cli("workflows", "run", str(inp), str(out), "--segment-seconds", "20", "--workers", "2")
    assert result.returncode == 0, result.stderr
    joined, whole = out / "pedestrians_far.avi.mkv", shared_out / "nested" / "pedestrians_far.avi.mkv"
    report = json.loads((out / "pedestrians_far.avi.report.json").read_text())
    assert report["status"] == "done" and report["segments"] == 4 and report["frames_out"] == 795
    # The segments' stage times, added up: busy and CPU.
    assert report["stage_seconds"]["detect"] >= report["stage_cpu_seconds"]["detect"] > 0
    assert set(report["stage_cpu_seconds"]) == {*report["stage_seconds"], "other"}

    assert h.decoded_frames(joined) == h.decoded_frames(source) == h.decoded_frames(whole) == 795
    times_in, times_joined, times_whole = h.frame_times(source), h.frame_times(joined), h.frame_times(whole)
    assert max(abs(a - b) for a, b in zip(times_in, times_joined)) < 0.0015
    assert times_joined == times_whole
    duration = {p: float(h.ffprobe(p, "-show_format")["format"]["duration"]) for p in (source, joined, whole)}
    assert abs(duration[joined] - duration[source]) <= 0.1 and duration[joined] == duration[whole]
    assert h.audio_packet_hashes(joined) == h.audio_packet_hashes(source)  # copied once, whole, unchanged
    assert len(h.audio_packet_hashes(source)[0]) > 3000  # 79.5 s of AAC packets

    # Around each cut, every frame is its own counterpart in the unsegmented output, not a neighbour's:
    # a dropped or repeated frame would shift the pictures by one.
    cuts = json.loads((out / "manifest.json").read_text())["items"][0]["cuts"]
    assert len(cuts) == 3
    frames_joined, frames_whole = h.read_frames(joined), h.read_frames(whole)
    for cut in cuts:
        first = next(i for i, t in enumerate(times_in) if t >= cut)
        for i in range(first - 2, first + 3):
            same = h.psnr(frames_joined[i], frames_whole[i])
            assert same > 32, (cut, i, same)
            assert same > max(h.psnr(frames_joined[i], frames_whole[i + k]) for k in (-1, 1)) + 5, (cut, i)
    assert not [p.name for p in out.rglob("*") if p.name.startswith((".segments-", ".partial-"))]

    # One detections file for the video, made of the segments' with their frames renumbered from its start:
    # each row's time is that frame's, and the frames with boxes are mostly those of the unsegmented run
    # (measured: 68 %; tracking and the detection stride restart at each cut, and this clip's few
    # detections are weak ones that come and go).
    rows = read_detections(Path(report["detections"]))
    assert Path(report["detections"]) == out / "pedestrians_far.avi.detections.csv.gz"
    assert all(abs(float(r["time"]) - times_in[int(r["frame"])]) < 0.0015 for r in rows)
    joined_frames = {int(r["frame"]) for r in rows}
    whole_frames = {int(r["frame"]) for r in read_detections(shared_out / "nested" / "pedestrians_far.avi"
                                                             ".detections.csv.gz")}
    assert len({next(i for i, c in enumerate(cuts + [1e9]) if times_in[f] < c) for f in joined_frames}) >= 3
    assert len(joined_frames & whole_frames) >= 0.5 * len(joined_frames | whole_frames) > 100

    again = run_cli("workflows", "run", str(inp), str(out), "--segment-seconds", "20", "--workers", "2")
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "summary.json").read_text())["totals"]["skipped"] == 1


@needs_media
def test_a_missing_or_failed_segment_fails_the_video_and_writes_nothing(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    shutil.copyfile(MEDIA / "carphone_qcif.mp4", inp / "carphone_qcif.mp4")
    listed = run_cli("steps.discover", str(inp), str(out), "--segment-seconds", "2", "--print-work", check=True)
    assert json.loads(listed.stdout) == ["0:0", "0:1", "0:2"]
    manifest = str(out / "manifest.json")
    for item in ("0:0", "0:2"):
        done = run_cli("steps.anonymize", "--manifest", manifest, "--index", item, check=True)
        assert "joined" not in done.stderr  # not the last segment: no join yet

    joined = run_cli("steps.join", "--manifest", manifest)

    assert joined.returncode == 3  # a missing segment: joining again cannot help, running the work can
    report = json.loads((out / "carphone_qcif.mp4.report.json").read_text())
    assert report["status"] == "failed" and "segment 2 of 3" in report["error"] and "not anonymized" in report["error"]
    assert not (out / "carphone_qcif.mp4").exists() and not list(out.glob(".partial-*"))
    listed = run_cli("steps.discover", str(inp), str(out), "--segment-seconds", "2", "--print-work", check=True)
    assert json.loads(listed.stdout) == ["0:1"]  # resume: only the missing segment

    last = run_cli("steps.anonymize", "--manifest", manifest, "--index", "0:1", check=True)

    assert "120 frames from 3 segments, joined" in last.stderr  # the worker of the last segment joined the video
    assert h.decoded_frames(out / "carphone_qcif.mp4") == 120
    assert h.frame_times(out / "carphone_qcif.mp4") == pytest.approx(h.frame_times(inp / "carphone_qcif.mp4"),
                                                                      abs=0.0015)
    assert not (out / ".segments-carphone_qcif.mp4").exists()
    bad = run_cli("steps.anonymize", "--manifest", manifest, "--index", "0:7")
    assert bad.returncode == 2 and "segments" in bad.stderr


def test_cut_times_and_work_items():
    assert cut_times(79.5, 0.0, 20) == [19.875, 39.75, 59.625]
    assert cut_times(600.0, 0.0, 300) == [300.0]
    assert cut_times(300.0, 0.0, 300) == cut_times(1000.0, 0.0, 0) == []
    assert cut_times(1000.0, -0.08, 300) == cut_times(1000.0, None, 300) == []  # timestamps the pipe would shift
    parts = spans([10.0, 20.0])
    assert [(p.start, p.end) for p in parts] == [(None, 10.0), (10.0, 20.0), (20.0, None)]
    assert parse_work_item("3") == (3, None) and parse_work_item("3:2") == (3, 2)
    for bad in ("", "3:", "a", "3:x", "-1"):
        with pytest.raises(ValueError):
            parse_work_item(bad)


@needs_media
def test_lengths_are_probed_and_cached(tmp_path, monkeypatch):
    clips = [MEDIA / "pedestrians_far.avi", MEDIA / "hamilton_audio.mp4", MEDIA / "SOURCES.md"]
    cache = tmp_path / "cache.json"
    first = measure_all(clips, cache)
    assert (first[0].frames, first[0].duration, first[0].width, first[0].height) == (795, 79.5, 480, 360)
    assert first[1].frames == 275 and first[1].start == pytest.approx(0.852, abs=0.001)
    assert first[2] is None  # not a video

    def no_probing(path):
        raise AssertionError(f"{path} was probed again")

    monkeypatch.setattr("steps.durations.measure", no_probing)
    assert measure_all(clips, cache) == first
