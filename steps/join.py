"""Join the anonymized segments of a long video into its output, without re-encoding (steps.segments).

Each segment is a video-only NUT file whose packets keep the input's timestamps. Their
packets are copied, in order, through a pipe into ffmpeg, which muxes them with the
original's audio and subtitle streams (copied once, whole, uncut), metadata and chapters,
exactly as a video anonymized in one piece is written (steps.ffio.Encoder). NUT stores no
decoding timestamps: every packet goes out without one and the muxer derives them from the
presentation timestamps and the stream's reordering delay, continuously across segments.

The joined file is written under a temporary name and checked (frame count against the
segments' and the input's, duration against the input's) before it replaces anything; the
segments are removed only then. Like anonymize, the step is idempotent: a video whose report
already matches its input and settings is skipped.

Who joins: the worker that finishes a video's last segment, at once (join_when_complete; an
exclusive lock file settles a tie between two workers finishing together), so no extra pod
is started and the video appears while the rest of the fan-out runs. The join step after the
fan-out (``python -m steps.join --manifest M``, one pod) joins whatever is left: a worker that
died while joining, a segment redone by ``argo retry``, or a failed segment, whose error then
becomes the video's.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import av
import typer

from steps.audit import joined as joined_audit
from steps.containers import Container, output_name
from steps.detections import SUFFIX as DETECTIONS_SUFFIX
from steps.detections import DetectionsWriter
from steps.errors import (
    EXIT_OK,
    EXIT_PERMANENT,
    EXIT_USAGE,
    AnonymizeError,
    PermanentError,
    TransientError,
    one_sentence,
    should_retry,
)
from steps.ffio import Encoder, EncoderSettings, count_video_packets
from steps.fsutil import fingerprint, partial_path, raise_for_os_error, remove_quietly, stale_partials
from steps.manifest import Manifest
from steps.probe import MediaInfo, check_readable, ffmpeg_url, probe
from steps.report import InputFacts, SegmentFacts, VideoReport, now, report_path_for, sibling_path
from steps.segments import segment_folder, segment_report, spans
from steps.settings import Settings, with_settings_options

#: Videos the join step joins at the same time (the work is copying: the output volume sets the pace).
JOIN_THREADS = 4
LOCK_NAME = "join.lock"


class CannotJoin(AnonymizeError):
    """A segment is missing, failed or stale. Joining again cannot help (exit code 3: Argo does not retry
    it); running the work again can (``argo retry`` re-runs the failed segments, then this join)."""

    exit_code = EXIT_PERMANENT

    def __init__(self, message: str, kind: str = "transient"):
        super().__init__(message)
        self.kind = kind


def join_files(info: MediaInfo, parts: list[Path], output: Path, container: Container, name: str = "") -> int:
    """Copy the video packets of *parts*, in order, and *info*'s own audio into *output*; return the packets."""
    with av.open(ffmpeg_url(parts[0])) as first:
        template = first.streams.video[0]
        encoder = Encoder(info, output, container, template.width, template.height, template.time_base,
                          template.average_rate, EncoderSettings(codec="copy"), name or output.name,
                          template=template)
    try:
        last_pts = None
        for number, part in enumerate(parts, start=1):
            with av.open(ffmpeg_url(part)) as segment:
                stream = segment.streams.video[0]
                if stream.codec_context.extradata != template.codec_context.extradata:
                    raise CannotJoin(f"segment {number} of {name!r} was encoded with other codec parameters than "
                                     "the first one: anonymize its segments again (--force)")
                first = True
                for packet in segment.demux(stream):
                    if packet.size == 0:
                        continue
                    if first and last_pts is not None and packet.pts <= last_pts:
                        raise CannotJoin(f"segment {number} of {name!r} does not start after the one before it")
                    first = False
                    packet.dts = None  # the muxer derives it across segments (see the module's docstring)
                    encoder.write_packet(packet)
                    last_pts = packet.pts if last_pts is None else max(last_pts, packet.pts)
        encoder.finish()
    except BaseException:
        encoder.kill()
        raise
    return encoder.frames


def join_item(manifest: Manifest, index: int, input_root: Path, output_root: Path, settings: Settings,
              force: bool = False) -> VideoReport:
    """Join the segments of item *index* into ``output_root/path``; always write and return the video's report."""
    item = manifest.item(index)
    source, output = input_root / item.path, output_root / item.path
    report_path, folder = report_path_for(output_root, item.path), segment_folder(output_root, item.path)
    clock = time.monotonic()
    report = VideoReport(status="failed", input=InputFacts(path=item.path), started_at=now(),
                         settings=settings.model_dump(mode="json"), settings_digest=settings.digest())
    tmp: Optional[Path] = None
    try:
        report.input.size = check_readable(source)
        report.input.fingerprint = fingerprint(source)
        previous = None if force else VideoReport.load(report_path)
        if previous is not None and previous.matches(report.input.fingerprint, report.settings_digest):
            shutil.rmtree(folder, ignore_errors=True)  # segments redone since (--force) are not needed
            return previous  # joined already (by the worker of its last segment, or an earlier run)
        parts = _segment_reports(item.path, item.cuts, folder, report.input.fingerprint, report.settings_digest)
        info = probe(source)
        report.video = info.summary()
        name, container = output_name(output.name, info)
        output = output.with_name(name)
        try:
            for stale in stale_partials(output):
                remove_quietly(stale)
        except OSError as exc:
            raise_for_os_error(exc, f"preparing the output folder for {output.name!r}")
        tmp = partial_path(output)
        files = [Path(part.output) for part in parts if part.frames_out]
        if not files:
            raise PermanentError(f"{source.name!r} holds no decodable video frame")
        frames = join_files(info, files, tmp, container, output.name)
        _check(info, tmp, frames, sum(part.frames_out or 0 for part in parts), source.name)
        offsets = [sum(p.frames_out or 0 for p in parts[:k]) for k in range(len(parts))]  # frames before each
        detections = _joined_detections(parts, offsets, folder, sibling_path(report_path, DETECTIONS_SUFFIX))
        os.replace(tmp, output)
        tmp = None
        detections_path = detections.commit()
        # The anonymization's own time (a segment's fps leaves out its audit), as for a video in one piece.
        seconds = sum((part.frames_out or 0) / part.fps for part in parts if part.fps)
        video_audit = joined_audit([(part.audit, offset) for part, offset in zip(parts, offsets)])
        report = report.model_copy(update={
            "status": "done", "output": str(output), "segments": len(parts), "detector": parts[0].detector,
            "frames_in": sum(part.frames_in or 0 for part in parts), "frames_out": frames,
            "frames_with_faces": sum(part.frames_with_faces or 0 for part in parts),
            "faces_detected": sum(part.faces_detected or 0 for part in parts),
            "boxes_hidden": sum(part.faces_hidden or 0 for part in parts),
            "stage_seconds": _summed([part.stage_seconds for part in parts]),
            "stage_cpu_seconds": _summed([part.stage_cpu_seconds for part in parts]),
            "fps": round(frames / seconds, 2) if seconds else None, "detections": str(detections_path),
            "audit": video_audit,
            "audit_findings": None if video_audit is None or video_audit.error else video_audit.suspect_frames,
            "note": f"anonymized in {len(parts)} segments, joined without re-encoding",
        })
    except Exception as exc:  # noqa: BLE001 - a failure, or a bug, must still leave a report
        report.record_failure(exc, f"joining {source.name!r}")
    finally:
        remove_quietly(tmp)
    join_seconds = time.monotonic() - clock
    # The video's work: its segments' worker time and this join's.
    report.wall_seconds = round(join_seconds + sum(p.wall_seconds or 0 for p in _loaded(folder, item.cuts)), 3)
    report.finished_at = now()
    report.save(report_path)
    if report.status == "done":
        shutil.rmtree(folder, ignore_errors=True)
    return report


def join_when_complete(manifest: Manifest, index: int, input_root: Path, output_root: Path, settings: Settings,
                       input_fingerprint: str, force: bool = False) -> Optional[VideoReport]:
    """Join item *index* if every one of its segments is done (this worker finished the last one) and no
    other worker is joining it; the video's report, or None when it is not this worker's to join."""
    item = manifest.item(index)
    folder = segment_folder(output_root, item.path)
    try:
        _segment_reports(item.path, item.cuts, folder, input_fingerprint, settings.digest())
    except AnonymizeError:
        return None  # not all done yet: the worker of the last one joins
    try:
        os.close(os.open(folder / LOCK_NAME, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except OSError:
        return None  # another worker finished at the same time and joins (or the join step will)
    try:
        return join_item(manifest, index, input_root, output_root, settings, force=force)
    finally:
        remove_quietly(folder / LOCK_NAME)


def join_all(manifest: Manifest, input_root: Path, output_root: Path, settings: Settings,
             force: bool = False) -> list[VideoReport]:
    """Join every video of *manifest* cut into segments that is not joined yet (the step after the fan-out);
    the reports of those it joined or failed to join."""

    def left(index: int) -> bool:
        item = manifest.items[index]
        report = VideoReport.load(report_path_for(output_root, item.path))
        if force or report is None or report.status not in ("done", "skipped"):
            return True
        try:
            return not report.matches(fingerprint(input_root / item.path), settings.digest())
        except OSError:
            return True  # join_item says why

    with ThreadPoolExecutor(JOIN_THREADS) as pool:
        indices = [i for i, item in enumerate(manifest.items) if item.cuts]
        todo = [i for i, needed in zip(indices, pool.map(left, indices)) if needed]
        return list(pool.map(lambda i: join_item(manifest, i, input_root, output_root, settings, force=force), todo))


def _summed(parts: list[dict[str, float]]) -> dict[str, float]:
    """The segments' stage times, added up stage by stage."""
    total: dict[str, float] = {}
    for part in parts:
        for stage, value in part.items():
            total[stage] = round(total.get(stage, 0.0) + value, 3)
    return total


def _joined_detections(parts: list[VideoReport], offsets: list[int], folder: Path, path: Path) -> DetectionsWriter:
    """The video's detections file made of its segments' (steps.detections), each segment's frames
    numbered from the video's first (*offsets*: the frames before each); written to its temporary file,
    for the caller to commit."""
    writer = DetectionsWriter(path)
    try:
        for part, offset in zip(parts, offsets):
            own = sibling_path(segment_report(folder, part.segment.index), DETECTIONS_SUFFIX)
            if own.is_file():  # a segment without frames has none
                writer.append(own, offset)
    except BaseException:
        writer.discard()
        raise
    return writer


def _loaded(folder: Path, cuts: list[float]) -> list[VideoReport]:
    return [r for r in (VideoReport.load(segment_report(folder, s.index)) for s in spans(cuts)) if r is not None]


def _segment_reports(path: str, cuts: list[float], folder: Path, fingerprint_: str, digest: str) -> list[VideoReport]:
    """Every segment's report, done with this input and these settings; else why the video cannot be joined."""
    parts = []
    for span in spans(cuts):
        facts = SegmentFacts(index=span.index, count=span.count, start=span.start, end=span.end)
        where = f"segment {span.index + 1} of {span.count} of {path!r}"
        part = VideoReport.load(segment_report(folder, span.index))
        if part is None:
            raise CannotJoin(f"{where} was not anonymized (no report): run the work again")
        if part.status == "failed":
            raise CannotJoin(f"{where} failed: {part.error}", kind=part.error_kind or "internal")
        if part.status == "running":
            raise CannotJoin(f"{where} did not finish (its worker was stopped): run the work again")
        if not part.matches(fingerprint_, digest, facts):
            raise CannotJoin(f"{where} was made from another version of the input, other settings or other cut "
                             "times, or its file is gone: run the work again")
        parts.append(part)
    if not parts:
        raise PermanentError(f"{path!r} is not cut into segments: there is nothing to join")
    return parts


def _check(info: MediaInfo, joined: Path, written: int, expected: int, name: str) -> None:
    """The joined file holds every frame of the segments (and all the input declares), over the input's duration."""
    stored = count_video_packets(joined)
    if not written == stored == expected:
        raise TransientError(f"the joined {name!r} has {stored} frames; its segments hold {expected}")
    declared = info.video.nb_frames
    if declared and stored < declared:
        raise PermanentError(f"only {stored} of the {declared} frames {name!r} declares were anonymized: "
                             "the file is truncated or damaged")
    joined_info = probe(joined)
    if info.duration and joined_info.duration:
        frame = 1 / info.fps if info.fps else 0.1
        if abs(joined_info.duration - info.duration) > 2 * frame + 0.1:
            raise PermanentError(f"the joined {name!r} lasts {joined_info.duration:.3f} s, the input "
                                 f"{info.duration:.3f} s; anonymize it in one piece (--segment-seconds 0)")


def describe(report: VideoReport) -> str:
    """One line about a join's outcome."""
    line = f"{report.status}: {report.input.path}"
    if report.status == "failed":
        line += f": {report.error}"
    elif report.status == "done":
        line += f" ({report.frames_out} frames from {report.segments} segments, joined)"
    return line


@with_settings_options
def main(
    settings: Settings,
    manifest: Path = typer.Option(..., help="The manifest written by discover."),
    index: Optional[int] = typer.Option(None, help="Which manifest item to join from its segments (0-based) "
                                                   "[default: every video cut into segments not joined yet]."),
    input_root: Optional[Path] = typer.Option(None, envvar="INPUT", help="Input root [default: the manifest's]."),
    output_root: Optional[Path] = typer.Option(None, envvar="OUTPUT",
                                               help="Output root [default: the manifest's folder]."),
    force: bool = typer.Option(False, "--force", help="Join again even if the video's report says it is done."),
) -> None:
    """Join the anonymized segments of long videos into their outputs, without re-encoding.

    Exits 0 when every video is joined (or was already), 75 when a join failed in a way worth
    another try, else 3 (a segment failed or is missing: re-run the work, e.g. ``argo retry``).
    """
    try:
        loaded = Manifest.load(manifest)
        if index is not None:
            loaded.item(index)
    except (OSError, ValueError, IndexError) as exc:
        typer.echo(f"error: cannot use manifest {str(manifest)!r}: {one_sentence(str(exc))}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    roots = (input_root or Path(loaded.input_root), output_root or manifest.parent)
    if index is not None:
        reports = [join_item(loaded, index, *roots, settings, force=force)]
    else:
        reports = join_all(loaded, *roots, settings, force=force)
        typer.echo(f"{sum(bool(item.cuts) for item in loaded.items) - len(reports)} videos cut into segments were "
                   f"joined already, {len(reports)} left to join", err=True)
    for report in reports:
        typer.echo(describe(report), err=True)
    codes = {report.exit_code for report in reports if report.status == "failed"}
    retryable = sorted(code for code in codes if should_retry(code))
    raise typer.Exit(retryable[0] if retryable else (max(codes) if codes else EXIT_OK))


if __name__ == "__main__":
    typer.run(main)
