"""``segmenter worker`` that dies at the worst moment of its N-th commit.

``python -m tests.integration.fault.crashing_worker`` runs the worker with one
change: the N-th time it is about to write customer state
(``SEGMENTER_TEST_CRASH_AT_WRITE``, counting writes that hold something), it
exits at once, as a ``kill -9`` would, after that commit's outputs were
acknowledged by the broker and before its state reached the changelog. After a
restart the same changes are decided again from the older state, and sent
again: the case the output ids exist for. A ``kill -9`` from outside lands in
that gap only by chance.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from streams.ops.cli import main
from streams.worker import outbox, state_table

__all__: list[str] = []


def crash_at_write(n: int) -> None:
    """Exit before the ``n``-th state write that follows acknowledged changes."""
    flush_outputs = outbox.Outbox.flush
    flush_state = state_table.StateTable.flush
    count = 0
    changes_acked = 0

    async def flush_outputs_counting(self: outbox.Outbox) -> Any:
        nonlocal changes_acked
        records = await flush_outputs(self)
        changes_acked += sum(r.output in ("segment-changes", "churn-risk") for r in records)
        return records

    async def flush_state_or_die(self: state_table.StateTable, *layers: Any) -> int:
        nonlocal count, changes_acked
        if changes_acked and any(values for layer in layers for values in layer.values()):
            count += 1
            if count >= n:
                print(
                    f"crashing_worker: exit after {changes_acked} changes were acknowledged, "
                    "before the state that decided them was written",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(137)  # no cleanup, no commit: like SIGKILL
            changes_acked = 0
        return await flush_state(self, *layers)

    outbox.Outbox.flush = flush_outputs_counting  # type: ignore[method-assign]
    state_table.StateTable.flush = flush_state_or_die  # type: ignore[method-assign]


if __name__ == "__main__":
    crash_at_write(int(os.environ["SEGMENTER_TEST_CRASH_AT_WRITE"]))
    sys.argv = ["segmenter", "worker"]
    main()
