"""The secret salt of learner keys: configured, or generated once and kept on a topic.

The learner holds each customer's latest sample under a key derived from the
customer id (:func:`models.processing.learner_key`), so that an erasure or an
opt-out can remove it. The key travels on ``segment-training`` and is part of
the learner's state on ``segment-models``; unsalted, anyone reading those
topics could recompute it from a list of customer ids. Every worker must
compute the same key for a customer, whichever handles the erasure.

Where the salt comes from:

1. ``SEGMENTER_LEARNER_SALT`` (a secret from the deployment's secret store),
   when set. Recommended in production; stretched to 32 bytes with BLAKE2b.
2. Otherwise the first record of the ``learner-salt`` topic (one partition,
   never deleted). The first worker to find it empty writes 32 random bytes;
   if several race, every worker adopts the record at the lowest offset, so
   all agree. Its own topic, so that Kafka ACLs can grant it like the
   ``customers`` changelog (which holds the ids in clear anyway) and deny it to
   whoever may read the training data or the model.

The salt is never part of a published model. See ``docs/security.md``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.settings import Settings
from streams.topics import SALT_TOPIC, SALT_TOPIC_CONFIG

__all__ = ["derive_salt", "resolve_learner_salt"]

log = logging.getLogger(__name__)

SALT_BYTES = 32


def derive_salt(secret: str) -> bytes:
    """The salt used for a configured secret (any length in, 32 bytes out).

    >>> len(derive_salt("correct horse")), derive_salt("a") == derive_salt("a")
    (32, True)
    """
    return hashlib.blake2b(secret.encode(), digest_size=SALT_BYTES, person=b"learner-salt").digest()


async def resolve_learner_salt(settings: Settings, retry_seconds: float = 2.0) -> bytes:
    """The salt every worker of the deployment uses; retries until the broker answers."""
    if settings.learner_salt is not None:
        return derive_salt(settings.learner_salt.get_secret_value())
    while True:
        try:
            return await salt_from_topic(settings)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("cannot read the learner salt yet; retrying", exc_info=True)
            await asyncio.sleep(retry_seconds)


async def salt_from_topic(settings: Settings, timeout: float = 30.0) -> bytes:
    """The first record of the salt topic, written first if there is none."""
    topic = settings.topic(SALT_TOPIC)
    await ensure_salt_topic(settings)
    salt = await first_salt(settings, topic, timeout=0)
    if salt is None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            candidate = {"version": 1, "salt": secrets.token_hex(SALT_BYTES)}
            await producer.send_and_wait(topic, orjson.dumps(candidate), key=b"salt", partition=0)
        finally:
            await producer.stop()
        # Whoever wrote first wins, for every worker alike.
        salt = await first_salt(settings, topic, timeout=timeout)
        if salt is None:
            raise RuntimeError(f"no learner salt on {topic} after writing one")
        log.info("learner salt generated and kept on %s", topic)
    return salt


async def first_salt(settings: Settings, topic: str, timeout: float) -> bytes | None:
    """The salt at the lowest offset of ``topic`` (waiting up to ``timeout`` s for one)."""
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        start = (await consumer.beginning_offsets([tp]))[tp]
        if start > 0:
            log.error(
                "%s no longer starts at offset 0: the learner salt may have been deleted "
                "(the topic needs retention.ms=-1); learner keys may no longer match",
                topic,
            )
        await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout
        while True:
            end = (await consumer.end_offsets([tp]))[tp]
            if end > start:
                record = await consumer.getone()
                value = orjson.loads(record.value or b"{}")
                return bytes.fromhex(value["salt"])
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def ensure_salt_topic(settings: Settings) -> None:
    """Create the salt topic (one partition, never deleted) if it does not exist.

    A topic the broker created on first use would get the default retention,
    and the salt would be deleted with it a week later.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = settings.topic(SALT_TOPIC)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        if topic in set(await admin.list_topics()):
            return
        # (If another worker is quicker, the broker answers "already exists": fine.)
        await admin.create_topics(
            [
                NewTopic(
                    name=topic,
                    num_partitions=1,
                    replication_factor=settings.replication_factor,
                    topic_configs=dict(SALT_TOPIC_CONFIG),
                )
            ]
        )
    finally:
        await admin.close()
