"""``python -m workflows bench CLIP...``: how fast the anonymizer runs here, next to what cannot be beaten.

For each clip, in the same run and on the same machine:

- **floor**: a plain ffmpeg decode + re-encode of the clip (video with the anonymizer's
  encoder and settings, audio copied, same container): no anonymizer can be faster;
- **anonymizer**: the worker command pods run (``python -m steps.anonymize --input --output``),
  as a separate process like in production;
- **deface** (``--deface``): the leading open-source tool, default settings plus ``--keep-audio``, once
  with each of its backends this environment has (``deface_backends``), the faster kept as the baseline.

Each is timed as a whole process (startup included), and its process tree (Python plus the
ffmpeg children) is sampled for peak resident memory and CPU seconds. The anonymizer's frames
per second is computed from its report's wall time (the video's work: probe, model load,
pipeline, verification; not the interpreter's start), its process wall time is shown too. Its
report gives the busy time of each pipeline stage and which hardware path ran. With
``--repeat N`` each measurement is taken N times and the fastest kept (the least disturbed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import ffmpeg
import psutil

from steps import accel
from steps.containers import output_name
from steps.ffio import EncoderSettings, command
from steps.probe import ffmpeg_url, probe
from steps.settings import Settings
from workflows.local import worker_env


@dataclass
class Run:
    """One measured process: wall time, peak memory and CPU time of its whole process tree."""

    seconds: float
    peak_rss_mb: float
    cpu_seconds: dict[str, float]  # by process role: python, ffmpeg decoder, ffmpeg encoder, ffmpeg
    returncode: int
    stderr_tail: str = ""

    def cpu_ms(self, frames: int) -> float:
        return round(1000 * sum(self.cpu_seconds.values()) / max(1, frames), 1)


def _role(proc: psutil.Process) -> str:
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return "other"
    if not cmd:  # an exiting process shows no command line any more
        return "other"
    name = Path(cmd[0]).name
    if "ffmpeg" in name:
        if "pipe:1" in cmd:
            return "ffmpeg decoder"
        if "pipe:0" in cmd:
            return "ffmpeg encoder"
        return "ffmpeg"
    return "python" if "python" in name else name


def measure(args: list[str], env: Optional[dict[str, str]] = None, interval: float = 0.05) -> Run:
    """Run *args*, sampling its process tree's summed resident memory and per-process CPU time."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    peak = 0
    cpu: dict[int, tuple[str, float]] = {}
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)
    reader.start()
    try:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            rss = 0
            for p in tree:
                try:
                    with p.oneshot():
                        rss += p.memory_info().rss
                        times = p.cpu_times()
                        # The role is read again each time (a child just forked still shows Python's command
                        # line) unless the process is exiting and no longer shows one.
                        role = _role(p)
                        if role == "other" and p.pid in cpu:
                            role = cpu[p.pid][0]
                        cpu[p.pid] = (role, times.user + times.system)
                except psutil.Error:
                    continue
            peak = max(peak, rss)
            time.sleep(interval)
    finally:
        proc.wait()
        seconds = time.perf_counter() - started
        reader.join(timeout=5)
    by_role: dict[str, float] = {}
    for role, value in cpu.values():
        by_role[role] = round(by_role.get(role, 0.0) + value, 2)
    tail = b"".join(stderr).decode(errors="replace").strip().splitlines()[-5:]
    return Run(round(seconds, 3), round(peak / 2**20, 1), by_role, proc.returncode, "\n".join(tail))


def floor_command(clip: Path, output: Path, encoder: EncoderSettings, hwaccel: Optional[str]) -> list[str]:
    """A plain decode + re-encode of *clip*: the video with the anonymizer's encoder options, the audio copied."""
    info = probe(clip)
    input_args: dict[str, Any] = {"copyts": None}
    if hwaccel:
        input_args["hwaccel"] = hwaccel
    source = ffmpeg.input(ffmpeg_url(clip), **input_args)
    out = ffmpeg.output(source[str(info.video.index)], source["a?"], "file:" + str(output.absolute()),
                        **encoder.args(), fps_mode="passthrough", acodec="copy")
    return command(out, "-y")


@dataclass
class ClipResult:
    clip: str
    width: int
    height: int
    frames: int
    wall_seconds: float  # the anonymizer's report: the video's work, from probe to verified output
    fps: float  # the anonymizer: frames / wall_seconds
    process_fps: float  # the anonymizer: frames / worker process wall time (interpreter start included)
    floor_fps: float
    ratio: float  # fps / floor_fps
    stage_seconds: dict[str, float]
    anonymizer: Run
    floor: Run
    path: dict[str, Any]
    faces: int
    #: CPU seconds of each stage in its own thread and of the rest of the process (steps.engine.Stats).
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)
    #: CPU milliseconds per frame of each process tree: what the work costs, whatever else the machine runs.
    cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)
    deface_fps: Optional[float] = None  # deface, its faster backend: frames / its whole process's wall time
    deface_backend: Optional[str] = None  # which of deface's backends that was
    deface_fps_by_backend: dict[str, float] = field(default_factory=dict)
    speedup_vs_deface: Optional[float] = None  # fps / deface_fps: the video's work against deface's whole process
    #: process_fps / deface_fps: both whole processes, interpreter start included (like for like; on a short
    #: clip the anonymizer's start, its imports included, about 1 s here, weighs more than on the hours-long videos
    #: it is made for).
    process_speedup_vs_deface: Optional[float] = None
    deface: Optional[Run] = None  # the faster backend's run


@dataclass
class Bench:
    machine: dict[str, Any]
    settings: dict[str, Any]
    clips: list[ClipResult] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def machine_facts() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": platform.node(), "cpu": cpu_model, "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_average_before": [round(x, 2) for x in os.getloadavg()], **accel.describe()}


def _best(runs: list[Run]) -> Run:
    failed = [r for r in runs if r.returncode != 0]
    return failed[0] if failed else min(runs, key=lambda r: r.seconds)


def bench_clip(clip: Path, work: Path, settings: Settings, threads: int = 0, repeat: int = 1,
               deface: bool = False) -> ClipResult:
    """Measure the floor, the anonymizer and (optionally) deface on *clip*; outputs go to *work*."""
    info = probe(clip)
    name, _ = output_name(clip.name, info)
    path = accel.video_path()
    encoder = EncoderSettings(path.encoder, settings.crf, settings.preset, threads)
    floor_out, ours_out = work / f"floor-{name}", work / f"anonymized-{name}"
    floor = _best([measure(floor_command(clip, floor_out, encoder, path.hwaccel)) for _ in range(repeat)])
    if floor.returncode != 0:
        raise RuntimeError(f"the plain transcode of {clip.name} failed: {floor.stderr_tail}")
    env = worker_env(settings, threads)
    worker = [sys.executable, "-m", "steps.anonymize", "--input", str(clip), "--output", str(ours_out), "--force"]
    runs, reports = [], []
    for _ in range(repeat):
        runs.append(measure(worker, env=env))
        report_file = Path(str(ours_out) + ".report.json")  # none when the worker could not start
        reports.append(json.loads(report_file.read_text()) if report_file.is_file() else {})
    best = min(range(repeat), key=lambda i: reports[i].get("wall_seconds") or float("inf"))
    ours, report = runs[best], reports[best]
    if ours.returncode != 0 or report.get("status") != "done":
        raise RuntimeError(f"the anonymizer failed on {clip.name}: {report.get('error') or ours.stderr_tail}")
    frames = report["frames_out"]
    fps = frames / report["wall_seconds"]
    floor_fps = frames / floor.seconds
    result = ClipResult(
        clip=clip.name, width=report["video"]["width"], height=report["video"]["height"], frames=frames,
        wall_seconds=report["wall_seconds"], fps=round(fps, 2), process_fps=round(frames / ours.seconds, 2),
        floor_fps=round(floor_fps, 2),
        ratio=round(fps / floor_fps, 3), stage_seconds=report.get("stage_seconds", {}), anonymizer=ours, floor=floor,
        path={"detector": report.get("detector", {}), **report.get("accel", {})},
        faces=report.get("faces_detected") or 0, stage_cpu_seconds=report.get("stage_cpu_seconds", {}))
    result.cpu_ms_per_frame = {"anonymizer": ours.cpu_ms(frames), "floor": floor.cpu_ms(frames)}
    if deface:
        by_backend = {}
        for backend in deface_backends():
            run = _best([measure(deface_command(clip, work / f"deface-{name}", backend)) for _ in range(repeat)])
            if run.returncode != 0:
                raise RuntimeError(f"deface ({backend}) failed on {clip.name}: {run.stderr_tail}")
            by_backend[backend] = run
            result.deface_fps_by_backend[backend] = round(frames / run.seconds, 2)
        result.deface_backend = min(by_backend, key=lambda b: by_backend[b].seconds)
        result.deface = by_backend[result.deface_backend]
        result.deface_fps = round(frames / result.deface.seconds, 2)
        result.cpu_ms_per_frame["deface"] = result.deface.cpu_ms(frames)
        result.speedup_vs_deface = round(fps / result.deface_fps, 2)
        result.process_speedup_vs_deface = round(result.process_fps / result.deface_fps, 2)
    for leftover in work.glob("*"):
        leftover.unlink()
    return result


def deface_backends() -> list[str]:
    """deface's backends that run here: OpenCV's DNN module always (opencv-python is one of deface's own
    requirements), ONNX Runtime where onnx and onnxruntime are installed.

    Its default ("auto") takes ONNX Runtime whenever it can, so it runs OpenCV's DNN after a plain ``pip install
    deface`` and ONNX Runtime in this project's environment; on a 2-core AMD EPYC build machine OpenCV's was the
    faster (19-20 against 15-17 fps on hamilton_audio.mp4, the same boxes). Measuring both, the baseline is the
    faster deface a user could have."""
    return ["opencv"] + (["onnxrt"] if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxruntime")
                         else [])


def deface_command(clip: Path, output: Path, backend: str) -> list[str]:
    """deface with its default settings but *backend*, keeping the audio (the comparison the project's issue asks
    for)."""
    exe = Path(sys.executable).with_name("deface")
    exe_path = str(exe) if exe.exists() else shutil.which("deface")
    if exe_path is None:
        raise RuntimeError("the deface command is not installed (pip install deface)")
    return [exe_path, str(clip), "--keep-audio", "--backend", backend, "-o", str(output)]


def run_bench(clips: list[Path], settings: Settings, work: Path, threads: int = 0, repeat: int = 1,
              deface: bool = False, on_clip=None) -> Bench:
    bench = Bench(machine=machine_facts(), settings=settings.model_dump(mode="json"))
    work.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        bench.clips.append(bench_clip(clip, work, settings, threads=threads, repeat=repeat, deface=deface))
        if on_clip:
            on_clip(bench.clips[-1])
    bench.machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return bench


def path_text(path: dict[str, Any]) -> str:
    """One line: where the detector ran, how ffmpeg decoded and encoded."""
    det = path.get("detector", {})
    where = ",".join(det.get("providers", [])) or f"{det.get('torch_device', '')} {det.get('precision', '')}"
    return (f"{det.get('name', '?')} on {det.get('runtime', '?')} [{where.strip()}]; "
            f"{path.get('decoder', '?')}; {path.get('encoder', '?')}")
