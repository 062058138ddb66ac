"""A disk cache of OpenVINO's compiled models, so a new process does not compile the same model again.

Compiling the int8 CenterFace for one picture size takes about 0.75 s on the build machine
and is done per picture size (two per video with ``--fine-every``) in every process;
importing the compiled model from this cache takes about 0.1 s, and runs identically
(tested). Each entry is keyed by everything that could make a compiled model differ: the
model file's bytes, the input shape, the OpenVINO version, the configuration, and the CPU
(its name and its instruction-set flags, so a cluster of mixed nodes sharing a cache never
imports a model compiled for other instructions).

Entries are written to a temporary file and renamed, so two workers compiling together never
read half a file; an entry that does not import (damaged, or from another build) is compiled
again and replaced. The cache only saves time: when its folder cannot be written, models are
compiled as without it. Where: ``ANON_MODEL_CACHE`` (empty: no cache), by default
``$XDG_CACHE_HOME/argo-video-anonymizer/openvino`` (``~/.cache/...``). Entries are about 2.5 MB
each; nothing prunes them (delete the folder at will).
"""

from __future__ import annotations

import hashlib
import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from steps.fsutil import atomic_write_bytes

ENV = "ANON_MODEL_CACHE"


def cache_dir() -> Optional[Path]:
    """The cache's folder (see the module's docstring), None when turned off."""
    chosen = os.environ.get(ENV)
    if chosen is not None:
        return Path(chosen) if chosen.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "argo-video-anonymizer" / "openvino"


@lru_cache(maxsize=1)
def _cpu_identity() -> str:
    """The CPU's model name and instruction-set flags (Linux), else what the platform says."""
    try:
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = [line for line in lines if line.split(":")[0].strip() in ("model name", "flags")]
    return "\n".join(sorted(set(wanted)))


@lru_cache(maxsize=8)
def file_digest(path: Path) -> str:
    """The SHA-256 of the file at *path* (read once per process)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def entry(model: Path, shape: tuple[int, ...], version: str, device_name: str,
          config: dict[str, Any]) -> Optional[Path]:
    """The cache file for *model* compiled for *shape* with *config* on this CPU, None without a cache."""
    folder = cache_dir()
    if folder is None:
        return None
    key = "\n".join([file_digest(model), repr(tuple(shape)), version, device_name, _cpu_identity(),
                     repr(sorted((k, str(v)) for k, v in config.items()))])
    return folder / f"{model.stem}-{'x'.join(map(str, shape))}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.blob"


def load(path: Optional[Path]) -> Optional[bytes]:
    """The cached compiled model's bytes, None when there is none (or it cannot be read)."""
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def store(path: Optional[Path], blob: bytes) -> None:
    """Save *blob* at *path* atomically; a cache that cannot be written is skipped, never an error."""
    if path is None:
        return
    try:
        atomic_write_bytes(path, blob)
    except OSError:
        pass  # the next process compiles the model again
