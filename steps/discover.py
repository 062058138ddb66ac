"""Step 1: list every video under the input root and write the manifest.

A file is a video candidate when its extension says so (it is then listed even if its
content turns out not to be a video, so that it fails visibly instead of vanishing) or
when its first bytes are a video container's (the extension lies). Symbolic links are
never followed out of the root; every file passed over is recorded with a reason.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import filetype
import typer

from steps.errors import EXIT_USAGE, AnonymizeError
from steps.fsutil import PARTIAL_PREFIX, is_within, raise_for_os_error
from steps.manifest import RESERVED_NAMES, Ignored, Item, Manifest, manifest_path
from steps.report import REPORT_SUFFIX, now

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


def discover(input_root: Path, exclude: Optional[Path] = None) -> Manifest:
    """Walk *input_root* and return the manifest (not yet saved). *exclude* is a folder not to enter."""
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
    return Manifest(input_root=str(root), created_at=now(), items=items, ignored=ignored)


def run_discover(input_root: Path, output_root: Path, manifest: Optional[Path] = None) -> Manifest:
    """The step: discover, save the manifest in the output root, return it."""
    if is_within(output_root, input_root) or is_within(input_root, output_root):
        raise ValueError(f"the input folder {str(input_root)!r} and the output folder {str(output_root)!r} "
                         "must not contain each other: outputs never go into the input tree")
    result = discover(input_root)
    try:
        output_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise_for_os_error(exc, f"creating the output folder {str(output_root)!r}")
    result.save(manifest_path(output_root, manifest))  # classified errors (steps.errors) when it cannot be written
    return result


def fan_out_list(manifest: Manifest) -> str:
    """The list Argo fans the anonymize step out over: the items' indices, as compact JSON.

    Indices, not paths, so that the list stays far below Argo's 256 kB limit on a step's
    printed result (10,000 videos: under 50 kB) whatever the file names look like.
    """
    return json.dumps(list(range(len(manifest.items))), separators=(",", ":"))


def main(
    input_root: Path = typer.Argument(..., help="Folder holding the videos (read only)."),
    output_root: Path = typer.Argument(..., help="Folder for the anonymized videos, reports and manifest.",
                                       envvar="OUTPUT"),
    manifest: Optional[Path] = typer.Option(None, help="Where to write the manifest "
                                                      "[default: OUTPUT_ROOT/manifest.json]."),
    print_indices: bool = typer.Option(False, "--print-indices",
                                       help="Print the manifest's item indices as a JSON list on stdout "
                                            "(the fan-out list Argo's withParam reads)."),
) -> None:
    """List every video under INPUT_ROOT and write the manifest."""
    try:
        result = run_discover(input_root, output_root, manifest)
    except (ValueError, OSError) as exc:  # no input folder, or input and output inside each other
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except AnonymizeError as exc:  # the output folder cannot be written: permanent, or transient when full
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(f"{len(result.items)} videos, {len(result.ignored)} other files passed over", err=True)
    if print_indices:
        typer.echo(fan_out_list(result))


if __name__ == "__main__":
    typer.run(main)
