"""``python -m workflows``: the command line people use."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from steps.anonymize import anonymize_file
from steps.errors import EXIT_USAGE, one_sentence
from steps.fsutil import atomic_write_text
from steps.settings import Settings, with_settings_options
from workflows.argo import ClusterConfig, GpuMode, build, render_documents, with_cluster_options
from workflows.local import LocalRunner, default_workers

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
    workers: int = typer.Option(default_workers(), help="Videos anonymized at the same time."),
    force: bool = typer.Option(False, "--force", help="Redo videos already done with the same input and settings."),
    retries: int = typer.Option(1, help="Extra attempts for a video that failed in a way worth retrying."),
) -> None:
    """Anonymize every video under INPUT_DIR into OUTPUT_DIR on this machine (discover, anonymize, summarize)."""
    runner = LocalRunner(input_dir, output_dir, settings, workers=workers, force=force, retries=retries,
                         console=console)
    try:
        summary = runner.run()
    except (ValueError, NotADirectoryError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    t = summary.totals
    console.print(f"[bold]{t['discovered']}[/] videos: [green]{t['done']} done[/], {t['skipped']} skipped, "
                  f"[red]{t['failed']} failed[/]. Report: {output_dir / 'summary.html'}")
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

        result = anonymize_file(input_file, output_file, report_path, settings, force=force, progress=progress)
    if result.status == "failed":
        console.print(f"[red]failed:[/] {result.error}")
        raise typer.Exit(result.exit_code)
    console.print(f"[green]{result.status}[/]: {result.output} ({result.frames_out} frames, "
                  f"{result.faces_detected} faces, {result.fps} fps). Report: {report_path}")


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
        console.print(f"wrote {out}")


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
            console.print(f"[red]error:[/] cannot read {file}: {one_sentence(str(exc))}")
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
