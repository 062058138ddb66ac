#!/usr/bin/env bash
# The GPU check: run ONCE on a machine with an NVIDIA GPU, no network and no ffmpeg, from the
# repository root, with the folder built by benchmarks/prepare_gpu_bundle.sh beside it (.gpu/).
# It verifies that the GPU path runs (CUDA seen, CenterFace on the GPU finding the same faces as
# on the CPU, the probes of CUDA decoding and NVENC), then benchmarks synthetic 720p and 1080p
# clips with faces against a plain ffmpeg transcode on the same machine (also with cuDNN's
# autotuning off, and the pipeline alone with a stand-in detector that costs nothing), runs two
# workers on one GPU, and profiles one worker. Everything it finds goes to $OUT (at most 11 files):
#   gpu_check.log  facts.txt  detector.json  bench.json  bench_no_autotune.json  ceiling.json
#   bench_yolo.json  workers.json  profile.txt  summary.md  (bench_fast.json with FAST_ARGS)
# Each step has a time limit; a failed step is recorded and the others still run; the exit
# code is the number of failed steps.
#
#   benchmarks/gpu_check.sh              on the GPU machine (a few minutes on an H100 with 16 cores)
#   benchmarks/gpu_check.sh --cpu-only   a dry run on a machine without a GPU: same steps, short
#                                        clips, GPU assertions skipped (tests the script and the bundle)
# Settings through the environment: OUT, BUNDLE (default .gpu/bundle.tar.xz), PYTHON (python3),
# CLIP_SECONDS (30 on the GPU, 3 with --cpu-only), SKIP (words of step names to leave out, e.g.
# "detector workers profile YOLO"), FAST_ARGS (the anonymizer settings of the extra "bench fast" step;
# empty: no such step). The step limits add up to under 10 minutes (595 s without FAST_ARGS), the
# device tool's limit for one command: run it with timeout_s=600.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CPU_ONLY=0
SKIP=${SKIP:-}
[ "${1:-}" = "--cpu-only" ] && CPU_ONLY=1
OUT=${OUT:-$REPO/gpu-check-out}
BUNDLE=${BUNDLE:-$REPO/.gpu/bundle.tar.xz}
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/anon-gpu-check.XXXXXX)
# The dry run on a small CPU machine gets longer limits (LIMIT_SCALE) and short clips.
if [ "$CPU_ONLY" = 1 ]; then CLIP_SECONDS=${CLIP_SECONDS:-3}; LIMIT_SCALE=4; else CLIP_SECONDS=${CLIP_SECONDS:-30}; LIMIT_SCALE=1; fi
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
FAILED=()

step() {  # step NAME SECONDS COMMAND...: run with a time limit, record a failure
    local name=$1 limit=$(($2 * LIMIT_SCALE))
    shift 2
    local word
    for word in $SKIP; do  # SKIP="detector workers": leave out the steps whose name holds one of these words
        case "$name" in *"$word"*) echo; echo "== $name: skipped (SKIP)"; return 0 ;; esac
    done
    echo
    echo "== $name ($(date +%T), limit ${limit}s)"
    local started=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    local code=$?
    echo "-- $name: exit $code after $((SECONDS - started))s"
    [ "$code" = 0 ] || FAILED+=("$name (exit $code)")
    return 0
}

echo "== unpacking $BUNDLE into $WORK"
if [ -f "$BUNDLE" ]; then
    if command -v xz >/dev/null; then
        tar -C "$WORK" -xJf "$BUNDLE"
    else  # no xz program: Python's lzma module reads it too
        "$PYTHON" -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2], filter="tar")' \
            "$BUNDLE" "$WORK"
    fi || { echo "the bundle could not be unpacked"; exit 100; }
    export PATH="$WORK/bin:$PATH"
    export PYTHONPATH="$WORK/site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "no bundle: using the packages and ffmpeg already installed"
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
[ "$CPU_ONLY" = 1 ] && export CUDA_VISIBLE_DEVICES=""

facts() {
    echo "date: $(date -Is)"; echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) x $(nproc)"
    free -g | head -2
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
    echo "ffmpeg: $(command -v ffmpeg)"; ffmpeg -hide_banner -version | head -1
    echo "hwaccels: $(ffmpeg -hide_banner -hwaccels | tail -n +2 | tr '\n' ' ')"
    echo "nvenc: $(ffmpeg -hide_banner -encoders 2>/dev/null | grep -c nvenc) encoders"
    "$PYTHON" - <<'EOF'
import json, platform, sys
print("python", sys.version.split()[0], platform.platform())
import numpy, cv2, onnx, onnxruntime
print("numpy", numpy.__version__, "opencv", cv2.__version__, "onnx", onnx.__version__,
      "onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers())
import av, pydantic, steps
print("av", av.__version__, "pydantic", pydantic.__version__, "steps from", steps.__file__)
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
except ImportError as exc:
    print("torch missing:", exc)
from steps import accel
print("accel:", json.dumps({"nvidia_driver": accel.nvidia_driver(), "gpu_count": accel.gpu_count(),
      "torch_cuda": str(accel.torch_cuda()), "onnx_gpu_providers": accel.onnx_gpu_providers(),
      "cuda_decoding": accel.cuda_decoding(), "nvenc": accel.nvenc(), "describe": accel.describe()}))
EOF
}
step facts 30 bash -c "$(declare -f facts); PYTHON=$PYTHON facts" > "$OUT/facts.txt"
cat "$OUT/facts.txt"
command -v ffmpeg | grep -q "^$WORK/bin/" || [ ! -f "$BUNDLE" ] || FAILED+=("the bundle's ffmpeg is not first on PATH")

# CenterFace on the path chosen automatically (on the GPU: torch via onnx2torch, float16) against
# ONNX Runtime on the CPU, on a synthetic frame with two known faces; then the model's own speed.
detector_check() {
    "$PYTHON" - "$CPU_ONLY" "$OUT/detector.json" <<'EOF'
import json, sys, time
import numpy as np
from steps.detectors import runtime
from steps.detectors.centerface import CenterFace, model_bytes
from workflows.synthetic import astronaut, background, paste, sample_placements
cpu_only, out = sys.argv[1] == "1", sys.argv[2]
canvas = background(640, 360)
truth = [paste(canvas, astronaut(), p) for p in sample_placements(0, 2, 640, 360)]
rgb = canvas[:, :, ::-1].copy()
auto, cpu = CenterFace(), CenterFace(providers=["CPUExecutionProvider"])
found, expected = auto.detect([rgb])[0], cpu.detect([rgb])[0]
result = {"auto": auto.describe(), "truth": truth, "found_auto": found[:, :4].round(1).tolist(),
          "found_cpu": expected[:, :4].round(1).tolist()}
ok = len(found) == len(expected) == len(truth)
if ok:
    a, b = found[np.argsort(found[:, 0])], expected[np.argsort(expected[:, 0])]
    result["max_box_difference_px"] = float(np.abs(a[:, :4] - b[:, :4]).max())
    ok = result["max_box_difference_px"] < 3
speeds = {}
for name, detector in (("auto", auto), ("onnxruntime_cpu", cpu)):
    for batch in (1, 4, 16, 32):
        if name == "onnxruntime_cpu" and batch > 4:
            continue
        images = [rgb] * batch
        detector.detect(images)
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < 2.0:
            detector.detect(images)
            runs += 1
        speeds[f"{name}_batch{batch}_fps"] = round(runs * batch / (time.perf_counter() - started), 1)
result["detector_fps_640x360"] = speeds
result["gpu_path"] = auto.describe().get("device") == "gpu"
print(json.dumps(result, indent=2))
json.dump(result, open(out, "w"), indent=2)
if not ok:
    sys.exit("the detector on the automatic path does not find the same faces as ONNX Runtime on the CPU")
if not cpu_only and not result["gpu_path"]:
    sys.exit("CenterFace did not run on the GPU")
EOF
}
step "detector on the GPU path" 60 bash -c "$(declare -f detector_check); OUT=$OUT CPU_ONLY=$CPU_ONLY PYTHON=$PYTHON detector_check"

# Clips: two seconds of the synthetic sample (two faces, audio) at each size, looped without
# re-encoding to CLIP_SECONDS.
make_clips() {
    "$PYTHON" - "$WORK" "$CLIP_SECONDS" <<'EOF'
import subprocess, sys
from pathlib import Path
from workflows.synthetic import make_sample_clip
work, seconds = Path(sys.argv[1]), float(sys.argv[2])
for name, (w, h) in {"synthetic_720p": (1280, 720), "synthetic_1080p": (1920, 1080)}.items():
    short = work / f"{name}_short.mp4"
    make_sample_clip(short, seconds=min(2.0, seconds), width=w, height=h, fps=30)
    loops = max(0, round(seconds / 2.0) - 1)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(short), "-c", "copy",
                    str(work / f"{name}.mp4")], check=True)
    print(name, subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
                                "-show_entries", "stream=width,height,nb_read_packets", "-of", "csv=p=0",
                                str(work / f"{name}.mp4")], capture_output=True, text=True).stdout.strip())
EOF
}
step "synthetic clips" 45 bash -c "$(declare -f make_clips); WORK=$WORK CLIP_SECONDS=$CLIP_SECONDS PYTHON=$PYTHON make_clips"
CLIPS=("$WORK/synthetic_720p.mp4" "$WORK/synthetic_1080p.mp4")

step "bench 720p and 1080p, default settings" 140 bash -c \
    "'$PYTHON' -m workflows bench ${CLIPS[*]} --json --work-dir '$WORK' > '$OUT/bench.json'"
[ -n "${FAST_ARGS:-}" ] && step "bench fast settings: $FAST_ARGS" 150 bash -c \
    "'$PYTHON' -m workflows bench ${CLIPS[*]} $FAST_ARGS --json --work-dir '$WORK' > '$OUT/bench_fast.json'"
# cuDNN times its algorithms for every new input shape (torch backend): is that the fixed cost of about
# 20 s per video the H100 run of 2026-11-26 showed?
step "bench 1080p, cuDNN autotuning off" 60 bash -c \
    "ANON_CUDNN_BENCHMARK=0 '$PYTHON' -m workflows bench '${CLIPS[1]}' --json --work-dir '$WORK' > '$OUT/bench_no_autotune.json'"

# The pipeline alone (decode, pictures, tracking, hiding, encode; the same decoder and encoder as the
# anonymizer's), its detector a stand-in that costs nothing: how fast the rest can go here, with two large
# faces and with a crowd of 15 faces of 40 to 230 px (as crowd_walk.mp4 at 1080p: hiding them took about
# 6 ms of the hiding thread's CPU per frame in the 2-core build machine's dry run).
ceiling_check() {
    "$PYTHON" - "$CLIP" "$WORK/ceiling.mp4" "$OUT/ceiling.json" <<'EOF'
import json, resource, sys, time
from pathlib import Path
import numpy as np
from steps import accel, engine
from steps.containers import container_for
from steps.detectors.base import Detector, Resolution
from steps.probe import probe
from steps.settings import Settings

TWO = [(0.2, 0.2, 0.25), (0.6, 0.3, 0.12)]  # left and top (share of the width, height), height (share of the height)
CROWD = [(0.04 + 0.19 * (k % 5), 0.1 + 0.3 * (k // 5), 0.037 + 0.0125 * k) for k in range(15)]

class StandIn(Detector):
    name = "stand-in"
    def __init__(self, faces):
        self.resolution, self.faces = Resolution(), faces
    def infer(self, images):
        h, w = images[0].shape[:2]
        faces = np.array([[x * w, y * h, x * w + 0.8 * s * h, (y + s) * h, 0.9] for x, y, s in self.faces], np.float32)
        return [faces.copy() for _ in images]
    def detect(self, images):
        super().detect(images)  # tiles and overview made as for a real model, whose faces it would merge:
        return self.infer(images)  # the faces once per frame, not once per tile

clip, output, target = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
info, path = probe(clip), accel.video_path()
results = []
for label, faces in (("two faces", TWO), ("a crowd of 15", CROWD)):
    before, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    stats = engine.run(info, output, container_for(output.name), Settings(), StandIn(faces), video_path=path)
    wall = time.perf_counter() - started
    after, children_after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = lambda a, b: round(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime, 2)
    results.append({
        "faces": label, "clip": clip.name, "frames": stats.frames, "boxes_hidden": stats.boxes_hidden,
        "wall_seconds": round(wall, 2), "fps": round(stats.frames / wall, 1),
        "stage_seconds": {k: round(v, 2) for k, v in stats.seconds.items()},
        "stage_cpu_seconds": {k: round(v, 2) for k, v in stats.cpu_seconds.items()},
        "cpu_seconds": {"python": cpu(after, before), "ffmpeg": cpu(children_after, children)},
        "decoder": path.hwaccel or "software", "encoder": path.encoder})
print(json.dumps(results, indent=2))
json.dump(results, open(target, "w"), indent=2)
EOF
}
step "pipeline alone, 1080p (stand-in detector)" 60 bash -c \
    "$(declare -f ceiling_check); CLIP='${CLIPS[1]}' WORK=$WORK OUT=$OUT PYTHON=$PYTHON ceiling_check"

# The YOLO backend on the GPU (CUDA, half precision): ultralytics travels as wheels in .gpu/whl
# (the machine has torch and the rest); a YOLOv8n built from its yaml (random weights: no
# download) measures the path's speed on the 720p clip, not its quality.
yolo_check() {
    if ! "$PYTHON" -c "import ultralytics" 2>/dev/null; then
        [ -d "$REPO/.gpu/whl" ] || { echo "no .gpu/whl with the ultralytics wheels"; return 1; }
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/yolo-site" "$REPO"/.gpu/whl/*.whl \
            || return 1
        export PYTHONPATH="$PYTHONPATH:$WORK/yolo-site"
    fi
    "$PYTHON" -c 'import sys
from steps.detectors.yolo import offline_ultralytics
offline_ultralytics()
from ultralytics import YOLO
YOLO("yolov8n.yaml", task="detect").save(sys.argv[1])' "$WORK/yolov8n-random.pt" || return 1
    "$PYTHON" -m workflows bench "$WORK/synthetic_720p.mp4" --detector yolo --model "$WORK/yolov8n-random.pt" \
        --target person --json --work-dir "$WORK" > "$OUT/bench_yolo.json" || return 1
    "$PYTHON" -c "import json,sys; c=json.load(open(sys.argv[1]))['clips'][0]; print(c['fps'], c['floor_fps'], c['path'])" \
        "$OUT/bench_yolo.json"
}
step "YOLO on the GPU path (720p, random weights)" 60 bash -c \
    "$(declare -f yolo_check); REPO=$REPO WORK=$WORK OUT=$OUT PYTHON=$PYTHON PYTHONPATH=$PYTHONPATH yolo_check"

# Two workers sharing the GPU (what workflows run --gpus does), on two copies of the 1080p clip.
workers_check() {
    mkdir -p "$WORK/in"
    cp "$WORK/synthetic_1080p.mp4" "$WORK/in/a.mp4"
    cp "$WORK/synthetic_1080p.mp4" "$WORK/in/b.mp4"
    local gpus=1
    [ "$CPU_ONLY" = 1 ] && gpus=0
    local started
    started=$(date +%s.%N)
    "$PYTHON" -m workflows run "$WORK/in" "$WORK/out" --gpus "$gpus" --workers-per-gpu 2 --workers 2 || return 1
    "$PYTHON" - "$WORK/out" "$started" "$(date +%s.%N)" "$OUT/workers.json" <<'EOF'
import json, sys
from pathlib import Path
out, started, ended, target = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
reports = [json.loads(p.read_text()) for p in sorted(out.glob("*.report.json"))]
frames = sum(r["frames_out"] for r in reports)
result = {"workers": len(reports), "frames": frames, "wall_seconds": round(ended - started, 2),
          "total_fps": round(frames / (ended - started), 1),
          "per_worker": [{k: r.get(k) for k in ("fps", "wall_seconds", "stage_seconds", "detector", "accel")}
                         for r in reports]}
print(json.dumps(result, indent=2))
json.dump(result, open(target, "w"), indent=2)
EOF
}
step "two workers on one GPU" 75 bash -c "$(declare -f workers_check); WORK=$WORK OUT=$OUT CPU_ONLY=$CPU_ONLY PYTHON=$PYTHON workers_check"

# Where one worker's time goes (py-spy, every thread and the ffmpeg children's share of nothing).
profile_check() {
    command -v py-spy >/dev/null || { echo "py-spy is not in the bundle"; return 1; }
    py-spy record -r 100 -f raw -o "$WORK/profile.raw" -- "$PYTHON" -m steps.anonymize \
        --input "$WORK/synthetic_1080p.mp4" --output "$WORK/profiled.mp4" --force || return 1
    "$PYTHON" - "$WORK/profile.raw" > "$OUT/profile.txt" <<'EOF'
import collections, sys
inclusive, own, total = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, count = line.rstrip().rsplit(" ", 1)
    frames, count = stack.split(";"), int(count)
    total += count
    for frame in set(frames[1:]):
        inclusive[frame] += count
    own[frames[-1]] += count
print(f"{total} samples at 100 Hz over all threads (idle threads not sampled)")
print("\n-- most time inclusive"); [print(f"{n:6d} {f}") for f, n in inclusive.most_common(45)]
print("\n-- most time in the function itself"); [print(f"{n:6d} {f}") for f, n in own.most_common(30)]
EOF
    head -40 "$OUT/profile.txt"
}
step "profile of one 1080p worker" 45 bash -c "$(declare -f profile_check); WORK=$WORK OUT=$OUT PYTHON=$PYTHON profile_check"

summary() {
    "$PYTHON" - "$OUT" "$CPU_ONLY" <<'EOF'
import json, os, sys
from pathlib import Path
out, cpu_only = Path(sys.argv[1]), sys.argv[2] == "1"
lines = ["# GPU check", ""]
def load(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return None
bench, no_autotune, workers, det = (load("bench.json"), load("bench_no_autotune.json"), load("workers.json"),
                                   load("detector.json"))
ceiling = load("ceiling.json")
yolo = load("bench_yolo.json")
fast = load("bench_fast.json")
if bench:
    m = bench["machine"]
    lines += [f"Machine: {m['cpu']} x {m['cores']}, GPU: {m.get('gpu')}, decoder: {m.get('decoder')}, "
              f"encoder: {m.get('encoder')}", "",
              "| clip | settings | frames | fps | floor fps | ratio | busy s dec/det/trk/hide/enc "
              "| stage CPU s dec/det/trk/hide/enc/other | CPU s py/dec/enc | peak MB | detector |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, data in (("default", bench), ("cuDNN autotuning off", no_autotune), ("yolo (random weights)", yolo),
                        (os.environ.get("FAST_ARGS", "fast"), fast)):
        for c in (data or {}).get("clips", []):
            st, cpu = c["stage_seconds"], c["anonymizer"]["cpu_seconds"]
            d = c["path"]["detector"]
            lines.append(f"| {c['clip']} | {label} | {c['frames']} | {c['fps']} | {c['floor_fps']} | {c['ratio']} | "
                         + "/".join(str(st.get(k)) for k in ("decode", "detect", "track", "hide", "encode")) + " | "
                         + "/".join(str(c.get("stage_cpu_seconds", {}).get(k))
                                    for k in ("decode", "detect", "track", "hide", "encode", "other")) + " | "
                         + "/".join(str(cpu.get(k)) for k in ("python", "ffmpeg decoder", "ffmpeg encoder"))
                         + f" | {c['anonymizer']['peak_rss_mb']} | {d.get('runtime')} {d.get('device')} "
                         f"{d.get('precision', '')} |")
    hd = [c for c in bench["clips"] if c["height"] == 1080]
    if hd:
        c = hd[0]
        lines += ["", "Targets at 1080p (default settings):",
                  f"- ratio to the plain transcode {c['ratio']} (target >= 0.8): {'met' if c['ratio'] >= 0.8 else 'NOT met'}",
                  f"- {c['fps']} fps (target >= 300 where the floor, {c['floor_fps']} fps, allows): "
                  + ("met" if c["fps"] >= 300 else ("floor below 300" if c["floor_fps"] < 300 else "NOT met")),
                  f"- peak memory {c['anonymizer']['peak_rss_mb']} MB per worker (target <= 1536): "
                  + ("met" if c["anonymizer"]["peak_rss_mb"] <= 1536 else "NOT met")]
for alone in ceiling or []:
    lines += ["", f"The pipeline alone on {alone['clip']} (stand-in detector, {alone['faces']}, {alone['decoder']} "
              f"decoding, {alone['encoder']}): {alone['fps']} fps; busy s {alone['stage_seconds']}; "
              f"stage CPU s {alone['stage_cpu_seconds']}; CPU s {alone['cpu_seconds']}"]
if workers:
    lines += ["", f"Two workers on one GPU: {workers['frames']} frames in {workers['wall_seconds']} s = "
              f"{workers['total_fps']} fps in total"]
if det:
    lines += ["", f"Detector alone (640x360 copies): {det['detector_fps_640x360']}",
              f"Detector path: {det['auto']}, max box difference to ONNX Runtime CPU: "
              f"{det.get('max_box_difference_px')} px"]
text = "\n".join(lines) + "\n"
(out / "summary.md").write_text(text)
print(text)
EOF
}
step summary 20 bash -c "$(declare -f summary); OUT=$OUT CPU_ONLY=$CPU_ONLY PYTHON=$PYTHON summary"

rm -rf "$WORK"
echo
if [ ${#FAILED[@]} = 0 ]; then
    echo "== GPU check: every step passed"
else
    echo "== GPU check: ${#FAILED[@]} step(s) failed:"
    printf '   %s\n' "${FAILED[@]}"
fi
exit ${#FAILED[@]}
