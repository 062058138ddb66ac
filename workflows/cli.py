"""``python -m workflows``: the command line people use."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from steps.anonymize import anonymize_file
from steps.engine import STAGES
from steps.errors import EXIT_USAGE, VIDEO_DEADLINE_SECONDS, AnonymizeError, one_sentence
from steps.fsutil import atomic_write_text
from steps.segments import DEFAULT_SEGMENT_SECONDS
from steps.settings import Settings, with_settings_options
from workflows.argo import ClusterConfig, GpuMode, build, render_documents, with_cluster_options
from workflows.local import LocalRunner, default_workers, gpu_slots, visible_gpus

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Blur every face in every frame of a video collection, on one machine or on an Argo cluster.")
console = Console(stderr=True)


@app.command()
@with_settings_options
def run(
    settings: Settings,
    input_dir: Path = typer.Argument(..., help="Folder of videos, searched recursively. Only read."),
    output_dir: Path = typer.Argument(..., help="Folder for the anonymized videos (same tree as the input), their "
                                                "reports, manifest.json and summary.html/.md/.json."),
    workers: int = typer.Option(default_workers(), help="Videos anonymized at the same time (without GPUs)."),
    gpus: str = typer.Option("auto", help="GPUs to spread the workers over: a number, or auto (all this machine "
                                          "shows; none on a machine without a GPU)."),
    workers_per_gpu: int = typer.Option(2, min=1, help="Workers pinned to each GPU (with --gpus): several keep a GPU "
                                                       "busy while one of them decodes or encodes."),
    force: bool = typer.Option(False, "--force", help="Redo videos already done with the same input and settings."),
    retries: int = typer.Option(1, help="Extra attempts for a video that failed in a way worth retrying."),
    segment_seconds: int = typer.Option(DEFAULT_SEGMENT_SECONDS, min=0,
                                        help="Cut videos longer than this into segments of at most this many "
                                             "seconds, anonymized by separate workers and joined without "
                                             "re-encoding (0: never)."),
    video_deadline: int = typer.Option(VIDEO_DEADLINE_SECONDS, min=1,
                                       help="Seconds one worker (a video or a segment) may run before it is stopped "
                                            "and retried, like an Argo pod past its deadline."),
) -> None:
    """Anonymize every video under INPUT_DIR into OUTPUT_DIR on this machine (discover, anonymize, summarize).

    On a machine with GPUs, --gpus x --workers-per-gpu workers run at once, each pinned to one GPU
    (CUDA_VISIBLE_DEVICES); without, --workers CPU workers.
    """
    visible = visible_gpus()
    try:
        count = len(visible) if gpus == "auto" else int(gpus)
        slots = gpu_slots(count, workers_per_gpu, visible) if count > 0 else None
    except ValueError as exc:
        message = str(exc) if "--gpus" in str(exc) else f"--gpus must be a number or auto, not {gpus!r}"
        console.print(f"[red]error:[/] {message}")
        raise typer.Exit(EXIT_USAGE) from None
    runner = LocalRunner(input_dir, output_dir, settings, workers=workers, force=force, retries=retries,
                         console=console, segment_seconds=segment_seconds, gpu_slots=slots,
                         video_deadline=video_deadline)
    try:
        summary = runner.run()
    except (ValueError, NotADirectoryError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    except AnonymizeError as exc:  # the output folder cannot take the manifest or the summary
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    t = summary.totals
    console.print(f"[bold]{t['discovered']}[/] videos: [green]{t['done']} done[/], {t['skipped']} skipped, "
                  f"[red]{t['failed']} failed[/]. Report: {escape(str(output_dir / 'summary.html'))}")
    if summary.failed:
        raise typer.Exit(1)


@app.command()
@with_settings_options
def anonymize(
    settings: Settings,
    input_file: Path = typer.Argument(..., help="The video to anonymize. Only read."),
    output_file: Path = typer.Argument(..., help="The anonymized video (its extension picks the container)."),
    force: bool = typer.Option(False, "--force", help="Redo it even if its report says it is done."),
    report: Optional[Path] = typer.Option(None, help="Report path [default: OUTPUT_FILE.report.json]."),
) -> None:
    """Anonymize one video file."""
    report_path = report or output_file.with_name(output_file.name + ".report.json")
    with Progress(TextColumn(input_file.name), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[fps]}"),
                  TimeRemainingColumn(), console=console, disable=not console.is_terminal) as bars:
        task = bars.add_task("frames", total=None, fps="")
        started = []

        def progress(done: int, total: Optional[int]) -> None:
            import time

            started or started.append(time.monotonic())
            elapsed = max(time.monotonic() - started[0], 1e-6)
            bars.update(task, completed=done, total=total, fps=f"{done / elapsed:.1f} fps")

        try:
            result = anonymize_file(input_file, output_file, report_path, settings, force=force, progress=progress)
        except AnonymizeError as exc:  # not even the report could be written
            console.print(f"[red]failed:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
    if result.status == "failed":
        console.print(f"[red]failed:[/] {escape(result.error or '')}", highlight=False, soft_wrap=True)
        raise typer.Exit(result.exit_code)
    console.print(f"[green]{result.status}[/]: {escape(str(result.output))} ({result.frames_out} frames, "
                  f"{result.faces_hidden} faces hidden, {result.fps} fps). Report: {escape(str(report_path))}")


@app.command("eval")
@with_settings_options
def eval_(
    settings: Settings,
    suite: str = typer.Option("full", help="Which clips: quick (three small clips, what CI runs) or full."),
    workdir: Optional[Path] = typer.Option(None, help="Keep the clips, outputs and reports here [default: a "
                                                     "temporary folder]."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the measures to this JSON file."),
) -> None:
    """Measure what the anonymizer leaves visible, on labelled clips built from public-domain photos."""
    from workflows.evaluate import SUITES, run_eval, save

    if suite not in SUITES:
        console.print(f"[red]error:[/] unknown suite {suite!r} (choose {', '.join(SUITES)})")
        raise typer.Exit(EXIT_USAGE)

    def progress(clip) -> None:
        hidden = sum(f.hidden for f in clip.faces)
        blur = clip.away_changed / clip.away_pixels if clip.away_pixels else 0.0
        console.print(f"{clip.name}: {hidden}/{len(clip.faces)} faces hidden, over-blur {100 * blur:.2f} %, "
                      f"{clip.fps} fps")

    evaluation = run_eval(settings, suite, workdir, progress)
    if json_out is not None:
        save(evaluation, json_out)
    typer.echo(evaluation.markdown())


@app.command()
def sample(
    folder: Path = typer.Argument(Path("sample/input"), help="Where to write the sample clip."),
    seconds: float = typer.Option(4.0, help="Length of the clip."),
) -> None:
    """Build a short sample clip (two moving faces from a public-domain photo, with sound) to try the system on."""
    from workflows.synthetic import make_sample_clip

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "astronaut.mp4"
    truth = make_sample_clip(path, seconds=seconds)
    console.print(f"wrote {path}: {len(truth)} frames, {len(truth[0])} faces per frame")


class Kind(str, Enum):
    template = "template"
    workflow = "workflow"


_KINDS = {Kind.template: "WorkflowTemplate", Kind.workflow: "Workflow"}


@app.command("render")
@with_settings_options
@with_cluster_options
def render_command(
    settings: Settings,
    cluster: ClusterConfig,
    kind: Kind = typer.Option(Kind.template, help="template: a WorkflowTemplate to install (kubectl apply, then "
                                                  "argo submit --from workflowtemplate/NAME); workflow: a Workflow "
                                                  "to submit as it is (argo submit FILE)."),
    out: Optional[Path] = typer.Option(None, help="Write the YAML to this file (default: standard output)."),
) -> None:
    """Print the Argo workflow (YAML) that anonymizes every video on the input volume."""
    text = render_documents(cluster, settings, _KINDS[kind])
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
        console.print(f"wrote {escape(str(out))}")


@app.command()
@with_settings_options
@with_cluster_options
def submit(
    settings: Settings,
    cluster: ClusterConfig,
    server: str = typer.Option("", envvar="ARGO_SERVER", show_default=False,
                               help="Argo Server: host:port (as the argo command takes it) or an http(s) URL."),
    token: str = typer.Option("", envvar="ARGO_TOKEN", show_default=False,
                              help="Token for the Argo Server ('Bearer ...' as `argo auth token` prints it, or bare). "
                                   "Prefer the environment variable: a command line is visible to other users."),
    secure: bool = typer.Option(True, "--secure/--plaintext", envvar="ARGO_SECURE",
                                help="https (default) or plain http when --server has no scheme."),
    insecure_skip_verify: bool = typer.Option(False, "--insecure-skip-verify", envvar="ARGO_INSECURE_SKIP_VERIFY",
                                              help="Do not verify the server's TLS certificate."),
) -> None:
    """Submit the workflow to an Argo Server; print its name and its Argo UI address."""
    from workflows.submit import ArgoServer, SubmitError
    from workflows.submit import submit as submit_workflow

    try:
        argo = ArgoServer.from_address(server, token=token, secure=secure, verify_tls=not insecure_skip_verify)
        name = submit_workflow(build(cluster, settings, "Workflow"), argo)
    except SubmitError as exc:
        console.print(f"[red]error:[/] {one_sentence(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    typer.echo(name)
    console.print(f"submitted {name} to namespace {cluster.namespace}: {argo.ui_url(cluster.namespace, name)}",
                  highlight=False, soft_wrap=True)
    console.print(f"watch: argo watch -n {cluster.namespace} {name}   retry failed videos: "
                  f"argo retry -n {cluster.namespace} {name}", highlight=False, soft_wrap=True)


@app.command()
def plan(
    source: Path = typer.Argument(..., metavar="INPUT", help="A folder of videos (probed, never changed), or a "
                                                            "manifest.json written by discover."),
    gpus: int = typer.Option(..., min=1, help="GPUs, each running one anonymize pod at a time (--parallelism)."),
    fps: Optional[float] = typer.Option(None, min=0.001, help="Frames per second one GPU's pod anonymizes, "
                                                              "whatever the picture size."),
    from_bench: Optional[Path] = typer.Option(None, help="A benchmark's JSON instead of --fps: {\"fps\": 120}, "
                                                         "{\"fps\": {\"1920x1080\": 60, \"1280x720\": 140}}, or the "
                                                         "output of `python -m workflows bench --json`."),
    segment_seconds: int = typer.Option(DEFAULT_SEGMENT_SECONDS, min=0, help="The segment length to plan with "
                                                                             "(as given to run, render, submit)."),
    pod_seconds: float = typer.Option(10.0, min=0, help="Seconds each pod costs besides its frames: scheduling, "
                                                        "start, model load (an assumption: measure yours)."),
    join_mb_per_second: float = typer.Option(100.0, min=0.001, help="How fast a join copies a video (MB/s of the "
                                                                     "input's size), on the output volume."),
    video_deadline_seconds: int = typer.Option(VIDEO_DEADLINE_SECONDS, min=60,
                                               help="The pod deadline the workflow is rendered with (a longer pod "
                                                    "is stopped and fails)."),
) -> None:
    """Predict the job's time on GPUS GPUs: one pod per file against segments, and Argo's limits."""
    from workflows.plan import BenchError, Speed, load_items, plan_job, render

    if (fps is None) == (from_bench is None):
        console.print("[red]error:[/] give either --fps or --from-bench")
        raise typer.Exit(EXIT_USAGE)
    try:
        speed = Speed.constant(fps) if fps is not None else Speed.from_bench(from_bench)
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "video-anonymizer" / "probe.json"
        items = load_items(source, segment_seconds, cache)
    except (BenchError, OSError, ValueError) as exc:
        console.print(f"[red]error:[/] {one_sentence(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    if not items:
        console.print(f"[red]error:[/] no video in {source}")
        raise typer.Exit(EXIT_USAGE)
    typer.echo(render(plan_job(items, gpus, speed, segment_seconds, pod_seconds, join_mb_per_second,
                               video_deadline_seconds)), nl=False)


@app.command()
def lint(
    file: Optional[Path] = typer.Argument(None, help="A rendered workflow (YAML, several documents allowed) "
                                                     "[default: every built-in variant]."),
) -> None:
    """Check a workflow offline: Argo's JSON schema (strict) and its internal references."""
    from workflows.lint import lint_documents, load_documents

    if file is not None:
        try:
            targets = {str(file): load_documents(file)}
        except (OSError, ValueError) as exc:
            console.print(f"[red]error:[/] cannot read {escape(str(file))}: {escape(one_sentence(str(exc)))}")
            raise typer.Exit(EXIT_USAGE) from None
    else:
        targets = {f"built-in {label}": docs for label, docs in builtin_variants()}
    failed = False
    for label, docs in targets.items():
        checked = [d for d in docs if isinstance(d, dict) and d.get("kind") in ("Workflow", "WorkflowTemplate")]
        errors = lint_documents(checked)
        if not checked:
            errors = ["no Workflow or WorkflowTemplate in it"]
        failed = failed or bool(errors)
        status = "[red]FAILED[/]" if errors else "[green]ok[/]"
        console.print(f"{status} {label} ({len(checked)} workflow documents)", highlight=False, soft_wrap=True)
        for error in errors:
            console.print(f"  {error}", markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def builtin_variants():
    """(label, documents) for each rendered variant: GPU mode x volume kind x workflow kind."""
    import yaml

    for gpu in GpuMode:
        for volumes in ("pvc", "hostPath"):
            paths = {"input_host_path": "/data/videos", "output_host_path": "/data/anonymized"} if volumes != "pvc" \
                else {}
            artifact = gpu == GpuMode.none  # the summary as an output artifact, on one GPU mode's variants
            cluster = ClusterConfig(gpu_mode=gpu, summary_artifact=artifact, **paths)
            for kind in _KINDS.values():
                docs = list(yaml.safe_load_all(render_documents(cluster, Settings(), kind)))
                yield f"{kind} gpu={gpu.value} volumes={volumes}" + (" summary-artifact" if artifact else ""), docs


@app.command()
@with_settings_options
def bench(
    settings: Settings,
    clips: list[Path] = typer.Argument(..., help="Video files to measure (only read)."),
    json_output: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout (for machines)."),
    deface: bool = typer.Option(False, "--deface", help="Also run deface (default settings, --keep-audio) on each "
                                                        "clip, the open-source baseline, with each of its backends "
                                                        "(OpenCV, ONNX Runtime); the faster one is compared."),
    repeat: int = typer.Option(1, min=1, help="Measure each thing this many times and keep the fastest."),
    threads: int = typer.Option(0, envvar="ANON_THREADS", help="CPU threads for the detector and encoder (0: all)."),
    work_dir: Optional[Path] = typer.Option(None, exists=True, file_okay=False, writable=True,
                                            help="Where the outputs are written while measuring "
                                                 "[default: a temporary folder]; they are deleted."),
) -> None:
    """Frames per second of the anonymizer per clip, next to a plain ffmpeg transcode of it (and deface)."""
    import tempfile

    from rich.table import Table

    from workflows.bench import path_text, run_bench

    missing = [str(c) for c in clips if not c.is_file()]
    if missing:
        console.print(f"[red]error:[/] not a file: {', '.join(missing)}")
        raise typer.Exit(EXIT_USAGE)

    def show(result) -> None:
        if not json_output:
            console.print(f"measured {result.clip}: {result.fps} fps (floor {result.floor_fps} fps)")

    with tempfile.TemporaryDirectory(prefix="anonymizer-bench-", dir=work_dir) as folder:
        try:
            results = run_bench(clips, settings, Path(folder), threads=threads, repeat=repeat, deface=deface,
                                on_clip=show)
        except RuntimeError as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
    if json_output:
        typer.echo(results.to_json())
        return
    table = Table(title=f"{results.machine['cpu']} ({results.machine['cores']} cores)"
                        + (f", {results.machine['gpu']}" if results.machine.get("gpu") else ""))
    deface_columns = ("deface fps", "x deface", "x deface, process") if deface else ()
    for column in ("clip", "size", "frames", "fps", "floor fps", "ratio", *deface_columns, "CPU ms/frame", "peak MB"):
        table.add_column(column, justify="left" if column == "clip" else "right")
    # Where the time goes, per frame: each stage's busy time and its CPU time in its own thread, the rest of the
    # Python process's CPU (the model's worker threads...), and the CPU of the whole process tree by process.
    stages = Table(title="ms per frame: busy / CPU of each stage; CPU of the process tree")
    for column in ("clip", *STAGES, "other CPU", "python", "ffmpeg decoder", "ffmpeg encoder"):
        stages.add_column(column, justify="left" if column == "clip" else "right")
    for r in results.clips:
        row = [r.clip, f"{r.width}x{r.height}", str(r.frames), f"{r.fps:.1f}", f"{r.floor_fps:.1f}", f"{r.ratio:.2f}"]
        if deface:
            row += [f"{r.deface_fps:.1f}", f"{r.speedup_vs_deface:.1f}", f"{r.process_speedup_vs_deface:.1f}"]
        table.add_row(*row, f"{r.cpu_ms_per_frame['anonymizer']:.0f}", f"{r.anonymizer.peak_rss_mb:.0f}")
        per_frame = {f"{kind} {name}": f"{1000 * value / max(1, r.frames):.1f}"
                     for kind, seconds in (("busy", r.stage_seconds), ("cpu", r.stage_cpu_seconds),
                                           ("process", r.anonymizer.cpu_seconds))
                     for name, value in seconds.items()}
        stages.add_row(r.clip, *(f"{per_frame.get(f'busy {k}', '-')} / {per_frame.get(f'cpu {k}', '-')}"
                                 for k in STAGES), per_frame.get("cpu other", "-"),
                       *(per_frame.get(f"process {k}", "-") for k in ("python", "ffmpeg decoder", "ffmpeg encoder")))
    wide = Console(width=max(Console().width, 150))
    wide.print(table)
    wide.print(stages)
    for r in results.clips:
        console.print(f"{r.clip}: {path_text(r.path)}")
        if deface:
            backends = ", ".join(f"{b} {fps:.1f} fps" for b, fps in r.deface_fps_by_backend.items())
            console.print(f"{r.clip}: deface {backends}; compared with {r.deface_backend}")
    load = results.machine
    console.print(f"load average before {load['load_average_before']}, after {load['load_average_after']}")
