"""The worker's web port on the real broker: Faust's raw-table routes are gone,
a bearer token guards every endpoint but the probes, and requests routed
between two workers still work (with the token forwarded)."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest

from tests.integration.conftest import SEGMENTER, Stack, Worker, metric_total, wait_for

pytestmark = pytest.mark.timeout(240)

TOKEN = "s3cret-token-for-tests"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CUSTOMERS = [f"h{i:02d}" for i in range(16)]


def fetch(worker: Worker, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(worker.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError:
        return status, body.decode(errors="replace")


def purchase(customer: str) -> dict[str, Any]:
    return {"event_id": f"{customer}-o1", "customer_id": customer, "ts": T0,
            "order_id": f"{customer}-1", "amount": 12.5, "items": 1,
            "category": "books", "channel": "web"}  # fmt: skip


def owned_partitions(worker: Worker, stack: Stack) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    partitions: set[str] = set()
    for family in text_string_to_metric_families(worker.text("/metrics")):
        for sample in family.samples:
            if sample.name == "segmenter_consumer_lag" and sample.labels.get(
                "topic"
            ) == stack.topic("purchases"):
                partitions.add(sample.labels["partition"])
    return partitions


def test_tables_off_token_required_and_routing_between_two_workers(stack_factory: Any) -> None:
    stack: Stack = stack_factory(partitions=4, SEGMENTER_API_TOKEN=TOKEN)
    one = stack.worker("w1")
    two = stack.worker("w2")
    asyncio.run(stack.produce([("purchases", purchase(c)) for c in CUSTOMERS]))
    workers = [one, two]
    # Both workers own partitions (so some answers below are routed)...
    wait_for(lambda: all(owned_partitions(w, stack) for w in workers), timeout=90)
    assert not owned_partitions(one, stack) & owned_partitions(two, stack)
    # ...and every customer is answered by either worker, the same document.
    wait_for(
        lambda: all(fetch(w, f"/customers/{c}")[0] == 200 for w in workers for c in CUSTOMERS),
        timeout=90,
    )
    for customer in CUSTOMERS:
        (s1, a), (s2, b) = (
            fetch(one, f"/customers/{customer}"),
            fetch(two, f"/customers/{customer}"),
        )
        assert s1 == s2 == 200
        assert a["features"] == b["features"] and a["features"]["orders"] == 1

    # An audience is paged over both workers' partitions, the token forwarded.
    def audience(worker: Worker) -> list[str]:
        found, cursor = [], ""
        while cursor is not None:
            status, page = fetch(worker, f"/segments/lifecycle/new/members?limit=5{cursor}")
            assert status == 200, page
            found += [m["customer_id"] for m in page["members"]]
            cursor = page["next_cursor"] and f"&cursor={page['next_cursor']}"
        return sorted(found)

    wait_for(lambda: all(audience(w) == CUSTOMERS for w in workers), timeout=60)

    # Faust's own routes are gone, even with the right token.
    table = stack.topic("customers")
    for path in (
        "/table/",
        f"/table/customers/{CUSTOMERS[0]}/",
        f"/table/{table}/",
        f"/table/{table}/{CUSTOMERS[0]}/",
        f"/table/{stack.topic('suppressions')}/{CUSTOMERS[0]}/",
        "/router/",
        f"/router/{table}/",
        f"/router/{table}/{CUSTOMERS[0]}/",
        "/graph/",
    ):
        for worker in workers:
            status, body = fetch(worker, path)
            assert status == 404, (path, status, body)

    # Without the token (or with a wrong one) nothing but the probes answers.
    for worker in workers:
        for path in (
            "/customers/" + CUSTOMERS[0],
            "/segments",
            "/segments/lifecycle/new/members",
            "/experiments",
            "/",
            "/table/",
        ):
            for token in (None, "wrong", TOKEN + "x"):
                status, body = fetch(worker, path, token=token)
                assert status == 401, (path, token, status, body)
        assert fetch(worker, "/health", token=None)[0] == 200
        assert fetch(worker, "/ready", token=None)[0] == 200
        assert metric_total(worker, "segmenter_worker_ready") == 1.0  # /metrics is open
        assert fetch(worker, "/segments")[0] == 200

    # The CLI sends the token from the same setting.
    env = {**one.env}
    answer = subprocess.run(
        [SEGMENTER, "customer", CUSTOMERS[1], "--raw"], env=env, capture_output=True, timeout=60
    )
    assert answer.returncode == 0, answer.stderr.decode()
    assert orjson.loads(answer.stdout)["customer_id"] == CUSTOMERS[1]
    env.pop("SEGMENTER_API_TOKEN")
    refused = subprocess.run(
        [SEGMENTER, "customer", CUSTOMERS[1]], env=env, capture_output=True, timeout=60
    )
    assert refused.returncode == 1 and b"401" in refused.stderr
