"""The privacy path first: whose message is this, and may we look at it?

A message of a customer who opted out or was erased must leave no trace:
not in ``dead-letters`` (which keeps the raw payload), not in logs, training
or outputs. So the pipeline asks :func:`suppression_of` *before* it validates
a message: the customer is known from the message key, or for an unkeyed
message from a minimal extraction of ``customer_id`` out of the raw bytes
(:func:`payload_customer`, which works on broken JSON too), and looked up in
the ``suppressions`` table.

The ``suppressions`` table holds, per customer, what is suppressed and since
when (:class:`Suppression`): ``erased_ms`` (the erase request's time: events
up to it are dropped for ever, so a replay cannot bring the customer back),
``opted_out_ms`` (until an ``opt_in``) and ``opted_in_ms`` (the time of the
``opt_in`` that ended the last opt-out). The times also tell a privacy request
delivered again (a crash, a second forward) or overtaken by a newer one from
a request to carry out (:func:`stale_request`). Records written before
opt-outs were kept here are the erase time alone, as text;
:func:`read_suppression` reads both.

Cost on the hot path: one lookup per message (a dict probe of the batch's
layers and a RocksDB ``get`` of a key that is nearly always absent), the
lookup ``on_event`` made anyway before this check existed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from models.customer import is_opted_out

__all__ = [
    "Suppression",
    "customer_partition",
    "message_customer",
    "named_customers",
    "payload_customer",
    "read_suppression",
    "rejected_suppression",
    "stale_request",
    "suppression_of",
]

# "customer_id": "<a JSON string without escapes>" anywhere in the payload. Ids
# with escaped characters are not recognised here (they are after validation).
_CUSTOMER_ID = re.compile(rb'"customer_id"\s*:\s*"([^"\\]{1,200})"')


@dataclass(frozen=True)
class Suppression:
    """What is suppressed for one customer (epoch ms; ``None``: not)."""

    erased_ms: int | None = None
    opted_out_ms: int | None = None
    opted_in_ms: int | None = None  # (the latest consent decision is one of these two)

    def encode(self) -> bytes | None:
        """The table value (``None``, a tombstone, when nothing is suppressed).

        >>> Suppression(erased_ms=5).encode(), Suppression().encode() is None
        (b'{"erased_ms":5}', True)
        >>> Suppression(opted_in_ms=7).encode()  # (kept: an older opt-out must not undo it)
        b'{"opted_in_ms":7}'
        """
        value = {k: v for k, v in vars(self).items() if v is not None}
        return orjson.dumps(value) if value else None


def read_suppression(raw: bytes | None) -> Suppression | None:
    """A ``suppressions`` table value; ``None`` for no record.

    >>> read_suppression(b'{"opted_out_ms":7}')
    Suppression(erased_ms=None, opted_out_ms=7, opted_in_ms=None)
    >>> read_suppression(b"1700000000000")  # the erase time alone (older records)
    Suppression(erased_ms=1700000000000, opted_out_ms=None, opted_in_ms=None)
    >>> read_suppression(None) is None
    True
    """
    if raw is None:
        return None
    value = orjson.loads(raw)
    if isinstance(value, int):
        return Suppression(erased_ms=value)
    return Suppression(value.get("erased_ms"), value.get("opted_out_ms"), value.get("opted_in_ms"))


def stale_request(
    action: str, ts: int, record: Suppression, opted_out_since: int | None = None
) -> str | None:
    """Whether a privacy request is carried out already, or overtaken by a newer one.

    ``"done"``: an ``erase`` no newer than the erasure recorded (everything up to
    its time is gone, and what came after brought the customer back: not the
    request's to delete), or an ``opt_out``/``opt_in`` no newer than the same
    decision in force. ``"superseded"``: an ``opt_out``/``opt_in`` older than
    the opposite decision in force (an opt-in at the very time of an opt-out
    leaves the customer out). ``None``: carry it out. ``opted_out_since`` is the
    opt-out time of a customer record written before ``suppressions`` kept it.

    >>> old = Suppression(erased_ms=10, opted_in_ms=20)
    >>> [stale_request("erase", ts, old) for ts in (9, 10, 11)]
    ['done', 'done', None]
    >>> [stale_request("opt_out", ts, old) for ts in (19, 20, 21)]
    ['superseded', None, None]
    >>> [stale_request("opt_in", ts, Suppression(opted_out_ms=20)) for ts in (20, 21)]
    ['superseded', None]
    >>> stale_request("opt_in", 5, Suppression(), opted_out_since=9)
    'superseded'
    """
    if action == "erase":
        return "done" if record.erased_ms is not None and ts <= record.erased_ms else None
    if record.opted_out_ms is not None or opted_out_since is not None:
        decided, when = "opt_out", record.opted_out_ms or opted_out_since
    elif record.opted_in_ms is not None:
        decided, when = "opt_in", record.opted_in_ms
    else:
        return None
    assert when is not None
    if ts < when or (ts == when and (action == decided or action == "opt_in")):
        return "done" if action == decided else "superseded"
    return None


def payload_customer(raw: bytes | None) -> str | None:
    """The ``customer_id`` a raw payload names, read without parsing it (it may be broken).

    >>> payload_customer(b'{"event_id": "e1", "customer_id": "c42", "email": "x')
    'c42'
    >>> payload_customer(b'not json') is None, payload_customer(None) is None
    (True, True)
    """
    if not raw:
        return None
    match = _CUSTOMER_ID.search(raw)
    if match is None:
        return None
    return match.group(1).decode("utf-8", "replace")


def message_customer(message: Any) -> str | None:
    """Whose message this is: the key, or for an unkeyed message its payload's ``customer_id``.

    >>> from types import SimpleNamespace as M
    >>> message_customer(M(key=b"c1", value=b'{"customer_id": "c2"}'))
    'c1'
    >>> message_customer(M(key=None, value=b'{"customer_id": "c2"}'))
    'c2'
    """
    key = message.key
    if key is not None:
        return str(key.decode("utf-8", "replace"))
    return payload_customer(message.value)


def suppression_of(
    customer_id: str | None, partition: int, suppressions: Any, customers: Any
) -> str | None:
    """Why messages of ``customer_id`` on ``partition`` are dropped unread, or ``None``.

    ``"opted_out"`` until an ``opt_in``; ``"erased"`` while the customer has
    not come back since the erasure (a valid event newer than it brings them
    back, and their messages are treated as anyone's again). ``suppressions``
    and ``customers`` are the pipeline's :class:`~streams.worker.state_table.StateTable` s.
    """
    if customer_id is None:
        return None
    record = read_suppression(suppressions.get(customer_id, partition))
    if record is None:
        return None
    if record.opted_out_ms is not None:
        return "opted_out"
    if record.erased_ms is not None and customers.get(customer_id, partition) is None:
        return "erased"
    return None


def named_customers(key: bytes | None, value: bytes | None) -> list[str]:
    """The customers a message names: its key's and its payload's (they differ in a
    ``key_mismatch``).

    >>> named_customers(b"bob", b'{"customer_id": "eve"}'), named_customers(None, b"{")
    (['bob', 'eve'], [])
    """
    key_customer = key.decode("utf-8", "replace") if key is not None else None
    named = [c for c in (key_customer, payload_customer(value)) if c]
    return list(dict.fromkeys(named))


def rejected_suppression(
    message: Any,
    suppressions: Any,
    customers: Any,
    partitions: int,
    holds: Callable[[int], bool] = lambda partition: True,
    named: list[str] | None = None,
) -> str | None:
    """Before a message is dead-lettered: is any customer it names suppressed?

    Checks the customers it names (``named``; by default the key's customer and
    the payload's, :func:`named_customers`), on the message's partition and on
    the one a Java client would put each customer on (a producer with another
    partitioner, or an unkeyed message), when this worker ``holds`` it; and
    customers opted out before opt-outs were recorded in ``suppressions``
    (their record's ``opted_out`` flag). Runs on the rejection path only, so it
    may decode a record. A customer whose partition this worker does not hold
    is checked by the worker that does (``Router.forward_to_gate``).
    """
    if named is None:
        named = named_customers(message.key, message.value)
    for customer_id in named:
        places = {message.partition, customer_partition(customer_id, partitions)}
        for partition in sorted(places):
            if partition != message.partition and not holds(partition):
                continue  # another worker's: unknown here
            reason = suppression_of(customer_id, partition, suppressions, customers)
            if reason is not None:
                return reason
            raw = customers.get(customer_id, partition)
            if raw is not None and is_opted_out(orjson.loads(raw)):
                return "opted_out"
    return None


def customer_partition(customer_id: str, partitions: int) -> int:
    """The partition the Java client's partitioner (murmur2) gives the customer's key.

    >>> customer_partition("c1", 4) == customer_partition("c1", 4) < 4
    True
    """
    return (murmur2(customer_id.encode()) & 0x7FFFFFFF) % partitions
