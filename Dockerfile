# syntax=docker/dockerfile:1
# The newsknn prediction service: gunicorn + Flask serving the pipeline's fine-tuned model and index.
# Build after `dvc repro` (or `dvc pull`) so models/ and data/prepared/labels.json exist:
#   docker build -t newsknn .
#   docker run --rm -p 8000:8000 newsknn

# --- builder: wheels for every requirement (hnswlib has no wheels on PyPI and compiles here) ---
FROM python:3.11-slim AS builder

# Compilers live only in this stage; the final image gets the built wheels, not the toolchain.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build
COPY requirements.txt .
# The CPU build of torch (pinned in requirements.txt) from PyTorch's CPU index, the rest from PyPI.
RUN pip wheel --no-cache-dir --wheel-dir /wheels \
        --extra-index-url https://download.pytorch.org/whl/cpu \
        -r requirements.txt

# --- runtime: slim Python, the wheels, the code and the pipeline's artifacts; no compilers ---
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_PROGRESS_BARS=1 \
    NEWSKNN_BIND=0.0.0.0:8000 \
    NEWSKNN_PARAMS=params.yaml \
    NEWSKNN_MODEL_DIR=models/finetuned \
    NEWSKNN_INDEX_DIR=models/index/finetuned \
    NEWSKNN_LABELS=data/prepared/labels.json

# Install only from the wheels built above (--no-index): the CPU torch, never a CUDA one.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    pip install --no-cache-dir --no-index --find-links=/wheels -r /tmp/requirements.txt

# A non-root user (numeric, so any runtime can resolve it) that owns nothing but its home.
RUN groupadd --gid 10001 newsknn \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin newsknn
WORKDIR /app

COPY requirements.txt params.yaml gunicorn.conf.py ./
COPY newsknn/ newsknn/
COPY app/ app/
# The pipeline's outputs (`dvc repro` or `dvc pull` first). --chown: DVC may check files out
# owner-only (0600), which the service user could not read otherwise.
COPY --chown=10001:10001 models/finetuned/ models/finetuned/
COPY --chown=10001:10001 models/index/finetuned/ models/index/finetuned/
COPY --chown=10001:10001 data/prepared/labels.json data/prepared/labels.json

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=90s --retries=3 \
    CMD ["python", "app/healthcheck.py"]
CMD ["gunicorn", "--config", "gunicorn.conf.py", "app.wsgi:app"]
