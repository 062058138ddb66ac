"""The whole local run over the real shared clips: frames, timing, audio, rotation, metadata."""

from __future__ import annotations

import json

import pytest

from tests import helpers as h
from tests.conftest import CLIPS


def rel(name: str) -> str:
    return ("nested/" if name.endswith(".avi") else "") + name


def output_of(name: str) -> str:
    """AVI with AAC audio is written to Matroska (see steps.containers)."""
    return rel(name) + (".mkv" if name.endswith(".avi") else "")


def test_run_anonymizes_every_clip_and_summarizes(shared_run):
    inp, out, result = shared_run
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    totals = summary["totals"]
    assert totals["discovered"] == totals["done"] == len(CLIPS)
    assert totals["failed"] == totals["skipped"] == 0
    assert {row["path"] for row in summary["rows"]} == {rel(n) for n in CLIPS}
    assert totals["frames"] == sum(c["frames"] for c in CLIPS.values())
    markdown = (out / "summary.md").read_text()
    assert markdown.count("| done |") == len(CLIPS)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [i["path"] for i in manifest["items"]] == sorted(rel(n) for n in CLIPS)
    assert not list(out.rglob(".partial-*")), "temporary files were left behind"


@pytest.mark.parametrize("name", list(CLIPS))
def test_frames_timing_and_audio_are_kept(shared_run, name):
    inp, out, _ = shared_run
    src, dst = inp / rel(name), out / output_of(name)
    assert h.decoded_frames(dst) == h.decoded_frames(src) == CLIPS[name]["frames"]
    times_in, times_out = h.frame_times(src), h.frame_times(dst)
    assert len(times_in) == len(times_out)
    assert max(abs(a - b) for a, b in zip(times_in, times_out)) < 0.0015
    fps = CLIPS[name]["frames"] / (times_in[-1] - times_in[0] + 1e-9)
    duration_in = float(h.ffprobe(src, "-show_format")["format"]["duration"])
    duration_out = float(h.ffprobe(dst, "-show_format")["format"]["duration"])
    assert abs(duration_in - duration_out) <= 1 / fps
    audio_in, audio_out = h.audio_packet_hashes(src), h.audio_packet_hashes(dst)
    assert bool(audio_in) == CLIPS[name]["audio"]
    assert audio_out == audio_in, "the audio packets differ from the original's"
    codecs = [[s["codec_name"], s.get("sample_rate"), s.get("channels")] for s in h.streams(src)
              if s["codec_type"] == "audio"]
    assert codecs == [[s["codec_name"], s.get("sample_rate"), s.get("channels")] for s in h.streams(dst)
                      if s["codec_type"] == "audio"]
    video_in, video_out = h.video_stream(src), h.video_stream(dst)
    assert video_out["codec_name"] == "h264"
    assert video_out["avg_frame_rate"] == video_in["avg_frame_rate"]
    if dst.suffix != ".mkv":  # Matroska declares no frame count
        assert video_out.get("nb_frames") == video_in.get("nb_frames"), "the container declares another frame count"
    report = json.loads((out / (rel(name) + ".report.json")).read_text())
    assert report["status"] == "done" and report["output"] == str(dst)
    assert report["frames_in"] == report["frames_out"] == CLIPS[name]["frames"]
    assert report["input"]["fingerprint"] and report["input"]["size"] == src.stat().st_size


def test_rotation_is_shown_the_same_way_and_a_faceless_clip_is_nearly_unchanged(shared_run):
    inp, out, _ = shared_run
    src, dst = inp / "rotated_noface.mov", out / "rotated_noface.mov"
    shown_in, shown_out = h.read_frames(src), h.read_frames(dst)
    assert shown_in.shape == shown_out.shape
    assert shown_out.shape[1:3] == (568, 320), "the output is not shown in portrait like the input"
    assert h.psnr(shown_in, shown_out) > 35
    report = json.loads((out / "rotated_noface.mov.report.json").read_text())
    assert report["frames_with_faces"] == 0


def test_container_metadata_is_kept(shared_run):
    inp, out, _ = shared_run
    tags_in = h.ffprobe(inp / "rotated_noface.mov", "-show_format")["format"]["tags"]
    tags_out = h.ffprobe(out / "rotated_noface.mov", "-show_format")["format"]["tags"]
    assert tags_out["creation_time"] == tags_in["creation_time"]
    assert tags_out["model"] == tags_in["model"]


def test_faces_are_found_in_the_clips_with_faces(shared_run):
    _, out, _ = shared_run
    for name in ("hamilton_audio.mp4", "portrait_talk.mp4", "carphone_qcif.mp4"):
        report = json.loads((out / (name + ".report.json")).read_text())
        assert report["frames_with_faces"] >= 0.8 * report["frames_in"], name


def test_a_second_run_skips_and_force_redoes(shared_run, tmp_path):
    inp, out, _ = shared_run
    from tests.conftest import run_cli

    again = run_cli("workflows", "run", str(inp), str(out), "--workers", "2")
    assert again.returncode == 0, again.stderr
    totals = json.loads((out / "summary.json").read_text())["totals"]
    assert totals["skipped"] == len(CLIPS) and totals["done"] == 0
