#!/usr/bin/env bash
# Set up and run the anonymizer on one machine.
#   ./quickstart.sh              build a short sample clip from a public-domain photo and anonymize it
#   ./quickstart.sh VIDEO_DIR    anonymize every video under VIDEO_DIR into ./out/<name of VIDEO_DIR>
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
if [ $# -ge 1 ]; then
    input=$1
    output=out/$(basename "$(realpath "$input")")
else
    input=sample/input
    output=out/sample
    .venv/bin/python -m workflows sample "$input"
fi
exec .venv/bin/python -m workflows run "$input" "$output"
