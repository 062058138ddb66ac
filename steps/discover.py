"""Step 1: list every video under the input root, write the manifest, and say what work is left.

A file is a video candidate when its extension says so (it is then listed even if its
content turns out not to be a video, so that it fails visibly instead of vanishing) or
when its first bytes are a video container's (the extension lies). Symbolic links are
never followed out of the root; every file passed over is recorded with a reason.

Each video's length is probed (steps.durations); a video longer than the segment length is
cut into segments (steps.segments). The work left (plan_work) is the fan-out list, ordered
longest first (by frames x pixels) so that the pods started last are the short ones and all finish close
together, without what is already done (a report matching the input's fingerprint and the
settings, for a whole video or for one segment).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import filetype
import typer

from steps.durations import PROBE_THREADS, measure_all
from steps.errors import EXIT_USAGE, AnonymizeError
from steps.fsutil import PARTIAL_PREFIX, fingerprint, is_within, raise_for_os_error
from steps.manifest import RESERVED_NAMES, Ignored, Item, Manifest, manifest_path
from steps.report import REPORT_SUFFIX, SegmentFacts, VideoReport, now, report_path_for
from steps.segments import (
    DEFAULT_SEGMENT_SECONDS,
    cut_times,
    segment_folder,
    segment_report,
    spans,
    work_item,
)
from steps.settings import Settings, with_settings_options

#: Where discover keeps the probed lengths, at the output root (steps.durations).
PROBE_CACHE_NAME = ".probe-cache.json"

VIDEO_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".ts", ".mpg", ".mpeg",
    ".m2v", ".vob", ".wmv", ".asf", ".flv", ".f4v", ".3gp", ".3g2", ".ogv", ".mxf", ".dv", ".divx", ".h264",
    ".hevc", ".y4m",
})
_APPLEDOUBLE = b"\x00\x05\x16\x07"


def sniff_video(path: Path) -> Optional[bool]:
    """True if the first bytes are a video container's, False if not, None if unreadable."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8192)
    except OSError:
        return None
    if head.startswith(_APPLEDOUBLE):
        return False
    if filetype.video_match(head) is not None:
        return True
    # MPEG transport streams (.ts, .m2ts) that filetype does not know: sync bytes every 188/192 bytes.
    for packet, offset in ((188, 0), (192, 4)):
        if len(head) >= packet * 4 and all(head[offset + i * packet] == 0x47 for i in range(4)):
            return True
    return False


def _classify(path: Path, relative: str, root: Path) -> tuple[bool, Optional[str]]:
    """(is a video candidate, reason it was passed over)."""
    name = path.name
    if name.startswith(PARTIAL_PREFIX) or name.endswith(REPORT_SUFFIX):
        return False, None  # this system's own files: not worth a line
    if path.is_symlink():
        try:
            target = Path(os.path.realpath(path, strict=True))
        except (OSError, RuntimeError):
            return False, "broken symbolic link or symbolic link loop"
        if not is_within(target, root):
            return False, "symbolic link out of the input folder (not followed)"
        if target.is_dir():
            return False, "symbolic link to a folder inside the input (its files are listed where they are)"
        return False, f"symbolic link to {os.path.relpath(target, root)!r}, listed under its real name"
    if not path.is_file():
        return False, "not a regular file"
    if relative in RESERVED_NAMES:
        return False, "name reserved for the run's own files at the output root"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        if name.startswith("._") and sniff_video(path) is False:
            return False, "macOS metadata file (AppleDouble), not a video"
        return True, None
    sniffed = sniff_video(path)
    if sniffed:
        return True, None
    if sniffed is None:
        return False, "cannot be read, and its name does not say it is a video"
    return False, "not a video"


def discover(input_root: Path, exclude: Optional[Path] = None, segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
             cache_file: Optional[Path] = None) -> Manifest:
    """Walk *input_root* and return the manifest (not yet saved). *exclude* is a folder not to enter.

    Every video is probed for its length (cached in *cache_file*) and cut into segments of at
    most *segment_seconds* (0: never).
    """
    root = Path(os.path.realpath(input_root))
    if not root.is_dir():
        raise NotADirectoryError(f"the input folder {str(input_root)!r} does not exist or is not a folder")
    items: list[Item] = []
    ignored: list[Ignored] = []

    def unreadable(error: OSError) -> None:
        relative = os.path.relpath(error.filename, root) if error.filename else "?"
        ignored.append(Ignored(path=relative, reason=f"folder cannot be read ({error.strerror})"))

    for folder, dirnames, filenames in os.walk(root, onerror=unreadable):
        here = Path(folder)
        kept = []
        for name in dirnames:
            sub = here / name
            if exclude is not None and is_within(sub, exclude) and not sub.is_symlink():
                continue
            if sub.is_symlink():  # os.walk does not descend into them; say why
                filenames.append(name)
            else:
                kept.append(name)
        dirnames[:] = sorted(kept)
        for name in filenames:
            path = here / name
            relative = path.relative_to(root).as_posix()
            candidate, reason = _classify(path, relative, root)
            if candidate:
                items.append(Item(path=relative, size=path.stat().st_size))
            elif reason:
                ignored.append(Ignored(path=relative, reason=reason))
    items.sort(key=lambda item: item.path)
    ignored.sort(key=lambda entry: entry.path)
    lengths = measure_all([root / item.path for item in items], cache_file)
    for item, length in zip(items, lengths):
        if length is not None:
            item.duration, item.start, item.frames = length.duration, length.start, length.frames
            item.width, item.height = length.width, length.height
            item.cuts = cut_times(length.duration, length.start, segment_seconds)
    return Manifest(input_root=str(root), created_at=now(), segment_seconds=segment_seconds, items=items,
                    ignored=ignored)


def run_discover(input_root: Path, output_root: Path, manifest: Optional[Path] = None,
                 segment_seconds: float = DEFAULT_SEGMENT_SECONDS) -> Manifest:
    """The step: discover, save the manifest in the output root, return it."""
    if is_within(output_root, input_root) or is_within(input_root, output_root):
        raise ValueError(f"the input folder {str(input_root)!r} and the output folder {str(output_root)!r} "
                         "must not contain each other: outputs never go into the input tree")
    try:
        output_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise_for_os_error(exc, f"creating the output folder {str(output_root)!r}")
    result = discover(input_root, segment_seconds=segment_seconds, cache_file=output_root / PROBE_CACHE_NAME)
    result.save(manifest_path(output_root, manifest))  # classified errors (steps.errors) when it cannot be written
    return result


@dataclass
class Work:
    """What is left to do: the fan-out list (work items, longest first) and the videos to join after it."""

    items: list[str] = field(default_factory=list)
    joins: list[int] = field(default_factory=list)
    done: list[int] = field(default_factory=list)  # videos already done, whose reports now say "skipped"


def work_weight(item: Item, segments: int = 1) -> float:
    """How long one work item of *item* takes, relatively: its frames times their pixels, what decoding,
    hiding and encoding cost in proportion to (unknown: last, such files fail fast)."""
    if not item.frames:
        return -1.0
    return item.frames * ((item.width or 1) * (item.height or 1)) / segments


def plan_work(manifest: Manifest, output_root: Path, settings: Settings, force: bool = False) -> Work:
    """The work left for *manifest*'s videos, given the reports already in *output_root*.

    Whatever is done with the same input (fingerprint) and settings is left out, a whole
    video or one segment of it, unless *force*. A video done earlier gets a "skipped" report,
    as if its worker had found it done. Fingerprints are only computed where a report could match.
    """
    input_root, digest = Path(manifest.input_root), settings.digest()

    def left(index: int) -> tuple[list[tuple[str, float]], bool, bool]:
        """(work items with their weights, needs a join, already done) for item *index*."""
        item = manifest.items[index]
        cached: dict[str, Optional[str]] = {}

        def matches(report: Optional[VideoReport], segment: Optional[SegmentFacts] = None) -> bool:
            if force or report is None or report.status not in ("done", "skipped") \
                    or report.settings_digest != digest:
                return False
            if "fingerprint" not in cached:
                try:
                    cached["fingerprint"] = fingerprint(input_root / item.path)
                except OSError:
                    cached["fingerprint"] = None
            return cached["fingerprint"] is not None and report.matches(cached["fingerprint"], digest, segment)

        report_path = report_path_for(output_root, item.path)
        previous = VideoReport.load(report_path)
        if matches(previous):
            previous.skipped().save(report_path)
            return [], False, True
        if not item.cuts:
            return [(work_item(index), work_weight(item))], False, False
        folder, parts = segment_folder(output_root, item.path), spans(item.cuts)
        todo = []
        for span in parts:
            facts = SegmentFacts(index=span.index, count=span.count, start=span.start, end=span.end)
            if not matches(VideoReport.load(segment_report(folder, span.index)), facts):
                todo.append((work_item(index, span.index), work_weight(item, len(parts))))
        return todo, True, False

    work = Work()
    weighted: list[tuple[str, float]] = []
    with ThreadPoolExecutor(PROBE_THREADS) as pool:
        for index, (todo, join, done) in enumerate(pool.map(left, range(len(manifest.items)))):
            weighted += todo
            if join:
                work.joins.append(index)
            if done:
                work.done.append(index)
    work.items = [name for name, _ in sorted(weighted, key=lambda pair: -pair[1])]  # stable: ties keep path order
    return work


def compact_json(value: object) -> str:
    """The lists Argo passes between steps, as small as JSON gets (its printed result is capped at 256 kB)."""
    return json.dumps(value, separators=(",", ":"))


def fan_out_json(items: list[str]) -> str:
    """The fan-out list as Argo's withParam reads it: a whole video as its index (a JSON number, the
    shortest), a segment as "N:K". 10,000 whole videos print in 49 kB, far below Argo's 256 kB."""
    return compact_json([item if ":" in item else int(item) for item in items])


@with_settings_options
def main(
    settings: Settings,
    input_root: Path = typer.Argument(..., help="Folder holding the videos (read only)."),
    output_root: Path = typer.Argument(..., help="Folder for the anonymized videos, reports and manifest.",
                                       envvar="OUTPUT"),
    manifest: Optional[Path] = typer.Option(None, help="Where to write the manifest "
                                                      "[default: OUTPUT_ROOT/manifest.json]."),
    segment_seconds: int = typer.Option(DEFAULT_SEGMENT_SECONDS, min=0,
                                        help="Cut videos longer than this into segments of at most this many "
                                             "seconds, each its own work item (0: never)."),
    force: bool = typer.Option(False, "--force", help="List all the work, even what is already done."),
    print_work: bool = typer.Option(False, "--print-work",
                                    help="Print the fan-out list on stdout: a JSON list of work items, N for "
                                         "video N of the manifest or \"N:K\" for its segment K, longest first, "
                                         "without those already done (what Argo's withParam reads)."),
) -> None:
    """List every video under INPUT_ROOT, write the manifest, and say what work is left."""
    try:
        result = run_discover(input_root, output_root, manifest, segment_seconds=segment_seconds)
        work = plan_work(result, output_root, settings, force=force)
    except (ValueError, OSError) as exc:  # no input folder, or input and output inside each other
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except AnonymizeError as exc:  # the output folder cannot be written: permanent, or transient when full
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    segments = sum(len(item.cuts) + 1 for item in result.items if item.cuts)
    typer.echo(f"{len(result.items)} videos ({len(work.done)} already done), {len(result.ignored)} other files "
               f"passed over; {len(work.items)} work items ({segments} segments of "
               f"{sum(bool(item.cuts) for item in result.items)} long videos in all), {len(work.joins)} to join",
               err=True)
    if print_work:
        typer.echo(fan_out_json(work.items))


if __name__ == "__main__":
    typer.run(main)
