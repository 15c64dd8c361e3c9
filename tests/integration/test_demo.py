"""`make run` as a person sees it: a live view in a terminal, readable lines in a log.

``scripts/demo.sh`` (what ``make run`` runs once the broker and topics are up)
is started in a pseudo-terminal (pexpect); what it draws goes through a VT100
emulator (pyte), and the screen is read like a person would: the panels are
there, events per second are positive while the simulator sends, the
customers counted are some and at most the simulated ones, and the view
refreshes in place (the panels appear once on the screen, not scrolled
repeatedly). Without a terminal the same script prints one-line summaries and
each notable change once. Both exit 0 with ``DEMO_EXIT_AFTER``.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte
import pytest

from tests.integration.conftest import REPO, Stack, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CUSTOMERS = 60
PANELS = ("Segmenter ·", "Segments (customers", "Churn risk", "notable changes")


def demo_env(stack: Stack, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SEGMENTER_KAFKA_BOOTSTRAP": stack.bootstrap,
            "SEGMENTER_TOPIC_PREFIX": stack.prefix,
            "SEGMENTER_APP_ID": stack.app_id,
            "SEGMENTER_PARTITIONS": str(stack.partitions),
            "SEGMENTER_WEB_PORT": str(free_port()),
            "SEGMENTER_DATA_DIR": str(tmp_path / "data"),
            "DEMO_CUSTOMERS": str(CUSTOMERS),
            "DEMO_DAYS": "60",
            "DEMO_RATE": "800",
            "DEMO_EXIT_AFTER": "12",
        }
    )
    return env


def number(pattern: str, text: str) -> int | None:
    match = re.search(pattern + r" ([\d,]+)", text)
    return int(match.group(1).replace(",", "")) if match else None


def test_make_run_shows_a_live_view_in_a_terminal(
    stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stack_factory()
    env = demo_env(stack, tmp_path)
    env.update({"TERM": "xterm-256color", "COLUMNS": "150", "LINES": "50"})
    screen = pyte.Screen(150, 50)
    stream = pyte.ByteStream(screen)
    child = pexpect.spawn(
        "bash", ["scripts/demo.sh"], cwd=str(REPO), env=env, dimensions=(50, 150), timeout=240
    )
    rates: list[int] = []
    customers: list[int] = []
    frames = 0
    last = ""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            stream.feed(child.read_nonblocking(65536, timeout=1))
        except pexpect.TIMEOUT:
            continue
        except pexpect.EOF:
            break
        text = "\n".join(screen.display)
        if all(panel in text for panel in PANELS):
            frames += 1
            last = text
            if (rate := number("events/s", text)) is not None:
                rates.append(rate)
            if (count := number("customers", text)) is not None:
                customers.append(count)
    child.close()
    assert child.exitstatus == 0, last
    assert frames > 0, "\n".join(screen.display)
    # Refreshed in place: each panel is on the screen once, not scrolled again and again.
    for panel in PANELS:
        assert last.count(panel) == 1, last
    assert "lifecycle" in last and "low" in last
    assert re.search(r"model (none yet|km-\d+ · (k=\d+|warming up))", last), last
    assert max(rates) > 0, f"events/s never above 0: {rates}"
    assert customers and 0 < customers[-1] <= CUSTOMERS, last
    assert "Traceback" not in last


def test_make_run_without_a_terminal_prints_summary_lines(
    stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stack_factory()
    env = demo_env(stack, tmp_path)
    done = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    summaries = [line for line in lines if line.startswith("events/s ")]
    assert len(summaries) >= 2, done.stdout[-3000:]
    assert "\x1b[" not in done.stdout  # no terminal control codes in a log
    assert any((number("events/s", line) or 0) > 0 for line in summaries), summaries
    final = number("customers", summaries[-1])
    assert final is not None and 0 < final <= CUSTOMERS, summaries[-1]
    notable = [line for line in lines if line.startswith("notable: ")]
    assert len(notable) == len(set(notable))  # nothing printed twice


def test_tail_shows_first_assignments_only_with_all(stack_factory: Callable[..., Stack]) -> None:
    """`segmenter tail` prints each record as it is on the topic; a new
    customer's first assignments (``initial``) only with ``--all``."""
    import asyncio

    from tests.integration.fault.conftest import history, read_topic, wait_committed

    stack = stack_factory()
    hist = history(customers=20, days=40, seed=31)
    asyncio.run(stack.produce(hist.events))
    worker = stack.worker("w1")
    wait_committed(stack, timeout=120)
    time.sleep(2)
    records = asyncio.run(read_topic(stack, "segment-changes"))
    moves = [r for r in records if not r["initial"]]
    assert moves and len(moves) < len(records)

    def tail(*extra: str, limit: int) -> list[str]:
        done = subprocess.run(
            [str(Path(worker.command[0])), "tail", "segment-changes", "--from-beginning",
             "--limit", str(limit), *extra],
            env=worker.env, capture_output=True, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def shown(lines: list[str]) -> list[str]:
        # "<ts> <customer> #<seq> <type>: …"; partitions interleave in any order
        return sorted(" ".join(line.split()[1:4]) for line in lines)

    def expected(records: list[dict[str, object]]) -> list[str]:
        return sorted(f"{r['customer_id']} #{r['seq']} {r['segment_type']}:" for r in records)

    assert shown(tail(limit=len(moves))) == expected(moves)
    assert shown(tail("--all", limit=len(records))) == expected(records)
