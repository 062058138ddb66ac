"""Step 2: anonymize one video, atomically, and write its report.

Two ways to name the video: an input and an output file (``--input``/``--output``), or an
item of a manifest (``--manifest``/``--index``, what each Argo pod and each local worker
runs). Either way the output appears complete or not at all, the input is only read, and
the report beside the output says what happened. The exit code classifies failures for
retries (see steps.errors).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from steps import accel, engine
from steps.audit import AuditResult, SecondPass, audit, audit_line, leak_boxes
from steps.containers import SEGMENT, Container, carries, container_for, output_name
from steps.detections import SUFFIX as DETECTIONS_SUFFIX
from steps.detections import DetectionsWriter
from steps.detectors import Detector, load
from steps.errors import (
    EXIT_OK,
    EXIT_PERMANENT,
    EXIT_USAGE,
    AnonymizeError,
    PermanentError,
    TransientError,
    one_sentence,
)
from steps.ffio import count_video_packets
from steps.fidelity import changes
from steps.fsutil import (
    fingerprint,
    is_within,
    partial_path,
    printable,
    raise_for_os_error,
    remove_quietly,
    stale_partials,
)
from steps.join import describe, join_when_complete
from steps.manifest import Manifest
from steps.outputs import write_outputs
from steps.probe import MediaInfo, check_readable, probe
from steps.progress import StepProgress
from steps.report import InputFacts, SegmentFacts, VideoReport, now, report_path_for, sibling_path
from steps.segments import Span, parse_work_item, segment_file, segment_folder, segment_report, spans
from steps.settings import Settings, with_settings_options
from steps.thumbnails import FaceFrameSampler, thumbnails_path_for

Progress = engine.Progress


@lru_cache(maxsize=2)
def _detector(settings: Settings, threads: int) -> Detector:
    """One detector per process and settings: loading a model costs more than a short video."""
    return load(settings, threads=threads)


def anonymize_file(source: Path, output: Path, report_path: Path, settings: Settings, *, force: bool = False,
                   threads: int = 0, input_root: Optional[Path] = None, choose_container: bool = False,
                   display_path: Optional[str] = None, attempt: int = 1,
                   progress: Optional[Progress] = None, span: Optional[Span] = None) -> VideoReport:
    """Anonymize *source* into *output*; always write and return the report (status done/skipped/failed).

    With *choose_container*, the output may gain ``.mkv`` when its container cannot carry the
    input's audio unchanged (see steps.containers); otherwise *output*'s name is used as given.
    *attempt* (1, 2...) is recorded in the report: Argo and the local runner say which try this is.
    Beside the output, a strip of a few of its frames with faces (see steps.thumbnails).
    With a *span*, only that segment of the video is anonymized, into a video-only segment file
    (steps.segments; steps.join makes the video out of all of them).
    """
    started, clock = now(), time.monotonic()
    segment = SegmentFacts(index=span.index, count=span.count, start=span.start, end=span.end) if span else None
    audit_seconds = 0.0
    report = VideoReport(status="failed", input=InputFacts(path=display_path or str(source)), started_at=started,
                         settings=settings.model_dump(mode="json"), settings_digest=settings.digest(),
                         attempt=attempt, segment=segment)
    try:
        if (input_root is not None and is_within(output, input_root)) or _same_file(source, output):
            raise PermanentError("the output would be written into the input tree; choose another output folder")
        if input_root is not None and not is_within(source, input_root):
            raise PermanentError(f"the input {source.name!r} now leads out of the input folder (a symbolic link "
                                 "replaced it after discovery); it is not read")
        report.input.size = check_readable(source)
        report.input.fingerprint = fingerprint(source)
        previous = None if force else VideoReport.load(report_path)
        if previous is not None and previous.matches(report.input.fingerprint, report.settings_digest, segment):
            skipped = previous.skipped().model_copy(update={"attempt": attempt})
            skipped.save(report_path)
            return skipped
        info = probe(source)
        report.video = info.summary()
        if span is not None:
            container = SEGMENT
        elif choose_container:
            name, container = output_name(output.name, info)
            output = output.with_name(name)
        else:
            container = container_for(output.name)
            if container is None:
                raise PermanentError(f"the output name {output.name!r} has no video container extension "
                                     "(use .mp4, .mov, .mkv, .ts or .avi)")
            if not carries(container, info):
                raise PermanentError(f"{output.suffix} cannot carry this video's audio "
                                     f"({', '.join(info.summary()['audio_codecs'])}) unchanged; use .mkv")
        report.changes = changes(info, container)
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            for stale in stale_partials(output):
                remove_quietly(stale)
        except OSError as exc:
            raise_for_os_error(exc, f"preparing the output folder for {output.name!r}")
        detector = _detector(settings, threads)
        report.detector = detector.describe()
        video_path = accel.video_path()
        report.accel = accel.describe()
        # Marks the video as in progress: if this process is killed, the summary will not
        # mistake an older report for this run's result.
        report.model_copy(update={"status": "running"}).save(report_path)
        write = partial(_write_video, info, container=container, settings=settings, detector=detector,
                        report_path=report_path, threads=threads, span=span, video_path=video_path)
        written = write(output, progress=progress)
        output = written.output
        report = report.model_copy(update={"status": "done", **written.facts(span)})
        if written.stats.batch_after_oom:
            report.note = (f"the detector ran out of memory with {settings.batch} frames per batch; it went on with "
                           f"{written.stats.batch_after_oom}")
        if settings.audit and output is not None:
            report.audit = run_audit(source, output, settings.audit_every, span)
            report.audit_findings = None if report.audit.error else report.audit.suspect_frames
            if settings.audit_hide and report.audit.leaks and not report.audit.error:
                again = _hide_leaks(report.audit, source, output, written.stats.frames, settings, write, span)
                if again is not None:
                    report = report.model_copy(update=again.facts(span))
            audit_seconds = report.audit.seconds + (report.audit.second_pass.seconds
                                                    if report.audit.second_pass else 0.0)
    except Exception as exc:  # noqa: BLE001 - a failure, or a bug, must still leave a report
        report.record_failure(exc, f"anonymizing {source.name!r}")
    elapsed = time.monotonic() - clock
    report.finished_at, report.wall_seconds = now(), round(elapsed, 3)
    if report.status == "done" and report.frames_out:  # the anonymization's speed, without the audit
        working = elapsed - audit_seconds
        report.fps = round(report.frames_out / working, 2) if working > 0 else None
    save_final_report(report, report_path)
    return report


@dataclass
class _Written:
    """A video written by :func:`_write_video`."""

    stats: engine.Stats
    sampler: FaceFrameSampler
    output: Optional[Path]  # None: a segment without frames (a gap in the video), no file
    frames_out: int
    detections: Path

    def facts(self, span: Optional[Span]) -> dict:
        """The report's fields about it."""
        stats = self.stats
        return {
            "output": str(self.output) if self.output else None, "frames_in": stats.frames,
            "frames_out": self.frames_out,
            # A segment's frames reach the video only at the join: no strip of its own.
            "thumbnails": _write_thumbnails(self.sampler, self.output) if self.output and span is None else None,
            "frames_with_faces": stats.frames_with_faces, "faces_detected": stats.faces,
            "boxes_hidden": stats.boxes_hidden, "tracks": stats.tracks, "detections": str(self.detections),
            "stage_seconds": {k: round(v, 3) for k, v in stats.seconds.items()},
            "stage_cpu_seconds": {k: round(v, 3) for k, v in stats.cpu_seconds.items()},
        }


def _write_video(info: MediaInfo, output: Path, *, container: Container, settings: Settings, detector: Detector,
                 report_path: Path, threads: int, span: Optional[Span], video_path: accel.VideoPath,
                 progress: Optional[Progress] = None, extra: Optional[dict[int, np.ndarray]] = None) -> _Written:
    """Anonymize *info*'s video into *output* (see steps.engine) through a temporary file that replaces
    it only once complete and checked, its detections file beside *report_path*; *extra* boxes are
    hidden too (the audit's second pass)."""
    tmp = partial_path(output)
    sampler = FaceFrameSampler()
    detections = DetectionsWriter(sibling_path(report_path, DETECTIONS_SUFFIX))
    try:
        stats = engine.run(info, tmp, container, settings, detector, threads=threads, progress=progress,
                           name=output.name, on_frame=sampler, detections=detections, span=span,
                           video_path=video_path, extra=extra)
        declared = info.video.nb_frames
        if span is None and declared and stats.frames < declared:
            raise PermanentError(f"only {stats.frames} of the {declared} frames {info.path.name!r} declares could "
                                 "be decoded: the file is truncated or damaged")
        if stats.frames == 0 and span is not None:
            return _Written(stats, sampler, None, 0, detections.commit())
        frames_out = count_video_packets(tmp)
        if frames_out != stats.frames:
            raise TransientError(f"the encoded video has {frames_out} frames instead of {stats.frames}")
        os.replace(tmp, output)
        return _Written(stats, sampler, output, frames_out, detections.commit())
    except BaseException:
        detections.discard()
        raise
    finally:
        remove_quietly(tmp)


def _hide_leaks(result: AuditResult, source: Path, output: Path, frames: int, settings: Settings,
                write: Callable[..., _Written], span: Optional[Span]) -> Optional[_Written]:
    """The audit's second pass (see steps.audit): *output* written again from *source* with *result*'s
    leaks hidden too, then those frames audited again. Recorded in ``result.second_pass``; a failure
    leaves the first output in place and is recorded there, never undoing the video."""
    started = time.monotonic()
    extra = {i: boxes for i, boxes in leak_boxes(result, settings.pre_roll, settings.post_roll).items() if i < frames}
    second = result.second_pass = SecondPass(boxes=sum(len(b) for b in extra.values()), frames=len(extra))
    written = None
    try:
        written = write(output, extra=extra)
        second.leaks_left = audit(source, output, only=set(extra), span=span).leaks
    except Exception as exc:  # noqa: BLE001 - the first output stands; say why it was not improved
        second.error = one_sentence(f"the second pass could not run: {exc}")
    second.seconds = round(time.monotonic() - started, 3)
    return written


def save_final_report(report: VideoReport, path: Path) -> None:
    """Write the report, or raise one classified sentence saying it could not be, and what became of the video.

    A report that cannot be written (an output folder that is not writable, a full volume) leaves
    only the exit code and stderr to tell what happened: the message carries both failures, and
    the exit code is the video's own when it failed permanently (retrying would not help), else
    the report's (a full volume is worth another try).
    """
    try:
        report.save(path)
    except AnonymizeError as exc:
        message = f"{str(exc).rstrip('.')}, so there is no report"
        if report.status != "failed":
            message += f"; the video itself was {report.status}"
        elif report.error and report.error != one_sentence(str(exc)):
            message += f"; the video failed: {report.error}"
        cls = PermanentError if report.exit_code == EXIT_PERMANENT else type(exc)
        raise cls(one_sentence(message)) from exc


def _write_thumbnails(sampler: FaceFrameSampler, output: Path) -> Optional[str]:
    """The strip's path, or None (no face, or it could not be written: a courtesy, never a failure)."""
    path = thumbnails_path_for(output)
    try:
        if sampler.write_strip(path) is not None:
            return str(path)
        remove_quietly(path)  # an earlier run's strip would show frames this output does not have
    except OSError:
        pass
    return None


def run_audit(source: Path, output: Path, every: int, span: Optional[Span] = None) -> AuditResult:
    """The audit of a finished output (or segment); its failure is recorded, it never undoes the anonymized video."""
    started = time.monotonic()
    try:
        return audit(source, output, every, span=span)
    except Exception as exc:  # noqa: BLE001 - the video is done; say why the audit is missing
        return AuditResult(every=every, error=one_sentence(f"the audit could not run: {exc}"),
                           seconds=round(time.monotonic() - started, 3))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def anonymize_item(manifest: Manifest, index: int, input_root: Path, output_root: Path, settings: Settings,
                   segment: Optional[int] = None, **options) -> VideoReport:
    """Anonymize item *index* of *manifest*: ``input_root/path`` -> ``output_root/path``; or only its
    *segment* (of those its cut times make), into the video's segment folder."""
    item = manifest.item(index)
    if segment is None:
        output, report_path = output_root / item.path, report_path_for(output_root, item.path)
        if not (is_within(output, output_root) and is_within(report_path, output_root)):
            # Only a symbolic link inside the output tree can do this (the manifest's paths are plain):
            # nothing is written, not even a report, and main() says why.
            raise PermanentError(f"the output of {item.path!r} would land outside the output folder (through a "
                                 "symbolic link in it); nothing was written")
        return anonymize_file(input_root / item.path, output, report_path, settings, input_root=input_root,
                              choose_container=True, display_path=item.path, **options)
    parts = spans(item.cuts)
    if not 0 <= segment < len(parts):
        raise IndexError(f"item {index} ({item.path!r}) has {len(parts)} segments; there is no segment {segment}")
    folder = segment_folder(output_root, item.path)
    segment_output, report_path = segment_file(folder, segment), segment_report(folder, segment)
    if not (is_within(segment_output, output_root) and is_within(report_path, output_root)):
        raise PermanentError(f"the segments of {item.path!r} would land outside the output folder (through a "
                             "symbolic link in it); nothing was written")
    return anonymize_file(input_root / item.path, segment_output, report_path, settings, input_root=input_root,
                          display_path=item.path, span=parts[segment], **options)


def _terminate_on_sigterm() -> None:
    """Turn SIGTERM (a pod being stopped) into an exception, so temporary files are removed."""

    def handler(signum: int, frame: object) -> None:
        raise TransientError("stopped by SIGTERM before finishing")

    signal.signal(signal.SIGTERM, handler)


@with_settings_options
def main(
    settings: Settings,
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="One video to anonymize."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write it (with --input)."),
    manifest: Optional[Path] = typer.Option(None, help="A manifest written by discover (with --index)."),
    index: Optional[str] = typer.Option(None, help="Which manifest item to anonymize (0-based), or which segment "
                                                   "of it as INDEX:SEGMENT (a fan-out item, see steps.segments)."),
    input_root: Optional[Path] = typer.Option(None, envvar="INPUT", help="Input root [default: the manifest's]."),
    output_root: Optional[Path] = typer.Option(None, envvar="OUTPUT",
                                               help="Output root [default: the manifest's folder]."),
    force: bool = typer.Option(False, "--force", help="Redo the video even if its report says it is done."),
    threads: int = typer.Option(0, envvar="ANON_THREADS", help="CPU threads for the detector and encoder (0: all)."),
    previous_attempts: int = typer.Option(0, min=0, envvar="ANON_PREVIOUS_ATTEMPTS",
                                          help="How many times this video was tried before (Argo passes "
                                               "{{retries}}); recorded in the report."),
    argo_outputs: Optional[Path] = typer.Option(None, help="Folder for Argo's output parameters (frames, "
                                                           "video-seconds, result): the workflow's metrics."),
) -> None:
    """Anonymize one video: every face in every frame hidden, audio and timing kept."""
    _terminate_on_sigterm()
    attempt = previous_attempts + 1
    try:
        if input is not None and output is not None and manifest is None and index is None:
            progress = StepProgress(printable(input.name))
            report = anonymize_file(input, output, output.with_name(output.name + ".report.json"), settings,
                                    force=force, threads=threads, attempt=attempt, progress=progress)
        elif manifest is not None and index is not None and input is None and output is None:
            try:
                loaded = Manifest.load(manifest)
                item, segment = parse_work_item(index)
                if segment is not None and not 0 <= segment < len(loaded.item(item).cuts) + 1:
                    raise IndexError(f"item {item} has {len(loaded.item(item).cuts) + 1} segments, "
                                     f"not {segment + 1}")
                path = loaded.item(item).path
            except (OSError, ValueError, IndexError) as exc:
                typer.echo(f"error: cannot use manifest {str(manifest)!r}: {one_sentence(str(exc))}", err=True)
                raise typer.Exit(EXIT_USAGE) from None
            name = printable(path)
            if segment is not None:
                name += f" [segment {segment + 1}/{len(loaded.item(item).cuts) + 1}]"
            roots = (input_root or Path(loaded.input_root), output_root or manifest.parent)
            progress = StepProgress(name)
            report = anonymize_item(loaded, item, *roots, settings, segment=segment, force=force, threads=threads,
                                    attempt=attempt, progress=progress)
            if segment is not None and report.status in ("done", "skipped"):  # the last segment done joins
                joined = join_when_complete(loaded, item, *roots, settings, report.input.fingerprint, force=force)
                if joined is not None:
                    typer.echo(describe(joined), err=True)
        else:
            typer.echo("error: give either --input and --output, or --manifest and --index", err=True)
            raise typer.Exit(EXIT_USAGE)
    except AnonymizeError as exc:  # no report could be written (see save_final_report): say it here
        write_outputs(argo_outputs, {"frames": "0", "video-seconds": "0.000", "result": "failed"})
        typer.echo(f"failed: {one_sentence(str(exc))}", err=True)
        raise typer.Exit(exc.exit_code) from None
    if report.status == "done":
        progress.finish(report.frames_out or 0)
    write_outputs(argo_outputs, metric_values(report))
    line = f"{report.status}: {printable(report.input.path)}"
    if report.segment is not None:
        line += f" [segment {report.segment.index + 1}/{report.segment.count}]"
    if report.status == "failed":
        line += f": {report.error}"
    elif report.fps:
        line += f" ({report.frames_out} frames, {report.fps} fps, {report.faces_hidden} faces hidden)"
    if report.audit is not None:
        line += f"; audit: {audit_line(report.audit)}"
    typer.echo(line, err=True)
    raise typer.Exit(report.exit_code if report.status == "failed" else EXIT_OK)


def metric_values(report: VideoReport) -> dict[str, str]:
    """The anonymize template's output parameters: work done by this pod (a skipped video did none)."""
    done = report.status == "done"
    seconds = report.video.get("duration") if done else None
    return {"frames": str(report.frames_out or 0) if done else "0", "video-seconds": f"{seconds or 0:.3f}",
            "result": report.status}


if __name__ == "__main__":
    typer.run(main)
