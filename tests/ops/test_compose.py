"""docker-compose.yml, Dockerfile and .dockerignore: structure and consistency."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import Settings

from .conftest import ROOT

SERVICES = {"kafka", "topics", "worker-1", "worker-2", "prometheus", "grafana"}
WORKERS = ("worker-1", "worker-2")
ENV_RE = re.compile(r"\bSEGMENTER_[A-Z0-9_]+")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _setting_env_names() -> set[str]:
    return {f"SEGMENTER_{name.upper()}" for name in Settings.model_fields}


def test_has_the_services(services: dict[str, Any]) -> None:
    assert set(services) >= SERVICES


def test_segmenter_env_vars_are_settings(root: Path) -> None:
    known = _setting_env_names()
    for path in ("docker-compose.yml", "Dockerfile"):
        used = set(ENV_RE.findall((root / path).read_text()))
        assert used, path
        assert used <= known, f"{path}: unknown settings {sorted(used - known)}"


def test_images_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image or service.get("build"), name
        if image:
            assert ":" in image, f"{name}: {image} is not pinned"
            tag = image.rsplit(":", 1)[1]
            assert tag and tag != "latest", f"{name}: {image}"
            assert re.search(r"\d", tag), f"{name}: {image} tag carries no version"


def test_kafka_is_kraft_3_9(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:3\.9\.\d+", kafka["image"])
    env = _env(kafka)
    assert env["KAFKA_NODE_ID"] == "1"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith("1@kafka:")
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key
    assert "-Xmx" in env["KAFKA_HEAP_OPTS"]
    # the KRaft cluster id must be a base64url-encoded 16-byte UUID
    import base64

    cluster_id = env["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert "healthcheck" in kafka


def test_topics_one_shot(services: dict[str, Any]) -> None:
    topics = services["topics"]
    assert topics["command"] == ["topics", "create"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert _env(topics)["SEGMENTER_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert str(topics.get("restart", "no")) == "no"


def test_workers(services: dict[str, Any], compose: dict[str, Any]) -> None:
    published: list[str] = []
    web_ports: list[str] = []
    volumes: list[str] = []
    for name in WORKERS:
        worker = services[name]
        assert worker.get("build"), name
        assert worker.get("command", ["worker"]) == ["worker"]
        env = _env(worker)
        assert env["SEGMENTER_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["SEGMENTER_WEB_HOST"] == "0.0.0.0"
        assert env.get("SEGMENTER_APP_ID", "segmenter") == "segmenter"  # one consumer group
        assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        (port,) = worker["ports"]
        host_ip, host, container = str(port).split(":")
        assert host_ip == "127.0.0.1"
        assert container == env["SEGMENTER_WEB_PORT"]
        published.append(host)
        web_ports.append(env["SEGMENTER_WEB_PORT"])
        (volume,) = worker["volumes"]
        source, target = volume.split(":")[:2]
        assert target == "/app/.segmenter"
        assert source in compose["volumes"], "state must live in a named volume"
        volumes.append(source)
    assert sorted(published) == ["6066", "6067"]
    # host:port is the worker's identity in the group: it must differ
    assert len(set(web_ports)) == len(WORKERS)
    assert len(set(volumes)) == len(WORKERS), "each worker needs its own state volume"


# ---------------------------------------------------------------- hardening
SECRET_RE = re.compile(r"PASSWORD|SECRET|TOKEN|SALT|_KEY$")
REQUIRED_RE = re.compile(r"^\$\{[A-Z0-9_]+:\?[^}]+\}$")  # ${VAR:?message}
OPTIONAL_RE = re.compile(r"^\$\{[A-Z0-9_]+:-\}$")  # ${VAR:-}: empty means unset


def _published(port: Any) -> tuple[str | None, str]:
    """(host ip, host port) of a ports entry, short or long syntax."""
    if isinstance(port, dict):
        return port.get("host_ip"), str(port.get("published"))
    parts = str(port).split(":")
    return (parts[0] if len(parts) == 3 else None), parts[-2] if len(parts) > 1 else parts[0]


def test_every_published_port_is_bound_to_localhost(services: dict[str, Any]) -> None:
    published = 0
    for name, service in services.items():
        for port in service.get("ports", []):
            host_ip, _ = _published(port)
            assert host_ip == "127.0.0.1", f"{name}: {port} is published on every interface"
            published += 1
    assert published >= 5  # kafka, two workers, prometheus, grafana


def test_no_default_passwords_or_secrets(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in _env(service).items():
            if SECRET_RE.search(key):
                assert REQUIRED_RE.match(value) or OPTIONAL_RE.match(value), (
                    f"{name}: {key} must come from the environment (.env), not {value!r}"
                )
    grafana = _env(services["grafana"])
    assert REQUIRED_RE.match(grafana["GF_SECURITY_ADMIN_PASSWORD"]), "compose must refuse to start"
    assert "GRAFANA_ADMIN_PASSWORD" in grafana["GF_SECURITY_ADMIN_PASSWORD"]


def test_secrets_come_from_an_untracked_env_file(root: Path) -> None:
    example = (root / ".env.example").read_text()
    for variable in ("GRAFANA_ADMIN_PASSWORD", "SEGMENTER_API_TOKEN", "SEGMENTER_LEARNER_SALT"):
        assert re.search(rf"^{variable}=$", example, re.M), f"{variable} (empty) in .env.example"
    for ignore in (".gitignore", ".dockerignore"):
        entries = {ln.strip() for ln in (root / ignore).read_text().splitlines()}
        assert ".env" in entries, f".env must be in {ignore}"


def test_workers_pass_the_api_token_through(services: dict[str, Any]) -> None:
    for name in WORKERS:
        assert OPTIONAL_RE.match(_env(services[name])["SEGMENTER_API_TOKEN"]), name


def test_prometheus_has_no_lifecycle_or_admin_api(services: dict[str, Any]) -> None:
    flags = " ".join(str(arg) for arg in services["prometheus"].get("command", []))
    assert "--web.enable-lifecycle" not in flags
    assert "--web.enable-admin-api" not in flags


def test_prometheus_and_grafana_mounts(services: dict[str, Any], root: Path) -> None:
    prom_mounts = {v.split(":")[0] for v in services["prometheus"]["volumes"]}
    assert "./deploy/prometheus/prometheus.yml" in prom_mounts
    assert "./deploy/prometheus/alerts.yml" in prom_mounts
    graf_mounts = {v.split(":")[0] for v in services["grafana"]["volumes"]}
    assert "./deploy/grafana/provisioning" in graf_mounts
    assert "./deploy/grafana/dashboards" in graf_mounts
    for service in ("prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (root / source).exists(), source


def test_grafana_provisioning(root: Path) -> None:
    prov = root / "deploy/grafana/provisioning"
    ds = yaml.safe_load((prov / "datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    dash = yaml.safe_load((prov / "dashboards/segmenter.yml").read_text())
    (provider,) = dash["providers"]
    assert provider["type"] == "file"
    # the provider path is where compose mounts deploy/grafana/dashboards
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]


# ---------------------------------------------------------------- Dockerfile
@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    text = text.replace("\\\n", " ")  # join continuation lines
    return [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def _instr(lines: list[str], name: str) -> list[str]:
    return [ln.split(None, 1)[1] for ln in lines if ln.split(None, 1)[0].upper() == name]


def test_dockerfile_multistage(dockerfile: list[str]) -> None:
    froms = _instr(dockerfile, "FROM")
    assert len(froms) >= 2
    assert any(" AS builder" in f or " as builder" in f for f in froms)
    assert "COPY --from=builder /opt/venv /opt/venv" in dockerfile
    args = " ".join(_instr(dockerfile, "ARG"))
    assert "python:3.11-slim" in args or all("python:3.11-slim" in f for f in froms)
    assert any("pip install" in r and " ." in r for r in _instr(dockerfile, "RUN"))


def test_dockerfile_runtime(dockerfile: list[str]) -> None:
    users = _instr(dockerfile, "USER")
    assert users and users[-1] not in {"root", "0"}
    assert users[-1] == "segmenter"
    assert _instr(dockerfile, "WORKDIR")[-1] == "/app"
    assert "6066" in _instr(dockerfile, "EXPOSE")
    assert any("/app/.segmenter" in v for v in _instr(dockerfile, "VOLUME"))
    assert _instr(dockerfile, "ENTRYPOINT") == ['["segmenter"]']
    assert _instr(dockerfile, "CMD") == ['["worker"]']
    (health,) = _instr(dockerfile, "HEALTHCHECK")
    assert "urllib" in health and "/health" in health
    # the USER must come after the last FROM, i.e. in the runtime stage
    last_from = max(i for i, ln in enumerate(dockerfile) if ln.upper().startswith("FROM "))
    assert any(ln.upper().startswith("USER ") for ln in dockerfile[last_from:]), (
        "runtime stage runs as root"
    )


def test_dockerfile_copies_what_the_package_needs(dockerfile: list[str], root: Path) -> None:
    import tomllib

    project = tomllib.loads((root / "pyproject.toml").read_text())
    # the top-level packages the build finds (streams*, models*, schemas*)
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = sorted({pattern.split(".")[0].rstrip("*") for pattern in include})
    assert packages == ["models", "schemas", "streams"]
    copies = _instr(dockerfile, "COPY")
    for package in packages:
        assert any(c.split()[0] == package for c in copies), f"{package} is not copied"
    copies_text = " ".join(copies)
    assert "pyproject.toml" in copies_text
    readme = project["project"].get("readme")
    if isinstance(readme, str):
        assert readme in copies_text


def test_dockerignore(root: Path) -> None:
    entries = {
        ln.strip()
        for ln in (root / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    for required in (".venv", ".segmenter", ".git"):
        assert required in entries
    assert any("__pycache__" in e for e in entries)
    assert any("cache" in e and e != "**/__pycache__" for e in entries)
    # nothing the image build needs may be ignored
    for needed in ("pyproject.toml", "README.md", "models", "schemas", "streams"):
        assert needed not in entries
