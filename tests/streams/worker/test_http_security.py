"""The bearer-token middleware and Faust's built-in routes, without Kafka."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.settings import Settings
from streams.worker.app import create_app
from streams.worker.http_security import FAUST_ROUTE_SETTINGS, bearer_auth


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"path": request.path})


def server(token: str) -> TestServer:
    app = web.Application(middlewares=[bearer_auth(token)])
    for path in ("/health", "/ready", "/metrics", "/segments", "/customers/{id}"):
        app.router.add_get(path, ok)
    return TestServer(app)


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("Bearer wrong", 401),
        ("Bearer tok", 401),  # a prefix of the token
        ("Basic dG9rZW4=", 401),
        ("Bearer token", 200),
        ("bearer token", 200),  # the scheme is case-insensitive (RFC 7235)
    ],
)
async def test_protected_endpoints_need_the_token(header: str | None, status: int) -> None:
    async with TestClient(server("token")) as client:
        headers = {"Authorization": header} if header else {}
        for path in ("/segments", "/customers/c1", "/no-such-route"):
            response = await client.get(path, headers=headers)
            expected = 404 if path == "/no-such-route" and status == 200 else status
            assert response.status == expected, (path, header)
            if expected == 401:
                assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_probes_and_metrics_stay_open() -> None:
    async with TestClient(server("token")) as client:
        for path in ("/health", "/ready", "/metrics"):
            assert (await client.get(path)).status == 200
        # A path that only looks like a probe is still protected.
        assert (await client.get("/health/../customers/c1")).status in (401, 404)
        assert (await client.get("/customers/c1?x=/health")).status == 401


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValueError):
        bearer_auth("")
    assert Settings(api_token="").api_token is None  # compose passes `${VAR:-}`


def test_faust_routes_are_off_even_when_its_environment_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in FAUST_ROUTE_SETTINGS:
        monkeypatch.setenv(f"APP_{name.upper()}", "true")
    monkeypatch.setenv("APP_DEBUG", "true")
    app = create_app(Settings(store="memory://", data_dir=tmp_path, api_token="t"))
    blueprints = [bp for _, bp in app.web.blueprints._enabled]
    assert blueprints == ["faust.web.apps.production_index:blueprint"]  # `/` only
    assert app.web.web_app.middlewares, "the token check is installed"
