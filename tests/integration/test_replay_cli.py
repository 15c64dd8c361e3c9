"""`segmenter replay` loads JSON Lines into a topic and counts what it rejected."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson

from tests.integration.conftest import SEGMENTER, Stack, wait_for

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def purchase(customer: str, n: int) -> dict[str, object]:
    return {
        "event_id": f"{customer}-{n}",
        "customer_id": customer,
        "ts": T0 + n * DAY,
        "order_id": f"{customer}-o{n}",
        "amount": 5.0,
        "items": 1,
        "category": "books",
        "channel": "web",
    }


async def test_replay_sends_valid_lines_and_counts_rejected_ones(
    stack: Stack, tmp_path: Path
) -> None:
    worker = stack.worker()
    lines = [orjson.dumps(purchase(f"r{c}", n)) for c in range(5) for n in range(10)]
    lines.insert(7, b"{broken json")
    lines.insert(20, orjson.dumps({"event_id": "x", "customer_id": "r1", "ts": T0}))
    lines.insert(30, b"")
    path = tmp_path / "purchases.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    env = {**os.environ, **{k: v for k, v in worker.env.items() if k.startswith("SEGMENTER_")}}
    result = subprocess.run(
        [SEGMENTER, "replay", str(path), "--topic", "purchases"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"sent 50 lines to {stack.topic('purchases')}" in result.stdout
    assert "rejected 2" in result.stdout
    assert "'invalid_json': 1" in result.stdout and "'schema': 1" in result.stdout

    def orders(customer: str) -> int:
        status, body = worker.get(f"/customers/{customer}")
        return int(body["features"]["orders"]) if status == 200 else 0

    wait_for(lambda: all(orders(f"r{c}") == 10 for c in range(5)), timeout=60)
