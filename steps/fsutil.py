"""File-system helpers: atomic writes, input fingerprints, path containment."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from steps.errors import PermanentError, TransientError

#: Temporary files start with this prefix, so that every tool can recognise (and clean) them.
PARTIAL_PREFIX = ".partial-"

_SAMPLE = 64 * 1024
_SAMPLES = 8


def fingerprint(path: Path) -> str:
    """A content fingerprint that stays cheap for multi-GB videos on network volumes.

    sha256 over the size and eight 64 KiB samples spread evenly over the file (first and
    last included), so a copied file keeps its fingerprint while a re-encoded, truncated
    or replaced one does not. Reading the whole file would double the I/O of each video.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        digest.update(str(size).encode())
        if size <= _SAMPLE * _SAMPLES:
            digest.update(handle.read())
        else:
            for i in range(_SAMPLES):
                handle.seek((size - _SAMPLE) * i // (_SAMPLES - 1))
                digest.update(handle.read(_SAMPLE))
    return "s256x8:" + digest.hexdigest()


def is_within(path: Path, root: Path) -> bool:
    """True when *path* (resolved) lies inside *root* (resolved) or is root itself."""
    path, root = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return path == root or root in path.parents


def partial_path(final: Path, suffix: str | None = None) -> Path:
    """A hidden temporary name beside *final* (same folder, so the final rename is atomic)."""
    suffix = final.suffix if suffix is None else suffix
    return final.with_name(f"{PARTIAL_PREFIX}{secrets.token_hex(4)}-{final.name}{suffix}")


def stale_partials(final: Path) -> list[Path]:
    """Temporary files a killed run left for *final*."""
    folder = final.parent
    if not folder.is_dir():
        return []
    return [p for p in folder.glob(f"{PARTIAL_PREFIX}*-{glob_escape(final.name)}*") if p.is_file()]


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def printable(name: str) -> str:
    """*name* for a log line or a terminal: what is not printable is shown escaped, as repr does.

    A newline, an escape sequence or a right-to-left override in a file name then cannot forge
    a log line, drive the terminal or disguise an extension; a byte that is not UTF-8 shows as
    ``\\udcff`` (see atomic_write_text).
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def remove_quietly(path: Path | None) -> None:
    """Remove a temporary file if it is there; a failure (it was never created: a name too long) is not an error."""
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def raise_for_os_error(exc: OSError, what: str) -> None:
    """Turn an OSError while writing into a classified error with one clear sentence."""
    if exc.errno == errno.ENOSPC:
        raise TransientError(f"{what} failed: no space left on the output volume") from exc
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise PermanentError(f"{what} failed: the output folder is not writable ({exc.strerror})") from exc
    if exc.errno == errno.ENAMETOOLONG:  # the report's and the temporary file's names add to the video's
        raise PermanentError(f"{what} failed: the name is too long for the output file system once "
                             f"'{PARTIAL_PREFIX}' and '.report.json' are added; shorten it") from exc
    raise TransientError(f"{what} failed: {exc.strerror or exc}") from exc


def atomic_write_text(path: Path, text: str) -> None:
    """Write *text* to *path* so that readers see the old file or the new one, never a mix.

    A file name that is not valid UTF-8 reaches Python as a str with lone surrogates
    (``b"\xff"`` -> ``"\udcff"``, PEP 383), which UTF-8 cannot encode: they are written as the
    six characters ``\udcff``. In a JSON string that is the very escape ``json.loads`` turns back
    into the surrogate, so manifests and reports keep such names exactly (see to_json); in
    Markdown or HTML it is a readable stand-in for the byte.
    """
    try:
        atomic_write_bytes(path, text.encode("utf-8", errors="backslashreplace"))
    except OSError as exc:
        raise_for_os_error(exc, f"writing {path.name!r}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write *data* to *path* through a temporary file beside it, renamed once complete (its folder made
    if needed); an OSError leaves no temporary file and *path* as it was."""
    tmp = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError:
        remove_quietly(tmp)
        raise


def to_json(data: Any, indent: int = 2) -> str:
    """JSON text for atomic_write_text: every name kept, even one that is not valid UTF-8.

    pydantic's own JSON writer refuses such names; ``json.dumps`` keeps the lone surrogates
    that atomic_write_text then writes as JSON escapes. Read it back with ``json.loads``
    (pydantic's JSON parser rejects lone surrogate escapes).
    """
    return json.dumps(data, indent=indent, ensure_ascii=False) + "\n"
