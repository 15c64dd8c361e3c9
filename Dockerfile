# Segmenter worker image (needs BuildKit: Docker 23+ by default, or
# DOCKER_BUILDKIT=1 with Docker 18.09–20.10).
#   docker build -t segmenter:0.1.0 .
#   docker run --rm -e SEGMENTER_KAFKA_BOOTSTRAP=broker:9092 -p 6066:6066 segmenter:0.1.0
# The same image runs every `segmenter` command: `docker run … segmenter:0.1.0 topics create`.
#
# Without a container registry (python:3.11-slim cannot be pulled), build the
# base from Debian packages and pass it in (what `make docker-test` does):
#   docker build --build-arg PYTHON_IMAGE="$(scripts/docker-base-image.sh)" …
# Behind a TLS-intercepting proxy, give pip the machine's CA bundle as a build
# secret; it is mounted for the pip steps only and never stored in a layer:
#   docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt …
# No `# syntax=` line: it would make BuildKit fetch a frontend image from a
# registry; the built-in frontend handles RUN --mount.

ARG PYTHON_IMAGE=python:3.11-slim

# ----------------------------------------------------------- requirements ---
# The runtime dependencies, from pyproject.toml: only a change of this list
# (not of the rest of pyproject.toml) reinstalls them (layer cache).
FROM ${PYTHON_IMAGE} AS requirements
COPY pyproject.toml /tmp/
RUN python3.11 -c "import tomllib; d = tomllib.load(open('/tmp/pyproject.toml', 'rb')); \
print('\n'.join(d['project']['dependencies']))" > /tmp/requirements.txt

# ---------------------------------------------------------------- builder ---
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Every dependency has a wheel for linux x86_64 and Python 3.11, so no compiler
# is installed; on a platform where pip must build one from source, add
# `apt-get install build-essential` here (this stage only).
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, so that a code change does not reinstall them; pip's
# download cache survives between builds in a BuildKit cache mount, outside the
# image.
COPY --from=requirements /tmp/requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=ca \
    --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && pip install --upgrade pip setuptools wheel \
    && pip install -r /tmp/requirements.txt

# Then the package itself.
COPY pyproject.toml README.md ./
COPY models ./models
COPY schemas ./schemas
COPY streams ./streams
RUN --mount=type=secret,id=ca \
    --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && pip install --no-deps --no-build-isolation . \
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
