from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import steps  # noqa: F401 - first: OpenVINO's usage telemetry stays off in the test process too

ROOT = Path(__file__).resolve().parent.parent

def _media_folder() -> Path:
    """The shared real clips: $ANON_TEST_MEDIA, else ../shared/media beside the checkout, else /work/shared/media."""
    candidates = [os.environ.get("ANON_TEST_MEDIA"), ROOT.parent / "shared" / "media", "/work/shared/media"]
    for candidate in filter(None, candidates):
        if Path(candidate).is_dir():
            return Path(candidate)
    return ROOT.parent / "shared" / "media"


MEDIA = _media_folder()

needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason=f"the shared test clips are not at {MEDIA}")

#: The shared clips and facts from SOURCES.md: frames, whether it has audio.
CLIPS = {
    "hamilton_audio.mp4": {"frames": 275, "audio": True},
    "crowd_walk.mp4": {"frames": 460, "audio": False},
    "ego_fisheye_audio.mp4": {"frames": 14, "audio": True},
    "portrait_talk.mp4": {"frames": 600, "audio": False},
    "carphone_qcif.mp4": {"frames": 120, "audio": False},
    "bikes_cuts.mp4": {"frames": 250, "audio": False},
    "pedestrians_far.avi": {"frames": 795, "audio": True},
    "rotated_noface.mov": {"frames": 66, "audio": True},
}


def run_cli(*args: str, env: dict | None = None, check: bool = False, cwd: Path = ROOT,
            **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m <args>`` as a user would, from the project root unless *cwd* says otherwise."""
    module_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    full_env = {**os.environ, "PYTHONPATH": module_path, **(env or {})}
    result = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                            **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """Compiled models (steps.detectors.ov_cache) go to this session's folder, not the user's cache."""
    os.environ["ANON_MODEL_CACHE"] = str(tmp_path_factory.mktemp("model_cache"))


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory):
    """``python -m workflows run`` over a copy of all shared clips (copied to a temp folder, never the project)."""
    if not MEDIA.is_dir():
        pytest.skip(f"the shared test clips are not at {MEDIA}")
    base = tmp_path_factory.mktemp("shared_run")
    inp, out = base / "in", base / "out"
    (inp / "nested").mkdir(parents=True)
    for name in CLIPS:
        target = inp / ("nested" if name.endswith(".avi") else "") / name
        shutil.copyfile(MEDIA / name, target)
    result = run_cli("workflows", "run", str(inp), str(out), "--workers", "2")
    return inp, out, result
