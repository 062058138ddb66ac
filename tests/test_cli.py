"""The command lines: help, exit codes, refusals that protect the input."""

from __future__ import annotations

import json

from steps.settings import Settings
from tests.conftest import run_cli
from workflows.synthetic import make_sample_clip


def test_help_documents_every_setting():
    for command in (["workflows", "run", "--help"], ["workflows", "anonymize", "--help"],
                    ["steps.anonymize", "--help"]):
        result = run_cli(*command, env={"COLUMNS": "200"})
        assert result.returncode == 0, result.stderr
        for name in Settings.model_fields:
            assert "--" + name.replace("_", "-") in result.stdout, (command, name)


def test_settings_come_from_the_environment_like_in_a_pod(tmp_path):
    clip = tmp_path / "in.mp4"
    make_sample_clip(clip, seconds=0.5, audio=False)
    result = run_cli("steps.anonymize", "--input", str(clip), "--output", str(tmp_path / "out.mp4"),
                     env={"ANON_MODE": "solid", "ANON_CRF": "30", "ANON_MASK_SCALE": "1.5"})
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out.mp4.report.json").read_text())
    assert report["settings"]["mode"] == "solid"
    assert report["settings"]["crf"] == 30 and report["settings"]["mask_scale"] == 1.5


def test_bad_setting_is_a_usage_error(tmp_path):
    result = run_cli("workflows", "anonymize", "a.mp4", "b.mp4", "--mask-scale", "9")
    assert result.returncode == 2
    assert "mask_scale" in result.stderr or "mask-scale" in result.stderr


def test_output_inside_the_input_tree_is_refused(tmp_path):
    inp = tmp_path / "videos"
    inp.mkdir()
    make_sample_clip(inp / "a.mp4", seconds=0.5, audio=False)
    result = run_cli("workflows", "run", str(inp), str(inp / "anonymized"))
    assert result.returncode == 2
    assert "must not contain each other" in result.stderr
    assert sorted(p.name for p in inp.iterdir()) == ["a.mp4"]


def test_one_file_command_and_permanent_exit_code(tmp_path):
    clip = tmp_path / "in.mp4"
    make_sample_clip(clip, seconds=0.5)
    ok = run_cli("workflows", "anonymize", str(clip), str(tmp_path / "out.mov"))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out.mov").is_file()
    (tmp_path / "bad.mp4").write_text("not a video")
    bad = run_cli("workflows", "anonymize", str(tmp_path / "bad.mp4"), str(tmp_path / "bad_out.mp4"))
    assert bad.returncode == 3
    assert not (tmp_path / "bad_out.mp4").exists()
