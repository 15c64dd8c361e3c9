# Segmenter: the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SEG := $(VENV)/bin/segmenter
STAMP := $(VENV)/.installed-stamp

.PHONY: install kafka topics run test test-unit lint bench bench-restart quality evaluate stop clean docker docker-test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

kafka: install
	$(SEG) kafka start

topics: kafka
	$(SEG) topics create

## make run: broker, topics, one worker, and the simulator driving it.
run: topics
	scripts/demo.sh

## make prometheus: Debian's prometheus (for tests/integration/test_prometheus.py);
## a no-op when installed, a message (and a skipped test) without root or apt-get.
.PHONY: prometheus
prometheus:
	scripts/install-prometheus.sh

## make kcat: Debian's kcat (librdkafka's command-line client), the second producer of
## the rerouting tests (tests/integration/test_repartition.py and the fault suite);
## a no-op when installed, a message (and skipped tests) without root or apt-get.
.PHONY: kcat
kcat:
	scripts/install-kcat.sh

## make docker: Debian's docker.io, debootstrap and docker-compose, a running dockerd
## and the debootstrapped Python base image (root; each step skipped when done).
docker:
	scripts/install-docker.sh
	scripts/docker-base-image.sh >/dev/null

## make docker-test: build the image from the Dockerfile and run a worker container
## against the broker (tests/integration/test_docker.py; `make test` runs it too).
docker-test: topics docker
	$(PY) -m pytest -m docker tests/integration/test_docker.py

## make test: the same set-up, then every test (unit and integration) on the real broker.
test: topics prometheus kcat
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest -m "not integration"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: topics
	$(PY) -m streams.tools.bench

bench-restart: topics
	$(PY) -m streams.tools.bench_restart

stop:
	-$(SEG) kafka stop

clean: stop
	rm -rf .segmenter
