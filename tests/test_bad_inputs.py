"""Bad inputs get a clear error in their report and in the summary, no output, and do not stop the others."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from workflows.synthetic import make_sample_clip

#: Root reads even mode-000 files; without these two capabilities it cannot (and keeps the rest).
WITHOUT_ROOT_READ = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


@pytest.fixture(scope="module")
def bad_run():
    """A folder of good and bad inputs, run so that a mode-000 file really is unreadable."""
    base = Path(tempfile.mkdtemp(prefix="anon-bad-"))
    try:
        inp, out = base / "in", base / "out"
        (inp / "deep").mkdir(parents=True)
        good = inp / "good.mp4"
        make_sample_clip(good, seconds=1.5)
        make_sample_clip(inp / "deep" / "silent.mp4", seconds=1, audio=False)
        (inp / "empty.mp4").write_bytes(b"")
        (inp / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
        data = good.read_bytes()
        (inp / "deep" / "cut_end.mp4").write_bytes(data[: len(data) // 2])  # moov atom at the end: lost
        faststart = base / "faststart.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(good), "-c", "copy", "-movflags", "+faststart",
                        str(faststart)], check=True)
        whole = faststart.read_bytes()
        (inp / "cut_middle.mp4").write_bytes(whole[: len(whole) * 6 // 10])  # index intact, frames missing
        locked = inp / "locked.mp4"
        shutil.copyfile(good, locked)
        locked.chmod(0)
        (inp / "readme.txt").write_text("not a video")
        prefix = WITHOUT_ROOT_READ if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, sys.executable, "-m", "workflows", "run", str(inp), str(out),
                                 "--workers", "2"], cwd=ROOT, capture_output=True, text=True)
        assert (out / "summary.json").is_file(), result.stderr
        summary = json.loads((out / "summary.json").read_text())
        yield inp, out, result, {row["path"]: row for row in summary["rows"]}, summary
    finally:
        shutil.rmtree(base, ignore_errors=True)


EXPECTED_ERRORS = {
    "empty.mp4": "is empty (0 bytes)",
    "notes.mp4": "is not a video ffmpeg can read",
    "deep/cut_end.mp4": "moov atom not found",
    "cut_middle.mp4": "truncated or damaged",
    "locked.mp4": "cannot be read (permission denied)",
}


def test_every_file_is_accounted_for(bad_run):
    _, _, result, rows, summary = bad_run
    totals = summary["totals"]
    assert totals["discovered"] == 7 == totals["done"] + totals["skipped"] + totals["failed"]
    assert totals["done"] == 2 and totals["failed"] == 5
    assert [i["path"] for i in summary["ignored"]] == ["readme.txt"]
    assert result.returncode == 1, "the run must exit non-zero when a video failed"


@pytest.mark.parametrize("name", list(EXPECTED_ERRORS))
def test_bad_input_fails_with_a_clear_error_and_no_output(bad_run, name):
    inp, out, _, rows, _ = bad_run
    row = rows[name]
    assert row["status"] == "failed"
    assert EXPECTED_ERRORS[name] in row["error"]
    assert row["error"].count("\n") == 0 and row["error"].endswith(".")
    assert row["error_kind"] == "permanent"
    assert not (out / name).exists(), "a failed video left an output file"
    report = json.loads((out / (name + ".report.json")).read_text())
    assert report["status"] == "failed" and report["exit_code"] == 3
    assert row["error"] in (out / "summary.md").read_text()


def test_good_videos_are_done_despite_the_bad_ones(bad_run):
    inp, out, _, rows, _ = bad_run
    assert rows["good.mp4"]["status"] == "done"
    assert rows["deep/silent.mp4"]["status"] == "done", rows["deep/silent.mp4"]["error"]
    assert (out / "good.mp4").is_file() and (out / "deep" / "silent.mp4").is_file()
    assert not list(out.rglob(".partial-*"))


def test_inputs_are_untouched(bad_run):
    inp, _, _, _, _ = bad_run
    names = sorted(p.relative_to(inp).as_posix() for p in inp.rglob("*") if p.is_file())
    assert names == sorted(["good.mp4", "deep/silent.mp4", "empty.mp4", "notes.mp4", "deep/cut_end.mp4",
                            "cut_middle.mp4", "locked.mp4", "readme.txt"])
