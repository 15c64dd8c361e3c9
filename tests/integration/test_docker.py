"""The Docker image, built and run for real (`make docker-test`).

No container registry is reachable from this project's machines, so the test
makes everything from Debian packages: it installs Debian's docker.io,
debootstrap and docker-compose and starts dockerd (scripts/install-docker.sh),
builds a Python 3.11 base image with debootstrap (scripts/docker-base-image.sh,
cached), builds the project image from the Dockerfile with that base as a build
argument and the machine's CA bundle as a BuildKit secret, then runs the worker
container on the host network against the test broker and checks `/ready`, the
image's HEALTHCHECK, and one purchase end to end, produced and read with the
image's own `segmenter replay`, `tail` and `customer`. `docker-compose config`
validates docker-compose.yml.

It skips only where Docker cannot be installed: not root, or no apt-get (and no
daemon already running). Timings of a cold and a warm run: README, "Docker".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Stack, free_port, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")  # Debian's client: BuildKit built in
IMAGE = "segmenter:docker-test"
CA_BUNDLE = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")


def sh(*args: str | Path, timeout: float = 900, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw
    )  # type: ignore[call-overload]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{result.args}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result.stdout


def docker(*args: str | Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return sh(DOCKER, *args, timeout=timeout)


@pytest.fixture(scope="module")
def timings() -> Iterator[dict[str, float]]:
    spent: dict[str, float] = {}
    yield spent
    print("docker test timings (s):", spent)


@pytest.fixture(scope="module")
def engine(timings: dict[str, float]) -> None:
    """A running dockerd with Debian's client, debootstrap and docker-compose."""
    root = os.geteuid() == 0
    if not root and sh(DOCKER, "info").returncode != 0:
        pytest.skip("Docker is not running and only root can install and start it (make docker)")
    if root and not shutil.which("apt-get") and not Path("/usr/sbin/dockerd").exists():
        pytest.skip("no apt-get to install Debian's docker.io, debootstrap and docker-compose")
    started = time.monotonic()
    result = sh(REPO / "scripts" / "install-docker.sh")
    if result.returncode == 2:  # the script's "cannot install here"
        pytest.skip(result.stderr.strip())
    ok(result)
    timings["install + dockerd"] = round(time.monotonic() - started, 1)


@pytest.fixture(scope="module")
def image(engine: None, timings: dict[str, float]) -> str:
    """The project image, built from the Dockerfile on the debootstrapped base."""
    started = time.monotonic()
    base = ok(sh(REPO / "scripts" / "docker-base-image.sh")).strip().splitlines()[-1]
    timings["base image"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    secret = ["--secret", f"id=ca,src={CA_BUNDLE}"] if CA_BUNDLE.is_file() else []
    ok(
        sh(
            DOCKER, "build", "--network", "host", *secret,
            "--build-arg", f"PYTHON_IMAGE={base}", "--tag", IMAGE, REPO,
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
        )
    )  # fmt: skip
    timings["docker build"] = round(time.monotonic() - started, 1)
    return IMAGE


def segmenter_env(stack: Stack, port: int) -> list[str]:
    env = {
        "SEGMENTER_KAFKA_BOOTSTRAP": stack.bootstrap,
        "SEGMENTER_TOPIC_PREFIX": stack.prefix,
        "SEGMENTER_APP_ID": stack.app_id,
        "SEGMENTER_PARTITIONS": str(stack.partitions),
        "SEGMENTER_WEB_HOST": "127.0.0.1",
        "SEGMENTER_WEB_PORT": str(port),
    }
    return [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_image_runs_a_worker_end_to_end(
    image: str, stack: Stack, tmp_path: Path, timings: dict[str, float]
) -> None:
    user = ok(docker("run", "--rm", "--entrypoint", "id", image, "-u")).strip()
    assert user == "10001", "the image must not run as root"
    leaked = docker("run", "--rm", "--entrypoint", "ls", image, "/run/secrets")
    assert leaked.returncode != 0, "the build secret is in the image"
    config = json.loads(ok(docker("image", "inspect", image)))[0]["Config"]
    assert not any("CERT" in variable for variable in config["Env"]), config["Env"]

    port = free_port()
    name = f"segmenter-test-{uuid.uuid4().hex[:8]}"
    env = segmenter_env(stack, port)
    started = time.monotonic()
    ok(docker("run", "--detach", "--rm", "--name", name, "--network", "host", *env, image))
    try:

        def ready() -> bool:
            state = docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            assert state == "true", docker("logs", "--tail", "60", name).stderr
            return http_status(f"http://127.0.0.1:{port}/ready") == 200

        wait_for(ready, timeout=180, interval=1.0)
        timings["worker ready"] = round(time.monotonic() - started, 1)
        started = time.monotonic()

        customer = f"docker {uuid.uuid4().hex[:6]}"  # a space: the CLI encodes it
        events = tmp_path / "purchases.jsonl"
        events.write_text(
            json.dumps({"event_id": "d1", "customer_id": customer, "order_id": "o1",
                        "amount": 42.5, "ts": int(time.time() * 1000) - 60_000}) + "\n"
        )  # fmt: skip
        events.chmod(0o644)
        mount = ["--volume", f"{events}:/data/purchases.jsonl:ro"]
        run = ["run", "--rm", "--network", "host", *env]
        sent = ok(docker(*run, *mount, image, "replay", "/data/purchases.jsonl",
                         "--topic", "purchases"))  # fmt: skip
        assert "sent 1 lines" in sent, sent

        # A first purchase only makes first assignments, shown with --all.
        tail = ok(docker(*run, image, "tail", "segment-changes", "--from-beginning", "--all",
                         "--limit", "1", timeout=120))  # fmt: skip
        assert customer in tail and "lifecycle" in tail and "new" in tail, tail

        def document() -> dict[str, object] | None:
            result = docker(*run, image, "customer", customer, "--raw")
            return json.loads(result.stdout) if result.returncode == 0 else None

        found = wait_for(document, timeout=60, interval=1.0)
        assert found["customer_id"] == customer
        features = found["features"]
        assert isinstance(features, dict)
        assert features["orders"] == 1 and features["revenue"] == 42.5
        timings["one event end to end"] = round(time.monotonic() - started, 1)

        def healthy() -> bool:
            status = docker("inspect", "--format", "{{.State.Health.Status}}", name)
            return status.stdout.strip() == "healthy"

        wait_for(healthy, timeout=60, interval=2.0)  # the image's HEALTHCHECK (every 15 s)
    finally:
        docker("rm", "--force", name, timeout=60)


def test_compose_file_is_valid(engine: None) -> None:
    compose = shutil.which("docker-compose")
    assert compose, "scripts/install-docker.sh installs docker-compose"
    file = ("--file", REPO / "docker-compose.yml")
    # There is no default Grafana password (docs/security.md): compose refuses
    # the file, naming the variable, until one is given.
    bare = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    refused = sh(compose, *file, "config", "--quiet", cwd=REPO, env=bare)
    assert refused.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in refused.stderr
    env = {**bare, "GRAFANA_ADMIN_PASSWORD": "a-test-password"}
    ok(sh(compose, *file, "config", "--quiet", cwd=REPO, env=env))
    services = ok(sh(compose, *file, "config", "--services", cwd=REPO, env=env)).split()
    assert {"kafka", "topics", "worker-1", "worker-2", "prometheus", "grafana"} <= set(services)
