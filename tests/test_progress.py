"""Progress for people and for Argo: the ARGO_PROGRESS_FILE format, the pod's log lines, the local bars."""

from __future__ import annotations

import io
import json
import re

from steps.progress import PROGRESS_PATTERN, StepProgress, progress_text, read_progress_file
from tests.conftest import run_cli
from workflows.synthetic import make_sample_clip

#: Argo's executor parses the file as ``N/M`` (docs/progress.md, "Self reporting progress"), N <= M.
ARGO_FORMAT = re.compile(r"^(\d+)/(\d+)\n?$")


class _Log(io.StringIO):
    def isatty(self) -> bool:  # a pod's log is not a terminal
        return False


def _parsed(path):
    text = path.read_text()
    match = ARGO_FORMAT.match(text)
    assert match, repr(text)
    done, total = int(match.group(1)), int(match.group(2))
    assert 0 <= done <= total, text
    return done, total


def test_progress_file_is_argo_format_and_never_complete_early(tmp_path):
    for done, total, expected in ((0, 100, "0/100"), (40, 100, "40/100"), (100, 100, "100/101"),
                                  (120, 100, "120/121"), (7, None, "7/8"), (3, 0, "3/4")):
        assert progress_text(done, total) == expected, (done, total)
        assert PROGRESS_PATTERN.match(expected)
    file = tmp_path / "progress"
    log = _Log()
    progress = StepProgress("clip.mp4", file=file, log_every=0.0, min_interval=0.0, stream=log)
    seen = []
    for frame in range(1, 51):
        progress(frame, 50)
        seen.append(_parsed(file))
    assert seen[-1] == (50, 51)  # the pod is not done until the output is checked and renamed
    assert [d for d, _ in seen] == list(range(1, 51))
    progress.finish(50)
    assert file.read_text() == "50/50\n"  # the last value Argo reads: 100 %
    assert not list(tmp_path.glob("*.tmp"))  # written by rename: the executor never reads half a line
    lines = log.getvalue().splitlines()
    assert len(lines) == 51
    assert re.fullmatch(r"clip\.mp4: 10/50 frames \(20%\), [\d.]+ fps, ETA \S+", lines[9]), lines[9]
    assert lines[-1].startswith("clip.mp4: 50/50 frames (100%)")
    assert read_progress_file(file) == (50, 50)
    (tmp_path / "bad").write_text("half")
    assert read_progress_file(tmp_path / "bad") is None


def test_log_lines_come_every_few_seconds_not_every_frame(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("steps.progress.time.monotonic", lambda: clock[0])
    log = _Log()
    progress = StepProgress("v", file=tmp_path / "p", log_every=5.0, min_interval=1.0, stream=log)
    writes = []
    for frame in range(1, 101):  # 100 frames at 8 fps: 12.5 s
        clock[0] += 0.125
        progress(frame, 100)
        writes.append((tmp_path / "p").read_text())
    lines = log.getvalue().splitlines()
    assert len(lines) == 2, lines  # at 5 s and 10 s
    assert lines[0] == "v: 40/100 frames (40%), 8.0 fps, ETA 8s", lines[0]
    assert len(set(writes)) == 13  # the file changes once a second (frames 1, 9, 17... 97), not every frame


def test_the_step_writes_the_progress_file_and_records_its_attempt(tmp_path):
    clip = tmp_path / "in.mp4"
    make_sample_clip(clip, seconds=0.4, audio=False)
    progress_file = tmp_path / "argo-progress"
    result = run_cli("steps.anonymize", "--input", str(clip), "--output", str(tmp_path / "out.mp4"),
                     "--argo-outputs", str(tmp_path / "outputs"),
                     env={"ARGO_PROGRESS_FILE": str(progress_file), "ANON_PREVIOUS_ATTEMPTS": "2"})
    assert result.returncode == 0, result.stderr
    assert progress_file.read_text() == "10/10\n"
    assert re.search(r"in\.mp4: 10/10 frames \(100%\), [\d.]+ fps, ETA 0s", result.stderr), result.stderr
    report = json.loads((tmp_path / "out.mp4.report.json").read_text())
    assert report["attempt"] == 3  # Argo's {{retries}} was 2: the third try
    outputs = {p.name: p.read_text() for p in (tmp_path / "outputs").iterdir()}
    assert outputs == {"frames": "10", "video-seconds": "0.400", "result": "done"}


def test_local_run_draws_bars_on_a_terminal_and_stays_quiet_elsewhere(tmp_path):
    from rich.console import Console

    from steps.settings import Settings
    from workflows.local import LocalRunner

    inp = tmp_path / "in"
    inp.mkdir()
    make_sample_clip(inp / "clip.mp4", seconds=0.4, audio=False)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160, color_system=None)
    LocalRunner(inp, tmp_path / "out", Settings(), workers=1, console=console).run()
    drawn = screen.getvalue()
    assert re.search(r"all videos .*100% 1/1 videos, 10 frames, [\d.]+ fps", drawn), drawn[-600:]
    assert re.search(r"clip\.mp4 .*\d+/10 frames, [\d.]+ fps", drawn)  # the video's own bar while it ran
    assert "━" in drawn

    log = io.StringIO()
    LocalRunner(inp, tmp_path / "out", Settings(), workers=1, force=True,
                console=Console(file=log, force_terminal=False, width=160)).run()
    assert "━" not in log.getvalue() and "all videos" not in log.getvalue()
    assert re.search(r"done clip\.mp4: 10 frames, [\d.]+ fps, 20 faces hidden", log.getvalue()), log.getvalue()
