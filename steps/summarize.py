"""Step 3: gather the per-video reports into summary.json, summary.md and summary.html at the output root.

The manifest, not the set of reports found, decides the rows: every discovered video gets a
row, and a video without a report (its worker never ran or never finished) counts as failed,
so done + skipped + failed always equals discovered. The totals include what a cost estimate
needs: worker-seconds (GPU-seconds on a GPU worker) per hour of video.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import BaseModel

from steps.errors import AnonymizeError
from steps.fsutil import atomic_write_text, to_json
from steps.manifest import Manifest, manifest_path
from steps.outputs import write_outputs
from steps.report import VideoReport, now, report_path_for
from steps.summary_html import audit_text, to_html

SUMMARY_HTML = "summary.html"
NO_REPORT = ("no report: the anonymize step did not run for this video, or could not write its report "
             "(its log says why).")
UNFINISHED = "the anonymize step started but did not finish (its worker was stopped or killed)."


class Row(BaseModel):
    path: str
    status: str
    frames: Optional[int] = None
    faces: Optional[int] = None
    frames_with_faces: Optional[int] = None
    fps: Optional[float] = None
    seconds: Optional[float] = None
    duration: Optional[float] = None
    output: Optional[str] = None
    error: Optional[str] = None
    error_kind: Optional[str] = None
    #: Tries it took (1: no retry); None when no report says.
    attempts: Optional[int] = None
    #: Suspect frames the audit pass found in the output; None when no audit ran.
    audit_findings: Optional[int] = None
    #: cpu or gpu, when the report says which hardware ran it.
    device: Optional[str] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    thumbnails: Optional[str] = None
    #: The file listing every hidden box (steps.detections).
    detections: Optional[str] = None
    #: With --audit: suspect faces also found at the same place in the input and not hidden there (leaks,
    #: steps.audit), and the first times to look at.
    audit_leaks: Optional[int] = None
    audit_where: Optional[str] = None

    @property
    def retries(self) -> Optional[int]:
        return None if self.attempts is None else self.attempts - 1


class Summary(BaseModel):
    schema_version: int = 1
    created_at: str
    input_root: str
    output_root: str
    totals: dict[str, Any]
    rows: list[Row]
    ignored: list[dict[str, str]]

    @property
    def failed(self) -> int:
        return self.totals["failed"]


def row_for(path: str, report: Optional[VideoReport]) -> Row:
    if report is None:
        return Row(path=path, status="failed", error=NO_REPORT, error_kind="missing")
    if report.status == "running":
        return Row(path=path, status="failed", error=UNFINISHED, error_kind="transient")
    # Fields other parts of the system add to the report (the audit pass's count, the hardware
    # path: accel.gpu names the GPU the worker held) are read when present.
    audit = getattr(report, "audit_findings", None)
    accel = getattr(report, "accel", None) or {}
    device = ("gpu" if accel.get("gpu") else "cpu") if accel else None
    row = Row(path=path, status=report.status, frames=report.frames_out, faces=report.faces_hidden,
              frames_with_faces=report.frames_with_faces, fps=report.fps, seconds=report.wall_seconds,
              duration=report.video.get("duration"), output=report.output, error=report.error,
              error_kind=report.error_kind, attempts=report.attempt, audit_findings=audit,
              device=device, started_at=report.started_at, finished_at=report.finished_at,
              thumbnails=report.thumbnails, detections=report.detections)
    if report.audit is not None:
        row.audit_leaks = report.audit.leaks_left if not report.audit.error else None
        row.audit_where = report.audit.error or report.audit.where_to_look()
    return row


def _time(text: Optional[str]) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _per_video_hour(rows: list[Row]) -> Optional[float]:
    """Worker-seconds it took to anonymize one hour of video, over *rows* (done, with a duration)."""
    timed = [r for r in rows if r.seconds and r.duration]
    hours = sum(r.duration for r in timed) / 3600
    return round(sum(r.seconds for r in timed) / hours, 1) if hours else None


def summarize(manifest: Manifest, output_root: Path) -> Summary:
    rows = [row_for(item.path, VideoReport.load(report_path_for(output_root, item.path))) for item in manifest.items]
    counts = {status: sum(r.status == status for r in rows) for status in ("done", "skipped", "failed")}
    processed = [r for r in rows if r.status == "done"]
    frames = sum(r.frames or 0 for r in processed)
    seconds = sum(r.seconds or 0 for r in processed)
    # This run's wall-clock span: from the first start to the last finish of the videos it worked on
    # (a skipped video's report keeps the times of the run that did it).
    worked = [r for r in rows if r.status in ("done", "failed")]
    starts = [t for t in (_time(r.started_at) for r in worked) if t]
    ends = [t for t in (_time(r.finished_at) for r in worked) if t]
    elapsed = (max(ends) - min(starts)).total_seconds() if starts and ends else None
    audited = [r.audit_findings for r in rows if r.audit_findings is not None]
    totals = {
        "discovered": len(rows), **counts,
        "retried": sum(1 for r in rows if (r.attempts or 1) > 1),
        "frames": frames,
        "faces": sum(r.faces or 0 for r in processed),
        "video_hours": round(sum(r.duration or 0 for r in rows if r.status != "failed") / 3600, 4),
        "processed_video_hours": round(sum(r.duration or 0 for r in processed) / 3600, 4),
        "worker_seconds": round(seconds, 2),
        "fps_per_worker": round(frames / seconds, 2) if seconds else None,
        "elapsed_seconds": round(elapsed, 1) if elapsed is not None else None,
        "fps_overall": round(frames / elapsed, 2) if elapsed else None,
        "worker_seconds_per_video_hour": _per_video_hour(processed),
        "gpu_seconds_per_video_hour": _per_video_hour([r for r in processed if r.device == "gpu"]),
        "audit_findings": sum(audited) if audited else None,
        "ignored_files": len(manifest.ignored),
    }
    leaks = [r.audit_leaks for r in rows if r.audit_leaks is not None]
    if leaks:  # with the audit pass of steps.audit: suspect faces also found in the input
        totals["audit_leaks"] = sum(leaks)
    return Summary(created_at=now(), input_root=manifest.input_root, output_root=str(output_root), totals=totals,
                   rows=rows, ignored=[i.model_dump() for i in manifest.ignored])


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(summary: Summary) -> str:
    t = summary.totals
    lines = [
        "# Anonymization summary", "",
        f"{t['discovered']} videos discovered: **{t['done']} done**, {t['skipped']} skipped (already done), "
        f"**{t['failed']} failed**, {t['retried']} retried. {t['frames']} frames anonymized, {t['faces']} faces "
        f"hidden (a face in 10 frames counts 10), audit findings: {audit_text(t['audit_findings'])}.", "",
        f"Time: {t['elapsed_seconds']} s elapsed, {t['worker_seconds']} worker-seconds ({t['fps_per_worker']} "
        f"frames/s per worker, {t['fps_overall']} frames/s in all). Cost: {t['worker_seconds_per_video_hour']} "
        f"worker-seconds per hour of video (on GPU workers: {t['gpu_seconds_per_video_hour']}).", "",
        f"Input: `{summary.input_root}`  ", f"Output: `{summary.output_root}`  ", f"Written: {summary.created_at}", "",
        "| video | status | frames | faces | fps | seconds | retries | audit findings | error |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in summary.rows:
        lines.append(f"| {_cell(r.path)} | {r.status} | {_cell(r.frames)} | {_cell(r.faces)} | {_cell(r.fps)} | "
                     f"{_cell(r.seconds)} | {_cell(r.retries)} | {audit_text(r.audit_findings)} | "
                     f"{_cell(r.error)} |")
    suspects = [r for r in summary.rows if r.audit_where]
    if suspects:
        lines += ["", "## Audit: where an independent detector (MTCNN) still finds a face in the output", "",
                  f"{audit_text(t['audit_findings'])} in all, {t.get('audit_leaks', 0)} faces also found at the same "
                  "place in the input and not hidden (most likely left visible). Look at these times:", "",
                  "| video | suspect frames | in the input, not hidden | where to look |", "|---|---:|---:|---|"]
        lines += [f"| {_cell(r.path)} | {_cell(r.audit_findings)} | {_cell(r.audit_leaks)} | {_cell(r.audit_where)} |"
                  for r in suspects]
    if summary.ignored:
        lines += ["", f"## Files passed over ({len(summary.ignored)})", "", "| file | reason |", "|---|---|"]
        lines += [f"| {_cell(i['path'])} | {_cell(i['reason'])} |" for i in summary.ignored]
    return "\n".join(lines) + "\n"


def write_summary(summary: Summary, output_root: Path) -> None:
    atomic_write_text(output_root / "summary.json", to_json(summary.model_dump(mode="json")))
    atomic_write_text(output_root / "summary.md", to_markdown(summary))
    atomic_write_text(output_root / SUMMARY_HTML, to_html(summary))


def outcome_line(summary: Summary) -> str:
    """One sentence: what happened and where the report is (the Argo UI shows it as the step's result)."""
    t = summary.totals
    return (f"{t['discovered']} videos: {t['done']} done, {t['skipped']} skipped, {t['failed']} failed. "
            f"Report: {Path(summary.output_root) / SUMMARY_HTML} (also summary.md, summary.json).")


#: Totals handed to Argo as output parameters, for the summarize template's metrics.
METRIC_TOTALS = ("discovered", "done", "skipped", "failed", "retried", "frames", "processed_video_hours",
                 "worker_seconds", "worker_seconds_per_video_hour")


def run_summarize(output_root: Path, manifest: Optional[Path] = None) -> Summary:
    summary = summarize(Manifest.load(manifest_path(output_root, manifest)), output_root)
    write_summary(summary, output_root)
    return summary


def main(
    output_root: Path = typer.Argument(..., envvar="OUTPUT", help="The run's output folder."),
    manifest: Optional[Path] = typer.Option(None, help="The manifest [default: OUTPUT_ROOT/manifest.json]."),
    fail_on_failed: bool = typer.Option(True, help="Exit with code 1 when any video failed."),
    argo_outputs: Optional[Path] = typer.Option(None, help="Folder for Argo's output parameters (summary, done, "
                                                           "failed, frames...): the workflow's metrics and message."),
) -> None:
    """Gather the per-video reports into summary.json, summary.md and summary.html."""
    try:
        summary = run_summarize(output_root, manifest)
    except AnonymizeError as exc:  # the summary cannot be written (a full or read-only volume)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise typer.Exit(exc.exit_code) from None
    t = summary.totals
    line = outcome_line(summary)
    print(line, file=sys.stdout, flush=True)  # the step's printed result, shown by the Argo UI
    write_outputs(argo_outputs, {"summary": line, **{name.replace("_", "-"): 0 if t[name] is None else t[name]
                                                     for name in METRIC_TOTALS}})
    if fail_on_failed and summary.failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
