"""The corpus (tests/corpus.py) through ``workflows run``: bad inputs, odd formats, hostile names, links.

One run over all of it, as a user would start it, without root's power to read any file (so a
mode-000 file really is unreadable and a mode-555 folder really is not writable). Every case
gets the outcome the corpus says: a correct output, or a clear one-sentence error with the
right exit-code class and no output, or a place among the files passed over; the other videos
are unaffected, the summary accounts for every file, the inputs are untouched, and no name
ran anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from steps.ffio import even
from steps.summarize import NO_REPORT
from tests import corpus
from tests import helpers as h
from tests.conftest import ROOT

#: Root reads even mode-000 files; without these two capabilities it cannot (and keeps the rest).
WITHOUT_ROOT_READ = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
#: A video whose output folder exists and is not writable: not even its report can be written.
UNWRITABLE = "read_only_output/clip.mp4"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under *root* (links not followed): type, mode, size, mtime and content hash."""
    found = {}
    for folder, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(folder) / name
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
            found[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return found


@pytest.fixture(scope="module")
def corpus_run():
    base = Path(tempfile.mkdtemp(prefix="anon-corpus-"))
    try:
        inp, out, cwd = base / "in", base / "out", base / "cwd"
        outside = base / "secret.mp4"
        corpus.clip(outside)
        cases = [*corpus.bad_inputs(), *corpus.odd_formats(), *corpus.hostile_names(), *corpus.passed_over(outside),
                 corpus.Case(UNWRITABLE, corpus.clip, "failed", NO_REPORT,
                             extra={"log": "the output folder is not writable (Permission denied), so there is no "
                                           "report"})]
        corpus.build(inp, cases)
        (out / "read_only_output").mkdir(parents=True)
        (out / "read_only_output").chmod(0o555)
        (cwd / "canary").mkdir(parents=True)
        before = snapshot(inp)
        prefix = WITHOUT_ROOT_READ if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, sys.executable, "-m", "workflows", "run", str(inp), str(out),
                                 "--workers", "2"], cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                capture_output=True, text=True, timeout=600)
        assert (out / "summary.json").is_file(), result.stderr
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        yield {"base": base, "in": inp, "out": out, "cwd": cwd, "cases": {c.path: c for c in cases},
               "result": result, "summary": summary, "rows": {r["path"]: r for r in summary["rows"]},
               "before": before}
    finally:
        corpus.remove(base)


def cases_of(outcome: str, group=None, reported: bool = True) -> list[str]:
    """The corpus's paths with *outcome*; for failures, those with a report (or, not *reported*, without)."""
    cases = group() if group else [*corpus.bad_inputs(), *corpus.odd_formats(), *corpus.hostile_names()]
    return [c.path for c in cases if c.outcome == outcome and (c.says != NO_REPORT) == reported]


def report_of(run, path: str) -> dict:
    return json.loads((run["out"] / (path + ".report.json")).read_text(encoding="utf-8"))


def test_the_summary_accounts_for_every_file(corpus_run):
    totals, cases = corpus_run["summary"]["totals"], corpus_run["cases"]
    listed = sorted(p for p, c in cases.items() if c.outcome != "ignored")
    manifest = json.loads((corpus_run["out"] / "manifest.json").read_text(encoding="utf-8"))
    assert [i["path"] for i in manifest["items"]] == listed  # names exactly, non-UTF-8 bytes included
    assert sorted(corpus_run["rows"]) == listed
    assert totals["discovered"] == len(listed) == totals["done"] + totals["skipped"] + totals["failed"]
    assert totals["done"] == sum(c.outcome == "done" for c in cases.values())
    assert totals["failed"] == sum(c.outcome == "failed" for c in cases.values())
    ignored = {i["path"]: i["reason"] for i in corpus_run["summary"]["ignored"]}
    assert sorted(ignored) == sorted(p for p, c in cases.items() if c.outcome == "ignored")
    for path, reason in ignored.items():
        assert cases[path].says in reason, (path, reason)
    assert corpus_run["result"].returncode == 1, "the run must exit non-zero when a video failed"
    assert not list(corpus_run["out"].rglob(".partial-*")), "temporary files were left behind"


@pytest.mark.parametrize("path", cases_of("failed"))
def test_a_bad_input_fails_with_one_clear_sentence_and_no_output(corpus_run, path):
    row, case = corpus_run["rows"][path], corpus_run["cases"][path]
    assert row["status"] == "failed" and case.says in row["error"], row["error"]
    assert row["error"].count("\n") == 0 and row["error"].endswith(".")
    assert row["error_kind"] == "permanent"  # never retried: it cannot succeed
    report = report_of(corpus_run, path)
    assert report["status"] == "failed" and report["exit_code"] == 3
    assert not (corpus_run["out"] / path).exists(), "a failed video left an output file"
    assert row["error"] in (corpus_run["out"] / "summary.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", [UNWRITABLE, *cases_of("failed", reported=False)])
def test_a_video_whose_report_cannot_be_written_fails_alone_and_says_why(corpus_run, path):
    """An output folder that is not writable, a name too long to add '.report.json': only the log can tell."""
    row, case = corpus_run["rows"][path], corpus_run["cases"][path]
    assert row["status"] == "failed" and row["error"] == NO_REPORT
    assert not (corpus_run["out"] / path).exists()
    assert not [p for p in (corpus_run["out"] / path).parent.iterdir() if p.name.startswith(Path(path).name[:20])]
    # the worker said why in one sentence and exited 3 (permanent: a person must act), the runner showed it
    said = " ".join(corpus_run["result"].stderr.split())
    assert f"{path}: the worker exited with code 3 without a report" in said
    assert case.extra["log"] in said


_FACTS: dict[str, tuple[int, list]] = {}


def source_facts(path: Path) -> tuple[int, list]:
    """Frames and audio packet hashes of an input, once per content (the hostile names are copies of one clip)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest not in _FACTS:
        _FACTS[digest] = h.decoded_frames(path), h.audio_packet_hashes(path)
    return _FACTS[digest]


def check_done(run, path: str, thorough: bool) -> dict:
    case, row = run["cases"][path], run["rows"][path]
    assert row["status"] == "done", row["error"]
    src, dst = run["in"] / path, run["out"] / (case.output or path)
    report = report_of(run, path)
    assert report["output"] == str(dst) and dst.is_file()
    frames, audio = source_facts(src)
    assert report["frames_in"] == report["frames_out"] == h.decoded_frames(dst) == frames
    assert h.audio_packet_hashes(dst) == audio, "an audio stream differs or is missing"
    if thorough:
        times_in, times_out = h.frame_times(src), h.frame_times(dst)
        shifted = [t - times_out[0] + times_in[0] for t in times_out]
        assert max(abs(a - b) for a, b in zip(times_in, shifted)) < 0.0015
        if dst.suffix == src.suffix:
            assert max(abs(a - b) for a, b in zip(times_in, times_out)) < 0.0015
        kinds = [s["codec_type"] for s in h.streams(dst)]
        assert kinds.count("video") == 1, "a second video stream (cover art?) reached the output"
        assert kinds.count("subtitle") == [s["codec_type"] for s in h.streams(src)].count("subtitle")
        shown = h.video_stream(src)
        size = case.size or (even(int(shown["width"])), even(int(shown["height"])))
        out_video = h.video_stream(dst)
        assert (int(out_video["width"]), int(out_video["height"])) == size
    for fragment in case.changes:
        assert any(fragment in change for change in report["changes"]), (fragment, report["changes"])
    if not case.changes:
        assert report["changes"] == []
    return report


@pytest.mark.parametrize("path", cases_of("done", corpus.odd_formats))
def test_an_odd_format_comes_out_whole(corpus_run, path):
    check_done(corpus_run, path, thorough=True)


def first_luma(path: Path, width: int, height: int) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", f"file:{path}", "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width)


def test_case_specific_facts(corpus_run):
    src, out = corpus_run["in"], corpus_run["out"]
    languages = [s.get("tags", {}).get("language") for s in h.streams(out / "three_audio.mp4")
                 if s["codec_type"] == "audio"]
    assert languages == ["eng", "fra", "deu"]
    times = h.frame_times(out / "vfr.mp4")
    assert len({round(b - a, 3) for a, b in zip(times, times[1:])}) > 1  # still variable
    frames = h.ffprobe(out / "interlaced.mpg.mkv", "-select_streams", "v",
                       "-show_entries", "frame=interlaced_frame,top_field_first")["frames"]
    assert frames and all(f["interlaced_frame"] == 1 and f["top_field_first"] == 1 for f in frames)
    # padding: the picture is all there, the added column and row are black
    luma, luma_in = first_luma(out / "odd_size.mp4", 162, 92), first_luma(src / "odd_size.mp4", 161, 91)
    assert h.psnr(luma[:91, :161], luma_in) > 35  # in luma: its 4:4:4 colour became 4:2:0
    assert luma[91:, :].max() < 8 and luma[:, 161:].max() < 8
    rotated = h.read_frames(out / "rotated.mp4")
    assert rotated.shape[1:3] == (160, 90), "the rotated clip is not shown upright like the input"


@pytest.mark.parametrize("path", corpus.HOSTILE_NAMES)
def test_a_hostile_name_is_anonymized_under_its_own_name(corpus_run, path):
    check_done(corpus_run, path, thorough=False)
    assert os.fsencode(corpus_run["out"] / path) == os.fsencode(corpus_run["out"]) + b"/" + os.fsencode(path)


def test_no_name_ran_anything(corpus_run):
    base, cwd = corpus_run["base"], corpus_run["cwd"]
    for folder in (base, cwd, ROOT, Path.home(), Path(tempfile.gettempdir())):
        assert not list(folder.glob("pwned*")), f"a name ran a command in {folder}"
    assert not list(base.rglob("pwned*")), "a name ran a command"
    assert (cwd / "canary").is_dir(), "';rm -rf canary;' ran"
    stderr = corpus_run["result"].stderr
    assert "line\\nbreak.mp4" in stderr and not any(line.startswith("break.mp4") for line in stderr.splitlines())


def test_the_inputs_are_untouched(corpus_run):
    assert snapshot(corpus_run["in"]) == corpus_run["before"]


def test_each_case_has_the_outcome_the_corpus_says(corpus_run):
    """Also prints the table of inputs and outcomes (pytest -s shows it)."""
    ignored = {i["path"]: i["reason"] for i in corpus_run["summary"]["ignored"]}
    lines, outcomes = [], {}
    for path in corpus_run["cases"]:
        row = corpus_run["rows"].get(path)
        if row is None:
            outcomes[path], text = "ignored", f"passed over: {ignored[path]}"
        elif row["status"] == "done":
            changes = report_of(corpus_run, path)["changes"]
            outcomes[path], text = "done", "done" + (f" ({'; '.join(changes)})" if changes else "")
        else:
            outcomes[path], text = "failed", f"failed, {row['error_kind']}: {row['error']}"
        lines.append(f"| `{path!r}` | {text} |")
    print("\n" + "\n".join(lines))
    assert outcomes == {path: case.outcome for path, case in corpus_run["cases"].items()}
