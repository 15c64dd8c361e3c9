"""Every topic Segmenter reads or writes, and how to create them.

Input topics, output topics, the repartition topic and the customer table's
changelog share one partition count so they are co-partitioned by
``customer_id``. Internal broadcast topics have one partition: one learner owns
the model; every worker reads every snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.topics import INPUT_TOPICS, OUTPUT_TOPICS
from streams.settings import Settings
from streams.worker.repartition import REPARTITION_TOPIC

__all__ = [
    "INPUT_TOPICS",
    "OUTPUT_TOPICS",
    "TopicCreationError",
    "TopicSpec",
    "all_topics",
    "create_topics",
]

TRAINING_TOPIC = "segment-training"
MODELS_TOPIC = "segment-models"
CLOCK_TOPIC = "stream-clock"
TICKS_TOPIC = "clock-ticks"
# The learner-key salt (streams.worker.learner_salt): one record, never deleted.
SALT_TOPIC = "learner-salt"
SALT_TOPIC_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
TABLE_NAMES = ("customers", "suppressions")
# Output topics keyed by customer and segment type, read as the current state.
COMPACTED_OUTPUTS = frozenset({"segment-memberships"})


class TopicCreationError(RuntimeError):
    """Kafka refused to create topics (its answer carries an error per topic)."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic's name (with prefix), partition count and configuration."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def all_topics(settings: Settings) -> list[TopicSpec]:
    """Return the specs of every topic, in creation order.

    Examples
    --------
    >>> specs = all_topics(Settings(topic_prefix="t-", partitions=3))
    >>> [(s.name, s.partitions) for s in specs][:2]
    [('t-purchases', 3), ('t-browsing', 3)]
    >>> next(s for s in specs if s.name == 't-segment-models').config['cleanup.policy']
    'compact'
    """
    n = settings.partitions
    specs = [TopicSpec(settings.topic(name), n) for name in INPUT_TOPICS]
    compact = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}
    # segment-memberships: the latest segment per customer and type (audiences).
    specs += [
        TopicSpec(settings.topic(name), n, dict(compact) if name in COMPACTED_OUTPUTS else {})
        for name in OUTPUT_TOPICS
    ]
    specs.append(TopicSpec(settings.topic(TRAINING_TOPIC), 1, {"retention.ms": "86400000"}))
    specs.append(TopicSpec(settings.topic(MODELS_TOPIC), 1, dict(compact)))
    specs.append(TopicSpec(settings.topic(CLOCK_TOPIC), 1, dict(compact)))
    # Timer ticks for silent customers, co-partitioned with the customer table.
    specs.append(TopicSpec(settings.topic(TICKS_TOPIC), n, {"retention.ms": "3600000"}))
    specs.append(TopicSpec(settings.topic(SALT_TOPIC), 1, dict(SALT_TOPIC_CONFIG)))
    # Messages that landed on another partition than their customer's, forwarded
    # to it (streams.worker.repartition); kept as long as the input topics (the broker's
    # default retention), since their sources are committed once forwarded.
    specs.append(TopicSpec(settings.topic(REPARTITION_TOPIC), n))
    # Faust would create changelogs itself; creating them here pins their
    # partition count to the input topics' (co-partitioning).
    for table in TABLE_NAMES:
        specs.append(TopicSpec(changelog_topic(settings, table), n, dict(compact)))
    return specs


def changelog_topic(settings: Settings, table: str) -> str:
    """Faust's changelog topic name of ``table`` (``<app_id>-<table>-changelog``)."""
    return f"{settings.app_id}-{settings.topic(table)}-changelog"


async def create_topics(settings: Settings) -> tuple[list[str], list[str]]:
    """Create missing topics; return (created, already_existing) names."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        specs = all_topics(settings)
        missing = [s for s in specs if s.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=s.name,
                        num_partitions=s.partitions,
                        replication_factor=settings.replication_factor,
                        topic_configs=s.config,
                    )
                    for s in missing
                ]
            )
            _raise_refusals(response.topic_errors)
        return [s.name for s in missing], sorted(s.name for s in specs if s.name in existing)
    finally:
        await admin.close()


def _raise_refusals(topic_errors: list[tuple[object, ...]]) -> None:
    """Raise :class:`TopicCreationError` for the topics Kafka did not create.

    A CreateTopics answer succeeds as a whole and says per topic what failed
    (e.g. a replication factor above the number of brokers); ignoring it would
    report topics as created that do not exist.

    >>> _raise_refusals([("t-a", 0, None), ("t-b", 36, "exists")])  # 36: already exists
    >>> try:
    ...     _raise_refusals([("t-a", 38, "Replication factor: 3 larger than ...")])
    ... except TopicCreationError as err:
    ...     print(err)
    Kafka refused to create 1 topic(s), e.g. t-a: InvalidReplicationFactorError (Replication ...)
    """
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    refused = [
        (str(entry[0]), int(str(entry[1])), entry[2] if len(entry) > 2 else None)
        for entry in topic_errors
        if entry[1] not in (0, TopicAlreadyExistsError.errno)
    ]
    if refused:
        topic, code, message = refused[0]
        detail = f" ({message})" if message else ""
        raise TopicCreationError(
            f"Kafka refused to create {len(refused)} topic(s), e.g. {topic}: "
            f"{for_code(code).__name__}{detail}"
        )
