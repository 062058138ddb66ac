"""The audit pass: an independent detector (MTCNN) finds the faces of an untouched video, none after anonymizing."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("facenet_pytorch")

from steps.anonymize import anonymize_file  # noqa: E402
from steps.audit import audit  # noqa: E402
from steps.settings import Settings  # noqa: E402
from tests.conftest import MEDIA, needs_media, run_cli  # noqa: E402
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
@pytest.mark.parametrize("name,every", [("carphone_qcif.mp4", 2), ("hamilton_audio.mp4", 5)])
def test_on_real_clips_the_audit_finds_no_face_it_also_finds_in_the_input(tmp_path, name, every):
    source = tmp_path / name
    shutil.copyfile(MEDIA / name, source)
    report = anonymize_file(source, tmp_path / ("anon-" + name), tmp_path / "report.json",
                            Settings(audit=True, audit_every=every))
    assert report.status == "done", report.error
    assert report.audit is not None and report.audit.error is None
    assert report.audit.input_faces > 0
    assert report.audit.leaks == 0, report.audit.listed


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
