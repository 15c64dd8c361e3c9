"""The learners' wiring: the cluster learner's agent, the churn learner's timer,
and the training batches every worker sends them.

Workers buffer learner samples while they handle events and sweep
(``Runtime.training_buffer``) and send them every half second (or as soon as
a daily pass finished) on the one-partition ``segment-training`` topic, with
how far in stream time each of their input partitions is complete
(``through``). Whichever worker owns that
partition runs the learners: the cluster learner (:mod:`streams.worker.learner`)
closes each day once every partition is past it and publishes the model on
``segment-models`` (its changes announced on ``segment-changes`` first); the
churn learner (:mod:`streams.worker.churn_runner`) refits on its own timer. Refits
take up to seconds, so they run on one thread of their own while the event
loop keeps ingesting. Wired by :func:`streams.worker.app.create_app`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import orjson

from streams.codec import encode
from streams.settings import Settings
from streams.worker.assignment import assigned_partitions, owns_training
from streams.worker.churn_learner import CHURN_MODEL_KEY
from streams.worker.churn_runner import ChurnLearnerRunner
from streams.worker.learner import LearnerHost
from streams.worker.model_events import MODEL_KEY, model_change_events
from streams.worker.pipeline import Pipeline
from streams.worker.runtime import Runtime
from streams.worker.wakeup import install_loop

__all__ = ["TRAINING_FLUSH_SECONDS", "TRAINING_ITEMS_PER_MESSAGE", "install_learning"]

log = logging.getLogger(__name__)

TRAINING_ITEMS_PER_MESSAGE = 1000  # training samples are a few hundred bytes each
TRAINING_FLUSH_SECONDS = 0.5

OffLoop = Callable[..., Awaitable[Any]]


def install_learning(
    app: faust.App,
    settings: Settings,
    rt: Runtime,
    pipeline: Pipeline,
    training: Any,
    models: Any,
    outputs: dict[str, Any],
) -> None:
    """Register the learners' agent and timers and the training flush on ``app``."""
    # Refits and the BG/NBD fit take up to seconds: they run on one thread of
    # their own (so they stay serialised) while the event loop keeps ingesting.
    learner_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learner")

    async def off_loop(fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(learner_thread, fn, *args)

    churn = ChurnLearnerRunner(rt, lambda: owns_training(app, settings))
    _install_cluster_learner(app, settings, rt, churn, off_loop, training, models, outputs)
    _install_churn_refit(app, settings, rt, churn, off_loop, models)
    _install_training_flush(app, settings, rt, pipeline, training)


def _install_cluster_learner(
    app: faust.App,
    settings: Settings,
    rt: Runtime,
    churn: ChurnLearnerRunner,
    off_loop: OffLoop,
    training: Any,
    models: Any,
    outputs: dict[str, Any],
) -> None:
    learner = LearnerHost(rt)

    @app.agent(training, name="segmenter.learner", concurrency=1)
    async def on_training(stream: Any) -> None:
        async for value in stream:
            await rt.broadcast_caught_up.wait()  # resume from the latest snapshot first
            try:
                batch = orjson.loads(value)
                # A frozen model (SEGMENTER_LEARNING=false) learns nothing, but an
                # erasure still removes the customer's sample and is republished.
                items = batch.get("items", [])
                forgotten = await off_loop(
                    learner.learn, items, settings.learning, batch.get("through")
                )
                if settings.learning:
                    await off_loop(churn.learn, items)
                # The model moves on in stream time: once every input partition is
                # past a period (a day), it is refitted and published; never on
                # the wall clock, so a replay gives the same model timeline. After
                # an erasure or opt-out at once: the previous snapshot on
                # segment-models still holds the sample (until compaction).
                changed = settings.learning and await off_loop(learner.advance)
                # (a day closed without a change is published too: workers pace
                # themselves on the model's as_of, streams.worker.model_pace)
                moved_on = settings.learning and learner.moved_on()
                if changed or forgotten or moved_on:
                    announced = learner.published_version
                    message = await off_loop(learner.snapshot_message)
                    # Announced (and acknowledged) before the snapshot that marks
                    # them announced: a learner that moves or restarts in between
                    # resumes from the previous snapshot and announces the same
                    # changes again, with the same event ids; never none of them.
                    sent = [
                        await outputs["segment-changes"].send(
                            key=MODEL_KEY.encode(), value=encode(event)
                        )
                        for event in model_change_events(message["snapshot"], announced)
                    ]
                    for delivery in sent:
                        await delivery
                    await models.send(key=b"clusters", value=encode(message))
            except Exception:  # a bad batch must not stop the worker
                log.exception("learner failed on a training batch; batch skipped")


def _install_churn_refit(
    app: faust.App,
    settings: Settings,
    rt: Runtime,
    churn: ChurnLearnerRunner,
    off_loop: OffLoop,
    models: Any,
) -> None:
    @app.timer(interval=10.0)
    async def refit_and_publish_churn_model() -> None:
        # Only the owner of the training partition learns; refits follow the stream clock.
        if not settings.learning or not rt.broadcast_caught_up.is_set():
            return
        try:
            message = await off_loop(churn.step)
        except Exception:
            log.exception("churn learner step failed; retrying at the next tick")
            return
        if message is not None:
            await models.send(key=CHURN_MODEL_KEY, value=encode(message))


def _install_training_flush(
    app: faust.App, settings: Settings, rt: Runtime, pipeline: Pipeline, training: Any
) -> None:
    # partition -> samples complete through (ms), as last sent to the learner
    sent_through: dict[str, int] = {}
    last_training_send = [0.0]

    async def flush_training() -> None:
        through: dict[str, int] = {}
        for partition in assigned_partitions(app, settings.topic("purchases")):
            mark = pipeline.training_through(partition)
            if mark is not None:
                through[str(partition)] = mark
        wall = time.monotonic()
        if rt.training_buffer or through != sent_through or wall - last_training_send[0] > 5.0:
            batch, rt.training_buffer = rt.training_buffer, []
            # In messages well below the producer's 1 MB request limit: a backlog
            # gives more samples per half second than one message may carry. The
            # last one says how far in stream time every sample is in.
            starts = range(0, len(batch), TRAINING_ITEMS_PER_MESSAGE) or [0]
            for start in starts:
                message: dict[str, Any] = {
                    "worker": rt.worker_id,
                    "items": batch[start : start + TRAINING_ITEMS_PER_MESSAGE],
                }
                if start == starts[-1]:
                    message["through"] = through
                await training.send(value=encode(message))
            sent_through.clear()
            sent_through.update(through)
            last_training_send[0] = wall

    # Every half second, or as soon as a daily pass finished (streams.worker.wakeup).
    install_loop(app, TRAINING_FLUSH_SECONDS, rt.wakeups.training, flush_training)
