"""Crashes and full disks lose nothing: never a partial output at its final path, and a re-run completes.

The anonymize step is SIGKILLed with its ffmpeg children (the whole process group, as a pod
kill does) at points spread over a whole run; a full output volume is a small tmpfs.
"""

from __future__ import annotations

import inspect
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from steps.fsutil import PARTIAL_PREFIX
from steps.settings import Settings
from tests import helpers as h
from tests.conftest import ROOT
from workflows.synthetic import make_sample_clip

KILLS = 10
SEED = 20261126


def anonymize_command(clip: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "steps.anonymize", "--input", str(clip), "--output", str(output)]


def run_to_the_end(clip: Path, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run(anonymize_command(clip, output), cwd=ROOT, capture_output=True, text=True, timeout=300)


#: The output ("") and the files written beside it.
OWN_SUFFIXES = ("", ".report.json", ".thumbs.jpg", ".detections.csv.gz")


def leftovers(folder: Path, output: Path) -> set[str]:
    """Files in *folder* other than the output and the files beside it (report, thumbnails, detections)."""
    own = {output.name + suffix for suffix in OWN_SUFFIXES}
    return {p.name for p in folder.iterdir()} - own


def assert_complete(clip: Path, output: Path, frames: int) -> None:
    assert h.decoded_frames(output) == frames
    assert h.audio_packet_hashes(output) == h.audio_packet_hashes(clip)


def test_sigkill_at_random_points_never_leaves_a_partial_output(tmp_path):
    clip = tmp_path / "clip.mp4"
    make_sample_clip(clip, seconds=1, width=320, height=180)
    frames = h.decoded_frames(clip)
    out_dir = tmp_path / "out"
    output = out_dir / "clip.mp4"
    started = time.monotonic()
    first = run_to_the_end(clip, output)
    full_run = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    rng = random.Random(SEED)
    seen: Counter[str] = Counter()
    for i in range(KILLS):
        for suffix in OWN_SUFFIXES:
            (out_dir / (output.name + suffix)).unlink(missing_ok=True)
        proc = subprocess.Popen(anonymize_command(clip, output), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        if i % 2 == 0:  # anywhere: one kill in each fifth of a run (start-up, model loading, frames, rename...)
            time.sleep(full_run * (i // 2 + rng.random()) / (KILLS // 2))
        else:  # while the encoder writes: once the temporary output exists, at a random point of the rest
            while proc.poll() is None and not any(p.name.startswith(PARTIAL_PREFIX) and p.suffix == ".mp4"
                                                  for p in out_dir.iterdir()):
                time.sleep(0.01)
            time.sleep(rng.random() * full_run / 3)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the step and its ffmpeg processes, like a pod's kill
        proc.wait()
        report_file = out_dir / "clip.mp4.report.json"
        state = json.loads(report_file.read_text())["status"] if report_file.exists() else "no report"
        partials = leftovers(out_dir, output) if out_dir.exists() else set()
        seen[f"report {state}, output {'complete' if output.exists() else 'absent'}"
             f"{', partial files left' if partials else ''}"] += 1
        assert all(name.startswith(PARTIAL_PREFIX) for name in partials), partials
        if output.exists():  # killed after the rename: then it is whole
            assert_complete(clip, output, frames)
        again = run_to_the_end(clip, output)
        assert again.returncode == 0, again.stderr
        assert_complete(clip, output, frames)
        assert json.loads(report_file.read_text())["status"] in ("done", "skipped")
        assert leftovers(out_dir, output) == set(), "the re-run did not clean up the killed run's temporary files"
    print(f"\n{KILLS} kills over a {full_run:.1f} s run (seed {SEED}):", dict(seen))
    assert sum(seen.values()) == KILLS


@pytest.fixture
def small_volume():
    """A 64 kB tmpfs: room for reports, not for the video."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder = Path(tempfile.mkdtemp(prefix="anon-full-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()


def test_a_full_disk_gives_a_clear_transient_error_and_no_partial_file(tmp_path, small_volume):
    clip = tmp_path / "clip.mp4"
    make_sample_clip(clip, seconds=2, width=640, height=360)
    output = small_volume / "clip.mp4"
    result = run_to_the_end(clip, output)
    assert result.returncode == 75, result.stderr  # transient: space may be freed, Argo retries later
    report = json.loads((small_volume / "clip.mp4.report.json").read_text())
    assert report["status"] == "failed" and report["error_kind"] == "transient"
    assert "no space left on the output volume" in report["error"]
    assert report["error"].count("\n") == 0 and "Traceback" not in result.stderr
    assert sorted(p.name for p in small_volume.iterdir()) == ["clip.mp4.report.json"]  # no output, no partial


def test_sigterm_while_encoding_is_a_clean_transient_failure(tmp_path):
    """A pod being stopped (SIGTERM, before the SIGKILL of its grace period): report, exit 75, nothing partial."""
    clip = tmp_path / "clip.mp4"
    make_sample_clip(clip, seconds=2, width=320, height=180)
    out_dir = tmp_path / "out"
    output = out_dir / "clip.mp4"
    proc = subprocess.Popen(anonymize_command(clip, output), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    while proc.poll() is None and not (out_dir.exists() and any(p.name.startswith(PARTIAL_PREFIX)
                                                                and p.suffix == ".mp4" for p in out_dir.iterdir())):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 75, stderr  # not an abort: the detector thread is let finish before exiting
    report = json.loads((out_dir / "clip.mp4.report.json").read_text())
    assert report["status"] == "failed" and report["error_kind"] == "transient"
    assert leftovers(out_dir, output) == set() and not output.exists()


def test_a_worker_that_hangs_is_stopped_at_its_deadline_and_retried(tmp_path, monkeypatch):
    """A worker still running at --video-deadline is sent SIGTERM, killed when it ignores it, retried, and its
    video counted as failed: the local run ends, as an Argo pod past its deadline does."""
    import io

    from rich.console import Console

    import workflows.local as local
    from steps.settings import Settings

    hangs = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                   "open('started', 'a').write('x'); time.sleep(120)"]
    monkeypatch.setattr(local, "anonymize_command", lambda *args, **kwargs: hangs)
    monkeypatch.setattr(local, "STOP_GRACE_SECONDS", 1)
    monkeypatch.chdir(tmp_path)  # the worker's working folder (the caller's): its 'started' file
    inp = tmp_path / "in"
    inp.mkdir()
    make_sample_clip(inp / "a.mp4", seconds=0.2, audio=False)
    shown = io.StringIO()
    runner = local.LocalRunner(inp, tmp_path / "out", Settings(), workers=1, retries=1, video_deadline=1,
                               console=Console(file=shown, width=200))
    started = time.monotonic()

    summary = runner.run()

    assert time.monotonic() - started < 30  # two tries of about 1 s each, and 1 s of grace each
    assert (tmp_path / "started").read_text() == "xx"  # tried twice
    text = shown.getvalue()
    assert text.count("stopped") == 2 and "--video-deadline" in text and "retry" in text
    assert summary.totals["failed"] == 1 and summary.totals["done"] == 0


def _fails_on_call(function, count: int, stage: str):
    """*function*, raising on its *count*-th call (a generator function: on its *count*-th item)."""
    calls = 0

    def failing(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls >= count:
            raise RuntimeError(f"stage failed: {stage}")
        return function(*args, **kwargs)

    def failing_generator(*args, **kwargs):
        for n, item in enumerate(function(*args, **kwargs), 1):
            if n >= count:
                raise RuntimeError(f"stage failed: {stage}")
            yield item

    return failing_generator if inspect.isgeneratorfunction(function) else failing


#: Where each pipeline stage's own code runs (steps.engine): the reader, detector, hiding and encoder threads, and
#: the caller (tracking).
STAGE_CODE = {"decode": ("Decoder", "frames"), "detect": ("Frame", "picture"), "track": ("Tracker", "push"),
              "hide": (None, "hide"), "encode": ("Encoder", "write")}


@pytest.mark.parametrize("stage", list(STAGE_CODE))
def test_a_failure_in_any_stage_of_the_pipeline_fails_the_video_cleanly(stage, tmp_path, monkeypatch):
    """The stages run in their own threads; an error in any of them stops the others (no thread left waiting
    on a queue), is the video's error, and leaves no output, partial or final."""
    from steps import anonymize as anonymize_step
    from steps import engine

    clip = tmp_path / "in.mp4"
    make_sample_clip(clip, seconds=1.2, width=160, height=90)  # 30 frames, two faces in each
    owner_name, name = STAGE_CODE[stage]
    owner = getattr(engine, owner_name) if owner_name else engine
    monkeypatch.setattr(owner, name, _fails_on_call(getattr(owner, name), 10, stage))
    out = tmp_path / "out" / "anon.mp4"
    result = {}
    worker = threading.Thread(target=lambda: result.update(report=anonymize_step.anonymize_file(
        clip, out, tmp_path / "report.json", Settings())), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), f"the pipeline hung after the {stage} stage failed"
    report = result["report"]
    assert report.status == "failed" and f"stage failed: {stage}" in report.error
    assert not out.exists() and not leftovers(out.parent, out)
    assert not [t for t in threading.enumerate() if t.name in engine.STAGES and t.is_alive()]


def test_the_first_failure_is_the_videos_error_not_what_followed_from_it(tmp_path, monkeypatch):
    """When one stage fails, the others stop or fail in turn (a process killed, a queue closed): the report names
    the first failure, even when a later one is of the kind that usually carries the clearer message."""
    from steps import anonymize as anonymize_step
    from steps import engine
    from steps.errors import TransientError

    clip = tmp_path / "in.mp4"
    make_sample_clip(clip, seconds=1.2, width=160, height=90)  # 30 frames, two faces in each
    hide, write = engine.hide, engine.Encoder.write
    hiding_failed = threading.Event()
    calls = Counter()

    def failing_hide(*args, **kwargs):
        calls["hide"] += 1
        if calls["hide"] == 10:
            hiding_failed.set()
            raise RuntimeError("hiding failed first")
        return hide(*args, **kwargs)

    def slow_write(self, frame):  # slower than hiding, so that hidden frames wait for it when hiding fails
        if hiding_failed.is_set():
            raise TransientError("the encoder failed second")
        time.sleep(0.05)
        return write(self, frame)

    monkeypatch.setattr(engine, "hide", failing_hide)
    monkeypatch.setattr(engine.Encoder, "write", slow_write)
    report = anonymize_step.anonymize_file(clip, tmp_path / "out.mp4", tmp_path / "report.json", Settings())
    assert report.status == "failed" and "hiding failed first" in report.error, report.error
    assert not (tmp_path / "out.mp4").exists()
