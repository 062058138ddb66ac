"""The run on one machine: the same three steps the Argo workflow runs, without a cluster.

Discover and summarize run in this process; each video is anonymized by a worker process
running ``python -m steps.anonymize --manifest ... --index N``, the very command of an Argo
pod, with the settings in its environment as in a pod. A crashed worker loses one attempt
of one video, never the run; transient failures are retried with Argo's rule, and the report
records which attempt it was.

On a terminal, rich draws a bar per running video (frames, fps, ETA, read from the progress
file each worker writes as an Argo pod would) and one for the whole run, weighted by the
videos' sizes (bytes are what is known of a video before it is decoded). Elsewhere (a log,
CI) there are no bars: one line per finished video.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

import steps
from steps import accel
from steps.discover import Work, plan_work, run_discover
from steps.errors import VIDEO_DEADLINE_SECONDS, should_retry
from steps.fsutil import printable
from steps.manifest import Manifest, manifest_path
from steps.progress import PROGRESS_FILE_ENV, read_progress_file
from steps.report import VideoReport, report_path_for
from steps.segments import DEFAULT_SEGMENT_SECONDS, parse_work_item, segment_folder, segment_report
from steps.settings import Settings
from steps.summarize import Summary, run_summarize

PROJECT_ROOT = Path(steps.__file__).resolve().parent.parent
#: Seconds a worker stopped at its deadline has to clean up (on SIGTERM it removes its temporary files and
#: writes its report, as in a pod being stopped) before it is killed.
STOP_GRACE_SECONDS = 10


def _shown(name: str) -> str:
    """A name or a message as the console shows it: no control character, no rich markup."""
    return escape(printable(name))


def default_workers() -> int:
    """Half the cores: each worker's encoder and detector use several threads."""
    return max(1, (os.cpu_count() or 2) // 2)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (indexes or UUIDs)."""
    if accel.cpu_forced():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and not d.strip().startswith("-")]
    return [str(i) for i in range(accel.gpu_count())]


def gpu_slots(gpus: int, workers_per_gpu: int, visible: list[str]) -> list[str]:
    """One CUDA_VISIBLE_DEVICES value per worker: *workers_per_gpu* workers on each of the first *gpus* GPUs.

    Workers are interleaved over the GPUs (0, 1, 0, 1...), so a run with fewer videos than
    workers still spreads them over every GPU.
    """
    if gpus > len(visible):
        raise ValueError(f"--gpus {gpus} asks for more GPUs than this machine shows ({len(visible)})")
    return [visible[g] for _ in range(workers_per_gpu) for g in range(gpus)]


def anonymize_command(manifest: Path, item: str, input_root: Path, output_root: Path, force: bool) -> list[str]:
    """The worker's command line for one work item: the same step CLI the Argo anonymize template runs."""
    args = [sys.executable, "-m", "steps.anonymize", "--manifest", str(manifest), "--index", str(item),
            "--input-root", str(input_root), "--output-root", str(output_root)]
    return args + (["--force"] if force else [])


#: Credentials in the environment that a worker never receives.
SECRET_ENV = frozenset({"ARGO_TOKEN"})

#: The variable that tells steps.anonymize how many tries came before (Argo passes {{retries}} in it).
PREVIOUS_ATTEMPTS_ENV = "ANON_PREVIOUS_ATTEMPTS"


def worker_env(settings: Settings, threads: int) -> dict[str, str]:
    """The environment of a worker process started here (steps.anonymize, steps.join): the caller's, less its
    credentials (workers parse untrusted videos and need none: the Argo token stays here), with *settings*, and
    the project on the module path. A worker runs in the caller's folder, as the caller does, so that relative
    paths it is given (a video, --model, --work-dir) mean what they meant to the caller."""
    env = {key: value for key, value in os.environ.items() if key not in SECRET_ENV}
    env.update(settings.to_env())
    env["ANON_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def join_command(manifest: Path, input_root: Path, output_root: Path) -> list[str]:
    """The step that joins what the workers left unjoined: the same step CLI the Argo join template runs."""
    return [sys.executable, "-m", "steps.join", "--manifest", str(manifest), "--input-root", str(input_root),
            "--output-root", str(output_root)]


@dataclass
class _Job:
    item: str  # a work item: "3" (a whole video) or "3:2" (its segment 2)
    path: str
    size: int
    attempt: int = 1
    proc: Optional[subprocess.Popen] = None
    progress_file: Optional[Path] = None
    task: Optional[TaskID] = None
    started: float = field(default_factory=time.monotonic)
    #: (time, frames) when its progress was first seen: fps leaves out the model's loading time.
    first_seen: Optional[tuple[float, int]] = None
    slot: int = 0  # which worker slot (with --gpus: which GPU) runs it

    def fps(self, frames: int) -> float:
        now = time.monotonic()
        if self.first_seen is None:
            self.first_seen = (now, frames)
        since, base = self.first_seen
        return (frames - base) / (now - since) if now > since else 0.0

    @property
    def index(self) -> int:
        return parse_work_item(self.item)[0]

    @property
    def segment(self) -> Optional[int]:
        return parse_work_item(self.item)[1]


class LocalRunner:
    """Runs the workers; with *gpu_slots* (see gpu_slots) there is one worker per slot, pinned to its GPU."""

    def __init__(self, input_root: Path, output_root: Path, settings: Settings, workers: int, force: bool = False,
                 retries: int = 1, console: Optional[Console] = None,
                 segment_seconds: int = DEFAULT_SEGMENT_SECONDS, gpu_slots: Optional[list[str]] = None,
                 video_deadline: float = VIDEO_DEADLINE_SECONDS):
        self.input_root, self.output_root = input_root.resolve(), output_root.resolve()
        self.gpu_slots = gpu_slots or []
        if self.gpu_slots:
            workers = len(self.gpu_slots)
        self.settings, self.workers, self.force, self.retries = settings, max(1, workers), force, retries
        self.segment_seconds, self.video_deadline = segment_seconds, video_deadline
        self.console = console or Console(stderr=True)
        self.threads = max(1, (os.cpu_count() or 2) // self.workers)

    def _env(self, progress_file: Path, attempt: int = 1, slot: int = 0) -> dict[str, str]:
        env = worker_env(self.settings, self.threads)
        if self.gpu_slots:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu_slots[slot]
        env[PROGRESS_FILE_ENV] = str(progress_file)
        env[PREVIOUS_ATTEMPTS_ENV] = str(attempt - 1)
        return env

    def run(self) -> Summary:
        manifest_file = manifest_path(self.output_root)
        manifest = run_discover(self.input_root, self.output_root, segment_seconds=self.segment_seconds)
        work = plan_work(manifest, self.output_root, self.settings, force=self.force)
        segments = sum(":" in item for item in work.items)
        self.console.print(f"[bold]{len(manifest.items)}[/] videos found in {_shown(str(self.input_root))}"
                           + (f" ({len(manifest.ignored)} other files passed over)" if manifest.ignored else "")
                           + (f", {len(work.done)} already done" if work.done else "")
                           + (f"; {segments} segments of {len(work.joins)} long videos" if work.joins else ""),
                           soft_wrap=True)
        with tempfile.TemporaryDirectory(prefix="anonymize-progress-") as progress_dir:
            self._work(manifest, work, manifest_file, Path(progress_dir))
        return run_summarize(self.output_root)

    def _report(self, job: _Job) -> Optional[VideoReport]:
        """The job's report: the video's, or its segment's (the video's once the worker joined the segments)."""
        video = VideoReport.load(report_path_for(self.output_root, job.path))
        if job.segment is None:
            return video
        segment = VideoReport.load(segment_report(segment_folder(self.output_root, job.path), job.segment))
        joined = video is not None and video.segments and video.status == "done" and (
            segment is None or (video.started_at or "") >= (segment.started_at or ""))
        return video if joined else segment

    def _work(self, manifest: Manifest, work: Work, manifest_file: Path, progress_dir: Path) -> None:
        """Run the work items, longest first (the worker finishing a video's last segment joins it), then the
        join step for what is left, as on Argo."""
        pending = []
        for item in work.items:
            index, segment = parse_work_item(item)
            entry = manifest.items[index]
            share = len(entry.cuts) + 1 if segment is not None else 1  # a segment weighs its share of the bytes
            pending.append(_Job(item, entry.path, max(1, (entry.size or 0) // share)))
        videos_total = sum(job.segment is None for job in pending) + len(work.joins)
        running: list[_Job] = []
        frames_done = videos_done = 0
        weight_done = 0.0
        with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=self.console, disable=not self.console.is_terminal, transient=False) as bars:
            overall = bars.add_task("[bold]all videos", total=sum(job.size for job in pending), info="")
            run_started = time.monotonic()
            while pending or running:
                while pending and len(running) < self.workers:
                    job = pending.pop(0)
                    job.slot = min(set(range(self.workers)) - {j.slot for j in running})
                    name = job.item.replace(":", "-")
                    job.progress_file = progress_dir / f"{name}.progress"
                    job.progress_file.unlink(missing_ok=True)
                    job.started = time.monotonic()
                    with open(progress_dir / f"{name}.log", "wb") as log:  # a pipe could fill up and block
                        job.proc = subprocess.Popen(
                            anonymize_command(manifest_file, job.item, self.input_root, self.output_root, self.force),
                            env=self._env(job.progress_file, job.attempt, job.slot), stdout=subprocess.DEVNULL,
                            stderr=log)
                    label = f"  {_shown(self._label(manifest, job))}" + (
                        f" (try {job.attempt})" if job.attempt > 1 else "")
                    job.task = bars.add_task(label, total=None, info="")
                    running.append(job)
                time.sleep(0.25)
                live_frames, live_weight = 0, 0.0
                for job in list(running):
                    seen = read_progress_file(job.progress_file)
                    if seen:
                        bars.update(job.task, completed=seen[0], total=seen[1],
                                    info=f"{seen[0]}/{seen[1]} frames, {job.fps(seen[0]):.1f} fps")
                    if job.proc.poll() is None and time.monotonic() - job.started > self.video_deadline:
                        self._stop(manifest, job)
                    if job.proc.poll() is None:
                        if seen:  # a finished video counts below, once
                            live_frames += seen[0]
                            live_weight += job.size * seen[0] / seen[1]
                        continue
                    running.remove(job)
                    bars.refresh()  # its last state is drawn at least once, however short the video
                    bars.remove_task(job.task)
                    stderr = job.progress_file.with_suffix(".log").read_text(errors="replace")
                    code = job.proc.returncode
                    report = self._report(job)
                    if code != 0 and should_retry(code) and job.attempt <= self.retries:
                        self.console.print(f"[yellow]retry[/] {_shown(self._label(manifest, job))} "
                                           f"(exit code {code}, attempt {job.attempt})", soft_wrap=True)
                        pending.insert(0, _Job(job.item, job.path, job.size, job.attempt + 1))
                        continue
                    videos_done += job.segment is None
                    weight_done += job.size
                    if report is not None and report.status in ("done", "skipped"):
                        frames_done += (seen[0] if seen else 0) if report.segments else report.frames_out or 0
                    self._print_result(self._label(manifest, job), code, report, stderr)
                total_elapsed = max(time.monotonic() - run_started, 1e-6)
                shown = frames_done + live_frames
                bars.update(overall, completed=weight_done + live_weight,
                            info=f"{videos_done}/{videos_total} videos, {shown} frames, "
                                 f"{shown / total_elapsed:.1f} fps")
            if work.joins:
                self._join_left(manifest, work, manifest_file, progress_dir)
                videos_done += len(work.joins)
                bars.update(overall, info=f"{videos_done}/{videos_total} videos")

    def _stop(self, manifest: Manifest, job: _Job) -> None:
        """Stop a worker past its deadline, as Argo stops a pod past its ``activeDeadlineSeconds``: SIGTERM, then
        SIGKILL if it has not exited after STOP_GRACE_SECONDS. It is then retried like any worker that failed."""
        self.console.print(f"[yellow]stopped[/] {_shown(self._label(manifest, job))}: still running after "
                           f"{self.video_deadline:g} s (--video-deadline)", soft_wrap=True)
        job.proc.terminate()
        try:
            job.proc.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            job.proc.kill()
            job.proc.wait()

    def _join_left(self, manifest: Manifest, work: Work, manifest_file: Path, progress_dir: Path) -> None:
        """The join step (a worker finishing a video's last segment joined it already, unless that failed), then
        each long video's outcome."""
        for attempt in range(1, self.retries + 2):
            done = subprocess.run(join_command(manifest_file, self.input_root, self.output_root),
                                  env=self._env(progress_dir / "join.progress", attempt), capture_output=True,
                                  text=True)
            if not should_retry(done.returncode) or attempt > self.retries:
                break
            self.console.print(f"[yellow]retry[/] joining (exit code {done.returncode}, attempt {attempt})")
        for index in work.joins:
            path = manifest.items[index].path
            self._print_result(path, done.returncode, VideoReport.load(report_path_for(self.output_root, path)),
                               done.stderr)

    @staticmethod
    def _label(manifest: Manifest, job: _Job) -> str:
        if job.segment is not None:
            return f"{job.path} [segment {job.segment + 1}/{len(manifest.items[job.index].cuts) + 1}]"
        return job.path

    def _print_result(self, path: str, code: int, report: Optional[VideoReport], stderr: str) -> None:
        if report is None or report.status == "running":
            tail = " ".join(stderr.strip().splitlines()[-3:])
            self.console.print(f"[red]failed[/] {_shown(path)}: the worker exited with code {code} without a report. "
                               f"{_shown(tail)}", soft_wrap=True)
        elif report.status == "failed":
            self.console.print(f"[red]failed[/] {_shown(path)}: {_shown(report.error or '')}", soft_wrap=True)
        elif report.status == "skipped":
            self.console.print(f"[dim]skipped[/] {_shown(path)} (already done)", soft_wrap=True)
        elif report.segments:
            self.console.print(f"[green]done[/] {_shown(path)}: the video joined, {report.frames_out} frames from "
                               f"{report.segments} segments", soft_wrap=True)
        else:
            self.console.print(f"[green]done[/] {_shown(path)}: {report.frames_out} frames, {report.fps} fps, "
                               f"{report.faces_hidden} faces hidden", soft_wrap=True)
