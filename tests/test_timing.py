"""Variable frame rate stays variable: every frame keeps its own timestamp, in MP4 and Matroska."""

from __future__ import annotations

import subprocess

import pytest

from steps.anonymize import anonymize_file
from steps.settings import Settings
from tests import helpers as h


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    # Frame n at n*40 + (n%3)*13 ms: spacing alternates between 53, 53 and 14 ms.
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
                    "-f", "lavfi", "-i", "sine=frequency=300:duration=3",
                    "-vf", "settb=1/1000,setpts='(N*40+mod(N\\,3)*13)/(1000*TB)'", "-fps_mode", "vfr",
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-video_track_timescale", "1000",
                    str(path)], check=True)
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_variable_frame_rate_timestamps_are_kept(vfr_clip, tmp_path, suffix):
    times_in = h.frame_times(vfr_clip)
    gaps = {round(b - a, 3) for a, b in zip(times_in, times_in[1:])}
    assert len(gaps) > 1, "the test clip is not variable frame rate"
    out = tmp_path / f"out{suffix}"
    report = anonymize_file(vfr_clip, out, tmp_path / "r.json", Settings())
    assert report.status == "done", report.error
    times_out = h.frame_times(out)
    assert len(times_out) == len(times_in)
    # Every frame keeps its place relative to the first one...
    shifted = [b - times_out[0] + times_in[0] for b in times_out]
    assert max(abs(a - b) for a, b in zip(times_in, shifted)) < 0.0015
    if suffix != ".mkv":
        # ...and exactly its time. Matroska cannot store the AAC priming samples' negative
        # timestamps, so ffmpeg shifts all of its streams by them (a plain stream copy does too).
        assert max(abs(a - b) for a, b in zip(times_in, times_out)) < 0.0015
    assert h.audio_packet_hashes(out) == h.audio_packet_hashes(vfr_clip)
