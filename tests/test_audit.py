"""The audit pass: an independent detector (MTCNN) finds the faces of an untouched video, none after anonymizing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("facenet_pytorch")

import steps.anonymize as anonymize_step  # noqa: E402
from steps import engine  # noqa: E402
from steps.anonymize import anonymize_file  # noqa: E402
from steps.audit import audit  # noqa: E402
from steps.detections import SUFFIX as DETECTIONS_SUFFIX  # noqa: E402
from steps.detections import read_detections  # noqa: E402
from steps.detectors.base import NO_BOXES, Detector  # noqa: E402
from steps.settings import Settings  # noqa: E402
from steps.summarize import row_for  # noqa: E402
from tests.conftest import MEDIA, needs_media, run_cli  # noqa: E402
from tests.helpers import read_frames  # noqa: E402
from workflows.synthetic import make_sample_clip  # noqa: E402


def test_an_untouched_video_is_all_leaks(tmp_path):
    clip = tmp_path / "in.mp4"
    make_sample_clip(clip, seconds=1, audio=False)
    result = audit(clip, clip, every=5)
    assert result.frames_checked == 5 and result.error is None
    assert result.input_faces >= 5 and result.leaks == result.suspects == result.output_faces == result.input_faces
    assert result.suspect_frames == 5
    first = result.listed[0]
    assert first.in_input and first.time == pytest.approx(first.frame / 25) and len(first.box) == 4
    assert "0.00s" in result.where_to_look()


def test_run_with_audit_reports_no_leak_and_the_summary_counts(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    make_sample_clip(inp / "faces.mp4", seconds=1, audio=False)
    result = run_cli("workflows", "run", str(inp), str(out), "--audit", "--audit-every", "3", "--workers", "1")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "faces.mp4.report.json").read_text())
    assert report["audit"]["frames_checked"] == 9 and report["audit"]["input_faces"] >= 9
    assert report["audit"]["leaks"] == 0, report["audit"]["listed"]
    assert report["audit_findings"] == report["audit"]["suspect_frames"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["audit_findings"] == report["audit_findings"]
    assert summary["totals"]["audit_leaks"] == 0


@needs_media
@pytest.mark.parametrize("name,every,cut", [("carphone_qcif.mp4", 2, None), ("hamilton_audio.mp4", 5, None),
                                            # MTCNN takes backs of heads at frame 405 (16.9 s) for a face
                                            ("crowd_walk.mp4", 1, 16.5)])
def test_on_real_clips_the_audit_finds_no_face_it_also_finds_in_the_input(tmp_path, name, every, cut):
    source = tmp_path / name
    if cut is None:
        shutil.copyfile(MEDIA / name, source)
    else:  # one second, nearly lossless: the audit of the whole clip would take minutes
        subprocess.run(["ffmpeg", "-v", "error", "-ss", str(cut), "-i", str(MEDIA / name), "-t", "1", "-an",
                        "-c:v", "libx264", "-crf", "4", "-preset", "veryfast", str(source)], check=True)
    report = anonymize_file(source, tmp_path / ("anon-" + name), tmp_path / "report.json",
                            Settings(audit=True, audit_every=every))
    assert report.status == "done", report.error
    assert report.audit is not None and report.audit.error is None
    assert report.audit.input_faces > 0
    assert report.audit.leaks_left == 0, report.audit.listed
    if cut is None:
        assert report.audit.leaks == 0 and report.audit.second_pass is None
    elif report.audit.leaks:  # hidden by the second pass, which checked those frames again
        assert report.audit.second_pass.leaks_left == 0 and report.audit.second_pass.boxes >= report.audit.leaks


def test_a_hidden_face_mtcnn_still_sees_is_not_a_leak(tmp_path, monkeypatch):
    """MTCNN sometimes takes a blurred face for a face. Made to do so on every frame (the output's call
    answers with the input's boxes), the audit counts suspects but no leak, because the boxes' detail is
    gone (steps.likeness); on an untouched copy the same boxes are all leaks."""
    import steps.audit as audit_module

    class SeesTheInputsFacesEverywhere(audit_module._Mtcnn):
        calls = 0

        def faces(self, images):
            type(self).calls += 1
            if self.calls % 2:  # flush() asks for the input's faces first, then the output's
                self.last = super().faces(images)
            return self.last

    monkeypatch.setattr(audit_module, "_Mtcnn", SeesTheInputsFacesEverywhere)
    clip, hidden = tmp_path / "in.mp4", tmp_path / "hidden.mp4"
    make_sample_clip(clip, seconds=1, audio=False)
    assert anonymize_file(clip, hidden, tmp_path / "report.json", Settings()).status == "done"
    result = audit(clip, hidden, every=5)
    assert result.suspects == result.input_faces >= 5 and result.leaks == 0
    assert all(s.in_input and not s.leak and s.changed >= 0.8 for s in result.listed)
    untouched = audit(clip, clip, every=5)
    assert untouched.leaks == untouched.suspects >= 5
    assert all(s.leak and s.changed < 0.2 for s in untouched.listed)


class _Blind(Detector):
    """Finds nothing: every face of the first pass is left visible, for the audit to find."""

    name = "blind"

    def infer(self, images):
        return [NO_BOXES for _ in images]


def _changed(a, b, box) -> float:
    x1, y1, x2, y2 = (int(v) for v in box)
    return float(np.abs(a[y1:y2, x1:x2].astype(int) - b[y1:y2, x1:x2].astype(int)).mean())


@pytest.mark.parametrize("hide", [True, False])
def test_leaks_a_detector_missed_are_hidden_by_a_second_pass(tmp_path, monkeypatch, hide):
    monkeypatch.setattr(anonymize_step, "_detector", lambda settings, threads: _Blind())
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_sample_clip(clip, seconds=1, audio=False)
    settings = Settings(audit=True, audit_every=5, audit_hide=hide, pre_roll=0, post_roll=0)
    report = anonymize_step.anonymize_file(clip, out, tmp_path / "report.json", settings)
    assert report.status == "done", report.error
    first = report.audit
    assert first.leaks >= 5 and all(s.frame % 5 == 0 for s in first.listed if s.leak)
    if not hide:
        assert first.second_pass is None and first.leaks_left == first.leaks and report.boxes_hidden == 0
        return
    second = first.second_pass
    assert second.error is None and second.boxes == first.leaks and second.frames == 5
    assert second.leaks_left == first.leaks_left == 0
    assert report.boxes_hidden == second.boxes  # the blind detector hid nothing: all are the audit's
    rows = read_detections(Path(report.detections))
    assert {r["source"] for r in rows} == {"audit"} and {int(r["frame"]) for r in rows} == {0, 5, 10, 15, 20}
    before, after = read_frames(clip), read_frames(out)
    leak = next(s for s in first.listed if s.leak and s.frame == 5)
    assert _changed(before[5], after[5], leak.box) > 10 * _changed(before[6], after[6], leak.box)
    assert row_for("in.mp4", report).audit_leaks == 0  # the summary counts the leaks left


def test_a_failed_second_pass_keeps_the_first_video(tmp_path, monkeypatch):
    monkeypatch.setattr(anonymize_step, "_detector", lambda settings, threads: _Blind())
    real_run = engine.run

    def run_failing_with_extra(*args, extra=None, **kwargs):
        if extra is not None:
            raise OSError(28, "No space left on device")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(engine, "run", run_failing_with_extra)
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_sample_clip(clip, seconds=0.4, audio=False)
    report = anonymize_step.anonymize_file(clip, out, tmp_path / "out.mp4.report.json", Settings(audit=True))
    assert report.status == "done" and out.is_file() and report.audit.leaks >= 10
    assert "No space left on device" in report.audit.second_pass.error
    assert report.audit.leaks_left == report.audit.leaks  # what the video as written still shows
    # Nothing half-written is left: the second pass's video and detections files are gone.
    assert {p.name for p in tmp_path.iterdir()} == {"in.mp4", "out.mp4", "out.mp4.report.json",
                                                    "out.mp4" + DETECTIONS_SUFFIX}


def test_a_video_in_segments_is_audited_per_segment_and_the_join_adds_them_up(tmp_path, monkeypatch):
    """Each segment's worker audits its segment against the same span of the input (and its second pass
    hides the leaks there); the joined video's report adds the segments' audits up, its suspects' frames
    numbered from the video's start."""
    from steps.join import join_item
    from steps.manifest import Manifest

    monkeypatch.setattr(anonymize_step, "_detector", lambda settings, threads: _Blind())
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    make_sample_clip(inp / "faces.mp4", seconds=2, audio=False)
    listed = run_cli("steps.discover", str(inp), str(out), "--segment-seconds", "1", "--print-work", check=True)
    assert json.loads(listed.stdout) == ["0:0", "0:1"]
    manifest = Manifest.load(out / "manifest.json")
    settings = Settings(audit=True, audit_every=5, pre_roll=0, post_roll=0)
    for segment in (0, 1):
        part = anonymize_step.anonymize_item(manifest, 0, inp, out, settings, segment=segment)
        assert part.status == "done" and part.audit.frames_checked == 5 and part.audit.leaks >= 5
        assert part.audit.second_pass.leaks_left == 0
        assert {s.frame for s in part.audit.listed if s.leak} == {0, 5, 10, 15, 20}  # the segment's own frames

    report = join_item(manifest, 0, inp, out, settings)

    assert report.status == "done" and report.segments == 2 and report.frames_out == 50, report.error
    video = report.audit
    assert video.error is None and video.frames_checked == 10 and video.leaks >= 10
    leaks = [s for s in video.listed if s.leak]
    assert len(leaks) == video.leaks and {s.frame for s in leaks} == set(range(0, 50, 5))
    assert all(s.time == pytest.approx(s.frame / 25) for s in leaks)
    assert video.second_pass.boxes == video.leaks and video.second_pass.leaks_left == 0 == video.leaks_left
    assert report.audit_findings == video.suspect_frames and row_for("faces.mp4", report).audit_leaks == 0
    rows = read_detections(Path(report.detections))
    assert {r["source"] for r in rows} == {"audit"} and {int(r["frame"]) for r in rows} == set(range(0, 50, 5))
    before, after = read_frames(inp / "faces.mp4"), read_frames(out / "faces.mp4")
    leak = next(s for s in leaks if s.frame == 30)  # in the second segment
    assert _changed(before[30], after[30], leak.box) > 10 * _changed(before[31], after[31], leak.box)


def test_a_segment_whose_audit_failed_or_is_missing_is_named_in_the_videos_audit():
    from steps.audit import AuditResult, SecondPass, Suspect, joined

    leak = Suspect(frame=2, time=0.08, box=[0, 0, 9, 9], probability=0.99, in_input=True, changed=0.0, leak=True)
    first = AuditResult(frames_checked=3, input_faces=2, output_faces=1, suspects=1, suspect_frames=1, leaks=1,
                        listed=[leak], seconds=1.5, second_pass=SecondPass(boxes=11, frames=11, leaks_left=0))
    video = joined([(first, 0), (AuditResult(error="the audit could not run: boom"), 10), (None, 20)])
    assert video.frames_checked == 3 and video.leaks == 1 and video.listed[0].frame == 2
    assert video.error == "segment 2: the audit could not run: boom; segment 3 was not audited"
    assert video.second_pass.leaks_left == 0 and video.second_pass.boxes == 11
    assert joined([(None, 0), (None, 5)]) is None
