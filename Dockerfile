# syntax=docker/dockerfile:1
# Segmenter worker image.
#   docker build -t segmenter:0.1.0 .
#   docker run --rm -e SEGMENTER_KAFKA_BOOTSTRAP=broker:9092 -p 6066:6066 segmenter:0.1.0
# The same image runs every `segmenter` command: `docker run … segmenter:0.1.0 topics create`.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- builder ---
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Compilers only for dependencies that lack a wheel for this platform;
# they stay in this stage and never reach the runtime image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that a code change does not
# reinstall them (layer cache).
COPY pyproject.toml ./
RUN python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(d['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --upgrade pip setuptools wheel \
    && pip install -r /tmp/requirements.txt

# Then the package itself.
COPY README.md ./
COPY models ./models
COPY schemas ./schemas
COPY streams ./streams
RUN pip install --no-deps . \
    && segmenter --help > /dev/null

# ---------------------------------------------------------------- runtime ---
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="segmenter" \
      org.opencontainers.image.description="Real-time customer segmentation and churn risk on Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SEGMENTER_DATA_DIR=/app/.segmenter \
    SEGMENTER_WEB_HOST=0.0.0.0 \
    SEGMENTER_WEB_PORT=6066 \
    SEGMENTER_LOG_FORMAT=json

RUN groupadd --system --gid 10001 segmenter \
    && useradd --system --uid 10001 --gid segmenter --home-dir /app --shell /usr/sbin/nologin segmenter \
    && mkdir -p /app/.segmenter \
    && chown -R segmenter:segmenter /app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
USER segmenter

# RocksDB tables and other local state; a named volume per worker.
VOLUME ["/app/.segmenter"]

EXPOSE 6066

# /health answers as soon as the web server is up (liveness); /ready is for
# orchestrators that route traffic (see docs/operations.md).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SEGMENTER_WEB_PORT', '6066') + '/health', timeout=4)"]

ENTRYPOINT ["segmenter"]
CMD ["worker"]
