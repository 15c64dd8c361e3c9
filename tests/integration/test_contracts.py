"""Bad input, duplicates and privacy requests on the real broker."""

from __future__ import annotations

import random

import orjson

from schemas import validate_output
from tests.integration.conftest import Stack, handled_total, wait_for

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def purchase(customer: str, n: int, ts: int, amount: float = 10.0) -> dict:
    return {"event_id": f"{customer}-o{n}", "customer_id": customer, "ts": ts,
            "order_id": f"{customer}-{n}", "amount": amount, "items": 1,
            "category": "books", "channel": "web"}  # fmt: skip


async def test_bad_and_duplicate_events_interleaved_with_good_ones(stack: Stack) -> None:
    worker = stack.worker()
    rng = random.Random(7)
    good: list[tuple[str, object]] = []
    bad: list[tuple[str, object]] = []
    for c in range(20):
        for n in range(5):
            good.append(("purchases", purchase(f"c{c}", n, T0 + n * DAY + c, amount=1.0 + n)))
    bad_payloads = [
        b"{truncated", b"\xff\xfe not utf-8", b"[]", b"42",
        orjson.dumps({"event_id": "x", "customer_id": "c1", "ts": T0}),  # fields missing
        orjson.dumps(purchase("c2", 99, T0) | {"amount": -1}),
        orjson.dumps(purchase("c3", 98, T0) | {"ts": "yesterday"}),
        orjson.dumps(purchase("c4", 97, T0) | {"ts": 100}),  # 1970: absurdly old
    ]  # fmt: skip
    for payload in bad_payloads:
        bad.append(("purchases", payload))
    duplicates = [good[i] for i in rng.sample(range(len(good)), 15)]
    stream = good + bad + duplicates
    rng.shuffle(stream)
    # Keep each customer's good events in time order within the topic; the
    # shuffle above only interleaves customers, bad messages and duplicates.
    stream.sort(key=lambda r: r[1]["ts"] if isinstance(r[1], dict) else 0)
    await stack.produce(stream, key=lambda e: e["customer_id"] if isinstance(e, dict) else "c1")

    wait_for(lambda: handled_total([worker]) >= len(stream), timeout=90)
    for c in range(20):
        status, body = worker.get(f"/customers/c{c}")
        assert status == 200
        assert body["features"]["orders"] == 5, f"c{c} counted {body['features']['orders']}"
        assert body["features"]["revenue"] == sum(1.0 + n for n in range(5))

    dead = await stack.consume("dead-letters", until=lambda rs: len(rs) >= len(bad_payloads))
    assert len(dead) == len(bad_payloads)
    reasons = sorted(d["value"]["error"]["reason"] for d in dead)
    assert reasons == sorted(
        ["invalid_json", "not_utf8", "not_an_object", "not_an_object", "schema", "schema",
         "bad_ts", "bad_ts"]
    )  # fmt: skip
    for record in dead:
        validate_output("dead-letters", record["value"])
        assert record["value"]["source_topic"] == stack.topic("purchases")
    assert worker.proc is not None and worker.proc.poll() is None  # still alive


async def test_erase_removes_state_changelog_and_later_outputs(stack: Stack) -> None:
    worker = stack.worker()
    events = [("purchases", purchase("eve", n, T0 + n * DAY)) for n in range(3)]
    events.append(("purchases", purchase("bob", 0, T0)))
    await stack.produce(events)
    wait_for(lambda: worker.get("/customers/eve")[0] == 200, timeout=60)

    await stack.produce([("privacy", {"event_id": "erase-1", "customer_id": "eve",
                                      "ts": T0 + 5 * DAY, "action": "erase"})])  # fmt: skip
    confirmations = await stack.consume("privacy-confirmations", until=lambda rs: len(rs) >= 1)
    confirmation = confirmations[0]["value"]
    validate_output("privacy-confirmations", confirmation)
    assert confirmation["customer_id"] == "eve" and confirmation["status"] == "done"
    assert confirmation["details"]["table_entries"] == 1
    assert worker.get("/customers/eve")[0] == 404
    assert worker.get("/customers/bob")[0] == 200

    # The changelog's last word on eve is a tombstone, so compaction removes her.
    changelog = await stack.consume_raw(f"{stack.app_id}-{stack.prefix}customers-changelog")
    eve_values = [value for key, value in changelog if key is not None and b"eve" in key]
    assert eve_values and eve_values[-1] is None

    before = await stack.consume("segment-changes", until=lambda rs: False, timeout=3)
    naming_eve = sum(1 for r in before if r["key"] == "eve")
    # Replayed old events of eve do not bring her back; nothing new names her.
    await stack.produce([("purchases", purchase("eve", 0, T0))])
    await stack.produce([("purchases", purchase("bob", 1, T0 + DAY))])
    wait_for(lambda: worker.get("/customers/bob")[1].get("features", {}).get("orders") == 2)
    assert worker.get("/customers/eve")[0] == 404
    after = await stack.consume("segment-changes", until=lambda rs: False, timeout=3)
    assert sum(1 for r in after if r["key"] == "eve") == naming_eve
    churn = await stack.consume("churn-risk", until=lambda rs: False, timeout=3)
    assert all(r["value"]["ts"] < "2026-01-06" for r in churn if r["key"] == "eve")
