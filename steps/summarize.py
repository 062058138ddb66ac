"""Step 3: gather the per-video reports into summary.json and summary.md at the output root.

The manifest, not the set of reports found, decides the rows: every discovered video gets a
row, and a video without a report (its worker never ran or never finished) counts as failed,
so done + skipped + failed always equals discovered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import BaseModel

from steps.fsutil import atomic_write_text
from steps.manifest import Manifest, manifest_path
from steps.report import VideoReport, now, report_path_for

NO_REPORT = "no report: the anonymize step did not run for this video."
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
    return Row(path=path, status=report.status, frames=report.frames_out, faces=report.faces_detected,
               frames_with_faces=report.frames_with_faces, fps=report.fps, seconds=report.wall_seconds,
               duration=report.video.get("duration"), output=report.output, error=report.error,
               error_kind=report.error_kind)


def summarize(manifest: Manifest, output_root: Path) -> Summary:
    rows = [row_for(item.path, VideoReport.load(report_path_for(output_root, item.path))) for item in manifest.items]
    counts = {status: sum(r.status == status for r in rows) for status in ("done", "skipped", "failed")}
    processed = [r for r in rows if r.status == "done"]
    frames = sum(r.frames or 0 for r in processed)
    seconds = sum(r.seconds or 0 for r in processed)
    totals = {
        "discovered": len(rows), **counts,
        "frames": frames,
        "faces": sum(r.faces or 0 for r in processed),
        "video_hours": round(sum(r.duration or 0 for r in rows if r.status != "failed") / 3600, 4),
        "worker_seconds": round(seconds, 2),
        "fps_per_worker": round(frames / seconds, 2) if seconds else None,
        "ignored_files": len(manifest.ignored),
    }
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
        f"**{t['failed']} failed**. {t['frames']} frames anonymized, {t['faces']} face detections, "
        f"{t['worker_seconds']} worker-seconds ({t['fps_per_worker']} frames/s per worker).", "",
        f"Input: `{summary.input_root}`  ", f"Output: `{summary.output_root}`  ", f"Written: {summary.created_at}", "",
        "| video | status | frames | faces | fps | seconds | error |", "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in summary.rows:
        lines.append(f"| {_cell(r.path)} | {r.status} | {_cell(r.frames)} | {_cell(r.faces)} | {_cell(r.fps)} | "
                     f"{_cell(r.seconds)} | {_cell(r.error)} |")
    if summary.ignored:
        lines += ["", f"## Files passed over ({len(summary.ignored)})", "", "| file | reason |", "|---|---|"]
        lines += [f"| {_cell(i['path'])} | {_cell(i['reason'])} |" for i in summary.ignored]
    return "\n".join(lines) + "\n"


def write_summary(summary: Summary, output_root: Path) -> None:
    atomic_write_text(output_root / "summary.json", json.dumps(summary.model_dump(mode="json"), indent=2) + "\n")
    atomic_write_text(output_root / "summary.md", to_markdown(summary))


def run_summarize(output_root: Path, manifest: Optional[Path] = None) -> Summary:
    summary = summarize(Manifest.load(manifest_path(output_root, manifest)), output_root)
    write_summary(summary, output_root)
    return summary


def main(
    output_root: Path = typer.Argument(..., envvar="OUTPUT", help="The run's output folder."),
    manifest: Optional[Path] = typer.Option(None, help="The manifest [default: OUTPUT_ROOT/manifest.json]."),
    fail_on_failed: bool = typer.Option(True, help="Exit with code 1 when any video failed."),
) -> None:
    """Gather the per-video reports into summary.json and summary.md."""
    summary = run_summarize(output_root, manifest)
    t = summary.totals
    typer.echo(f"{t['discovered']} discovered: {t['done']} done, {t['skipped']} skipped, {t['failed']} failed",
               err=True)
    if fail_on_failed and summary.failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
