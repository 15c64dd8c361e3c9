"""What the worker's web server exposes: Faust's own routes off, an optional token.

Faust serves a few blueprints of its own on the worker's port: ``/table/…``
lists the app's tables and returns raw values by key (for Segmenter the whole
customer record, bypassing the opted-out 404 of ``GET /customers/{id}``),
``/router/…`` the cluster's topology, and in debug mode ``/graph`` and sensor
statistics. :func:`disable_faust_routes` turns them all off. Request routing
between workers (``@app.topic_route``) does not use them: it looks the owner up
in the partition assignor, in-process, and forwards the request with its
headers, so a bearer token reaches the owner too.

:func:`bearer_auth` is an aiohttp middleware: when ``SEGMENTER_API_TOKEN`` is
set, every request but ``/health``, ``/ready`` and ``/metrics`` (probes and
scrapers) needs ``Authorization: Bearer <token>``, compared in constant time.
A middleware rather than a check in each view, so endpoints added later are
covered without anyone remembering to.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

__all__ = [
    "FAUST_ROUTE_SETTINGS",
    "OPEN_PATHS",
    "authorization_header",
    "bearer_auth",
    "disable_faust_routes",
    "token_matches",
]

#: Endpoints that never need the token: liveness, readiness and Prometheus.
OPEN_PATHS: frozenset[str] = frozenset({"/health", "/ready", "/metrics"})

#: Faust settings of its built-in blueprints; all off (the ``/`` index stays).
FAUST_ROUTE_SETTINGS: tuple[str, ...] = (
    "web_tables_enabled",  # /table/…: raw table values by key
    "web_router_enabled",  # /router/…: which worker holds what (topology)
    "web_stats_enabled",  # /, /assignment/: sensor statistics (debug)
    "web_graph_enabled",  # /graph: the service graph (debug)
    "web_metrics_enabled",  # /performance/: Faust's own metrics
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def disable_faust_routes(app: Any) -> None:
    """Turn Faust's built-in web blueprints off on ``app`` (before its web server exists).

    Set on the configuration after the app is built, so that Faust's
    environment variables (``APP_WEB_TABLES_ENABLED``…, which override
    constructor arguments) cannot turn them back on.
    """
    for name in FAUST_ROUTE_SETTINGS:
        setattr(app.conf, name, False)


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison that does not reveal the token's length either.

    >>> token_matches("s3cret", "s3cret"), token_matches("s3cre", "s3cret")
    (True, False)
    """
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def authorization_header(token: str | None) -> dict[str, str]:
    """The request header a client sends (none without a token).

    >>> authorization_header("abc"), authorization_header(None)
    ({'Authorization': 'Bearer abc'}, {})
    """
    return {"Authorization": f"Bearer {token}"} if token else {}


def bearer_auth(token: str) -> Any:
    """An aiohttp middleware requiring ``Authorization: Bearer <token>``."""
    if not token:
        raise ValueError("an empty API token would let everyone in")

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token_matches(given.strip(), token):
            return await handler(request)
        return web.Response(
            body=orjson.dumps({"error": "unauthorized: send Authorization: Bearer <token>"}),
            status=401,
            content_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="segmenter"'},
        )

    return require_token
