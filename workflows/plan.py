"""``python -m workflows plan``: will a collection fit the GPUs and the days before the work starts?

The plan takes every video's length (probed as discover probes it, steps.durations, or read
from a manifest), a speed in frames per second per GPU (``--fps``, or a benchmark's JSON),
and simulates the Argo fan-out: the work items in the order discover prints them, each
started on the first free slot of ``--gpus`` pods at a time (Argo's controller starts the
expanded items in list order as the parallelism limit frees slots), each costing its frames
at that speed plus a fixed start-up (``--pod-seconds``: scheduling, image, Python, model
load; an assumption, not measured here). It compares one pod per file (in listing order, as
before segments and balancing existed, and longest first) with segments longest first (the pod
of a video's last segment also copies the video once to join it, then one join pod runs after
the fan-out), tries a few other segment lengths, and checks the sizes Argo limits.

Efficiency = ideal / predicted makespan, where ideal = the one-pod-per-file work (every
file's frames plus one pod start each) spread evenly over the GPUs: no idle GPU, no extra pod.
"""

from __future__ import annotations

import base64
import gzip
import heapq
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from steps.discover import discover, fan_out_json, work_weight
from steps.errors import VIDEO_DEADLINE_SECONDS
from steps.manifest import Item, Manifest
from steps.segments import cut_times, work_item
from steps.settings import Settings

ARGO_RESULT_LIMIT = 256 * 1024  # Argo keeps the last 256 kB of a step's printed result (the fan-out list)
OBJECT_LIMIT = 1024 * 1024  # a Workflow is a Kubernetes object: etcd refuses more than about 1.5 MB; 1 MB is safe
#: Bench keys that hold the anonymizer's own frames per second, in order of preference.
FPS_KEYS = ("fps", "anonymizer_fps", "end_to_end_fps", "frames_per_second")


class BenchError(ValueError):
    """The benchmark file cannot give a speed."""


@dataclass(frozen=True)
class Speed:
    """Frames per second one pod (one GPU) anonymizes: one figure, or figures by picture size."""

    by_pixels: tuple[tuple[int, float], ...]  # (width x height, fps), sorted; pixels 0: any size

    def fps(self, width: Optional[int], height: Optional[int]) -> float:
        """The figure of the nearest measured picture size, scaled by the ratio of pixel counts
        (decoding, hiding and encoding cost about in proportion to pixels)."""
        sized = [(p, f) for p, f in self.by_pixels if p]
        if not sized or not width or not height:
            return (dict(self.by_pixels).get(0) or sorted(f for _, f in self.by_pixels)[len(self.by_pixels) // 2])
        pixels = width * height
        nearest, fps = min(sized, key=lambda pair: abs(math.log(pair[0] / pixels)))
        return fps * nearest / pixels

    def describe(self) -> str:
        return ", ".join(f"{f:g} fps" + (f" at {p / 1e6:.2f} Mpixel" if p else "") for p, f in self.by_pixels)

    @classmethod
    def constant(cls, fps: float) -> Speed:
        return cls(((0, fps),))

    @classmethod
    def from_bench(cls, path: Path) -> Speed:
        """A benchmark's JSON: ``{"fps": 120}``, ``{"fps": {"1920x1080": 60, "1280x720": 140}}``, or any
        structure holding objects with ``width``, ``height`` and ``fps`` (``python -m workflows bench --json``)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BenchError(f"cannot read the benchmark {str(path)!r}: {exc}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "the benchmark") -> Speed:
        """See from_bench."""
        path = source
        found: list[tuple[int, float]] = []
        if isinstance(data, dict) and isinstance(data.get("fps"), (int, float)):
            found.append((0, float(data["fps"])))
        elif isinstance(data, dict) and isinstance(data.get("fps"), dict):
            for size, fps in data["fps"].items():
                width, _, height = str(size).partition("x")
                if not (width.isdigit() and height.isdigit() and isinstance(fps, (int, float))):
                    raise BenchError(f"{str(path)!r}: {size!r} is not WIDTHxHEIGHT with a number of frames/s")
                found.append((int(width) * int(height), float(fps)))
        else:
            found = list(_sized_figures(data))
        found = [(p, f) for p, f in found if f > 0]
        if not found:
            raise BenchError(f"{str(path)!r} holds no frames-per-second figure: give {{\"fps\": 120}}, "
                             "{\"fps\": {\"1920x1080\": 60}} or objects with width, height and fps")
        return cls(tuple(sorted(dict(found).items())))


def _sized_figures(value: Any):
    """(pixels, fps) of every object inside *value* that has a width, a height and an fps figure."""
    if isinstance(value, dict):
        fps = next((value[k] for k in FPS_KEYS if isinstance(value.get(k), (int, float))), None)
        width, height = value.get("width"), value.get("height")
        if fps is not None and isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
            yield width * height, float(fps)
        for child in value.values():
            yield from _sized_figures(child)
    elif isinstance(value, list):
        for child in value:
            yield from _sized_figures(child)


def makespan(seconds: list[float], slots: int) -> float:
    """When the last of *seconds* ends, each started in list order on the first free one of *slots*."""
    free = [0.0] * slots
    end = 0.0
    for duration in seconds:
        start = heapq.heappop(free)
        heapq.heappush(free, start + duration)
        end = max(end, start + duration)
    return end


@dataclass
class Outcome:
    label: str
    items: list[str]  # the fan-out list, in order
    pods: int  # pods, the join step's included
    longest_pod: float
    seconds: float  # predicted makespan
    efficiency: float
    joins: list[int] = field(default_factory=list)  # the videos cut into segments


#: The segment lengths the plan also tries, to suggest the best one.
SEGMENT_CHOICES = (300, 600, 900, 1800, 3600)
DEFAULT_POD_DEADLINE = VIDEO_DEADLINE_SECONDS  # workflows.argo.ClusterConfig.video_deadline_seconds


@dataclass
class Plan:
    videos: int
    unreadable: int
    hours: float
    frames: int
    gpus: int
    speed: Speed
    pod_seconds: float
    segment_seconds: int
    ideal: float
    outcomes: list[Outcome]
    limits: dict[str, Any]
    best: Outcome
    over_deadline: int
    pod_deadline: float


def plan_job(items: list[Item], gpus: int, speed: Speed, segment_seconds: int, pod_seconds: float = 10.0,
             join_mb_per_second: float = 100.0, pod_deadline: float = DEFAULT_POD_DEADLINE) -> Plan:
    """Simulate the fan-out of *items* on *gpus* GPUs, one pod per file and in segments."""
    per_file = [pod_seconds + _frames_seconds(item, speed) for item in items]
    ideal = sum(per_file) / gpus
    weights = [work_weight(item) for item in items]
    by_length = sorted(range(len(items)), key=lambda i: -weights[i])  # discover's order (stable: ties by path)
    outcomes = []
    for label, order in (("one pod per file, listing order", list(range(len(items)))),
                         ("one pod per file, longest first", by_length)):
        seconds = [per_file[i] for i in order]
        span = makespan(seconds, gpus)
        outcomes.append(Outcome(label, [work_item(i) for i in order], len(order), max(seconds, default=0.0), span,
                                ideal / span if span else 1.0))
    outcomes.append(_segmented(items, gpus, speed, segment_seconds, pod_seconds, join_mb_per_second, ideal))
    alternatives = [_segmented(items, gpus, speed, length, pod_seconds, join_mb_per_second, ideal)
                    for length in SEGMENT_CHOICES if length != segment_seconds]
    best = max([outcomes[-1], *alternatives], key=lambda outcome: outcome.efficiency)
    return Plan(videos=len(items), unreadable=sum(not item.frames for item in items),
                hours=sum(item.duration or 0 for item in items) / 3600, frames=sum(item.frames or 0 for item in items),
                gpus=gpus, speed=speed, pod_seconds=pod_seconds, segment_seconds=segment_seconds, ideal=ideal,
                outcomes=outcomes, limits=argo_limits(outcomes[-1], gpus, segment_seconds), best=best,
                over_deadline=sum(seconds > pod_deadline for seconds in per_file), pod_deadline=pod_deadline)


def _frames_seconds(item: Item, speed: Speed) -> float:
    """The GPU seconds of *item*'s frames (an unreadable file fails at once)."""
    return (item.frames or 0) / speed.fps(item.width, item.height)


def _segmented(items: list[Item], gpus: int, speed: Speed, segment_seconds: int, pod_seconds: float,
               join_mb_per_second: float, ideal: float) -> Outcome:
    """Segments of *segment_seconds*, longest first. The pod of a video's last segment also joins it (copying
    the video once); the join step after the fan-out is one more pod, which normally finds nothing left."""
    entries: list[tuple[str, float, float]] = []  # (work item, weight, seconds), as discover lists them
    for index, item in enumerate(items):
        cuts = cut_times(item.duration, item.start, segment_seconds)
        parts = len(cuts) + 1
        share = pod_seconds + _frames_seconds(item, speed) / parts
        if not cuts:
            entries.append((work_item(index), work_weight(item), share))
            continue
        join = item.size / (join_mb_per_second * 1e6)
        entries += [(work_item(index, part), work_weight(item, parts), share + (join if part == parts - 1 else 0))
                    for part in range(parts)]
    entries.sort(key=lambda entry: -entry[1])
    seconds = [entry[2] for entry in entries]
    span = makespan(seconds, gpus) + pod_seconds
    return Outcome(f"segments of {segment_seconds} s, longest first", [name for name, _, _ in entries],
                   len(entries) + 1, max(seconds, default=0.0), span, ideal / span if span else 1.0,
                   sorted({int(name.partition(":")[0]) for name, _, _ in entries if ":" in name}))


def argo_limits(outcome: Outcome, gpus: int, segment_seconds: int) -> dict[str, Any]:
    """The sizes Argo limits, for the segmented plan: the printed fan-out list, the Workflow's spec, and an
    estimate of its status once every pod has run."""
    from workflows.argo import ClusterConfig, build

    workflow = build(ClusterConfig(parallelism=gpus, segment_seconds=segment_seconds), Settings(), "Workflow")
    spec_bytes = len(json.dumps(workflow.to_dict()).encode())
    raw, compressed = status_size(outcome.items)
    return {"fan_out_bytes": len(fan_out_json(outcome.items).encode()), "spec_bytes": spec_bytes,
            "nodes": 2 * len(outcome.items) + 10, "status_bytes": raw, "status_compressed_bytes": compressed}


def status_size(items: list[str], name: str = "video-anonymizer-x7k2p") -> tuple[int, int]:
    """An estimate of the Workflow's status.nodes once every pod has run once, raw and as Argo compresses it
    (gzip, then base64, into status.compressedNodes): per pod a retry node and a pod node shaped like Argo's
    NodeStatus (names, ids, phase, times, inputs, exit code, resources used, host)."""
    rng = random.Random(6)
    nodes: dict[str, dict[str, Any]] = {}

    def node_id() -> str:
        return f"{name}-{rng.randrange(10**9, 10**10)}"

    def add(task: str, position: int, value: str) -> None:
        retry, pod = node_id(), node_id()
        display = f"{task}({position}:{value})"
        common = {"templateName": task, "templateScope": "local/", "phase": "Succeeded", "boundaryID": name,
                  "startedAt": "2025-01-01T00:00:00Z", "finishedAt": "2025-01-01T00:05:00Z", "progress": "1/1",
                  "inputs": {"parameters": [{"name": "index", "value": value}]}}
        nodes[retry] = {"id": retry, "name": f"{name}.{display}", "displayName": display, "type": "Retry",
                        **common, "children": [pod]}
        nodes[pod] = {"id": pod, "name": f"{name}.{display}(0)", "displayName": f"{display}(0)", "type": "Pod",
                      **common, "resourcesDuration": {"cpu": 1200, "memory": 3600, "nvidia.com/gpu": 300},
                      "outputs": {"exitCode": "0"}, "hostNodeName": f"gpu-node-{rng.randrange(100):02d}"}

    for position, item in enumerate(items):
        add("anonymize", position, item)
    raw = json.dumps(nodes, separators=(",", ":")).encode()
    return len(raw), len(base64.b64encode(gzip.compress(raw)))


def load_items(source: Path, segment_seconds: int, cache_file: Optional[Path]) -> list[Item]:
    """The videos of a folder (probed, cached) or of a manifest written by discover."""
    if source.is_file():
        return Manifest.load(source).items
    return discover(source, segment_seconds=segment_seconds, cache_file=cache_file).items


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.0f} s"


def _kb(size: int) -> str:
    return f"{size / 1024:,.0f} kB" if size < 10 * 1024 * 1024 else f"{size / 1024 / 1024:,.1f} MB"


def render(plan: Plan) -> str:
    """The plan as text: the collection, the assumptions, the table, Argo's limits."""
    lines = [
        f"{plan.videos} videos, {plan.hours:,.1f} hours, {plan.frames:,} frames"
        + (f" ({plan.unreadable} without a readable length: counted as failing at once)" if plan.unreadable else ""),
        f"{plan.gpus} GPUs, one pod each at a time; speed per GPU: {plan.speed.describe()}; "
        f"{plan.pod_seconds:g} s per pod besides its frames (assumed)",
        f"ideal: {_duration(plan.ideal)} (every file's frames plus one pod start each, spread evenly over the GPUs)",
        "",
        "| fan-out | pods | longest pod | predicted | efficiency |",
        "|---|---:|---:|---:|---:|",
    ]
    for outcome in plan.outcomes:
        lines.append(f"| {outcome.label} | {outcome.pods:,} | {_duration(outcome.longest_pod)} | "
                     f"{_duration(outcome.seconds)} | {outcome.efficiency:.0%} |")
    lines.append("")
    if plan.best is not plan.outcomes[-1]:
        lines.append(f"Of segment lengths {', '.join(map(str, SEGMENT_CHOICES))} s, {plan.best.label.split()[2]} s "
                     f"predicts the shortest job: {_duration(plan.best.seconds)} ({plan.best.efficiency:.0%}); "
                     "shorter segments cost more pod starts, longer ones balance worse and lose more to a lost pod.")
    else:
        lines.append(f"Of segment lengths {', '.join(map(str, SEGMENT_CHOICES))} s, {plan.segment_seconds} s predicts "
                     "the shortest job.")
    if plan.over_deadline:
        lines.append(f"One pod per file: {plan.over_deadline} videos would run past the pod deadline "
                     f"({_duration(plan.pod_deadline)}, --video-deadline-seconds) and fail; in segments none does.")
    limits = plan.limits
    status = limits["status_bytes"]
    if status <= OBJECT_LIMIT:
        verdict = "within the limit"
    elif limits["status_compressed_bytes"] <= OBJECT_LIMIT:
        verdict = "over 1 MB raw: Argo compresses it (status.compressedNodes), which fits"
    else:
        verdict = ("over 1 MB even compressed: configure the controller's persistence with nodeStatusOffLoad: "
                   "true, or split the collection into several workflows")
    lines += [
        f"Argo limits (segmented plan): fan-out list {_kb(limits['fan_out_bytes'])} of 256 kB"
        f" ({'ok' if limits['fan_out_bytes'] < ARGO_RESULT_LIMIT else 'TOO LARGE: split the collection'}); "
        f"workflow spec {_kb(limits['spec_bytes'])} of about 1 MB "
        f"({'ok' if limits['spec_bytes'] < OBJECT_LIMIT else 'TOO LARGE'});",
        f"status after the run (estimate, {limits['nodes']:,} nodes): {_kb(status)} raw, "
        f"{_kb(limits['status_compressed_bytes'])} compressed: {verdict}.",
    ]
    return "\n".join(lines) + "\n"
