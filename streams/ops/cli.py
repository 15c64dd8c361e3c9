"""The ``segmenter`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from tqdm import tqdm

from streams.ops import cli_errors
from streams.ops.cli_errors import CliError
from streams.settings import Settings, SettingsError, load_settings

__all__ = ["main"]

cli = typer.Typer(help="Segmenter: real-time customer segmentation on Kafka.", no_args_is_help=True)
kafka_cli = typer.Typer(help="The local single-node Kafka broker (KRaft).", no_args_is_help=True)
topics_cli = typer.Typer(help="Kafka topics.", no_args_is_help=True)
cli.add_typer(kafka_cli, name="kafka")
cli.add_typer(topics_cli, name="topics")

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


@cli.callback()
def _global_options(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar="SEGMENTER_DEBUG",
            help="Show the full traceback of a failure instead of one line.",
        ),
    ] = False,
) -> None:
    cli_errors.set_debug(debug)


def _settings() -> Settings:
    """The SEGMENTER_* settings, checked: a bad value is one line and exit status 2."""
    return load_settings()


def _local_broker(settings: Settings) -> Any:
    from streams.ops.broker import LocalBroker

    host, _, port = settings.kafka_bootstrap.partition(":")
    return LocalBroker(
        settings.data_dir, host=host, port=int(port or 9092), heap=settings.kafka_heap
    )


def _external(settings: Settings) -> bool:
    return settings.kafka_bootstrap != DEFAULT_BOOTSTRAP


@kafka_cli.command("start")
def kafka_start(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker.")] = 90.0,
) -> None:
    """Fetch the pinned Kafka jars (Maven), format KRaft storage, start and wait."""
    from streams.ops.broker import BrokerError

    settings = _settings()
    if _external(settings):
        typer.echo(f"SEGMENTER_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}: using that cluster")
        return
    broker = _local_broker(settings)
    try:
        pid = broker.start(timeout=timeout)
    except BrokerError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"kafka broker running on {broker.bootstrap} (pid {pid}, data {broker.home})")


@kafka_cli.command("stop")
def kafka_stop() -> None:
    """Stop the broker that `segmenter kafka start` started (nothing else)."""
    settings = _settings()
    if _external(settings):
        typer.echo("an external cluster is configured: nothing to stop")
        return
    stopped = _local_broker(settings).stop()
    typer.echo("kafka broker stopped" if stopped else "no local broker was running")


@kafka_cli.command("status")
def kafka_status() -> None:
    """Whether the broker runs and answers; exit code 1 when it does not."""
    from streams.ops.broker import metadata_ping

    settings = _settings()
    pid = None if _external(settings) else _local_broker(settings).pid()
    try:
        topics = asyncio.run(metadata_ping(settings.kafka_bootstrap))
    except Exception as exc:
        typer.echo(f"kafka on {settings.kafka_bootstrap}: not reachable ({exc!r}); pid {pid}")
        raise typer.Exit(1) from exc
    typer.echo(f"kafka on {settings.kafka_bootstrap}: up, {len(topics)} topics; local pid {pid}")


@topics_cli.command("create")
def topics_create() -> None:
    """Create every input, output and internal topic (idempotent)."""
    from streams.topics import create_topics

    settings = _settings()
    created, existing = asyncio.run(create_topics(settings))
    for name in created:
        typer.echo(f"created  {name}")
    typer.echo(f"{len(created)} created, {len(existing)} already existed")


@topics_cli.command("list")
def topics_list() -> None:
    """Show the topics Segmenter uses, with partitions and configuration."""
    from streams.topics import all_topics

    for spec in all_topics(_settings()):
        typer.echo(f"{spec.name:45} partitions={spec.partitions} {spec.config}")


@cli.command()
def worker(
    loglevel: Annotated[str | None, typer.Option(help="Override SEGMENTER_LOG_LEVEL.")] = None,
) -> None:
    """Run a Faust worker; start several (distinct SEGMENTER_WEB_PORT) to scale out."""
    from streams.ops.preflight import check_worker

    settings = _settings()  # checked before the heavy imports: a typo fails in a blink
    if loglevel is not None:  # the same check as the variable's, naming the option
        try:
            settings = load_settings(log_level=loglevel)
        except SettingsError as exc:
            lines = [line.replace("SEGMENTER_LOG_LEVEL=", "--loglevel ") for line in exc.lines]
            raise SettingsError(lines) from None
    check_worker(settings)

    import faust

    from streams.worker.app import create_app
    from streams.worker.gc_tuning import settle_heap

    if settings.event_loop == "uvloop":
        import mode.loop

        try:
            mode.loop.use("uvloop")  # before the app creates any loop
        except ImportError as exc:
            raise typer.BadParameter(
                "SEGMENTER_EVENT_LOOP=uvloop needs the uvloop package (pip install uvloop)"
            ) from exc
    app = create_app(settings)
    # Everything imported so far (river, scipy, sklearn: about a million objects)
    # lives as long as the worker: keep it out of the cyclic GC's full
    # collections, which otherwise stall the event loop for tens of ms; and
    # collect the young generation less often (streams.worker.gc_tuning).
    settle_heap()
    runner = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    runner.execute_from_commandline()


@cli.command()
def simulate(
    customers: Annotated[int, typer.Option(help="Number of synthetic customers.")] = 1000,
    days: Annotated[int, typer.Option(help="Days of history to generate.")] = 90,
    rate: Annotated[float | None, typer.Option(help="Events per second (default: max).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    bad_fraction: Annotated[float, typer.Option(help="Share of broken payloads.")] = 0.0,
    duplicate_fraction: Annotated[float, typer.Option(help="Share of re-sent events.")] = 0.0,
    truth: Annotated[Path | None, typer.Option(help="Ground-truth JSON Lines file.")] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write JSON Lines per topic to this folder instead.")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help="First simulated day, YYYY-MM-DD (default: DAYS days before today)."),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="Personas: default (the realistic mix), separated (five clearly different "
            "behaviours) or overlapping (the same, blurred); see docs/simulator.md."
        ),
    ] = "default",
) -> None:
    """Produce synthetic customers (latent personas, churners) to the input topics."""
    from models.eventtime import MS_PER_DAY, parse_ts
    from streams.ops.preflight import check_topics
    from streams.ops.producing import produce
    from streams.tools.persona_modes import MODES, simulation
    from streams.topics import INPUT_TOPICS

    if mode not in MODES:
        raise CliError(f"--mode {mode!r}: must be one of {', '.join(MODES)}", 2)

    settings = _settings()
    if start is not None:
        try:
            start_ms = parse_ts(f"{start}T00:00:00Z")
        except ValueError:
            raise CliError(f"--start {start!r}: expected a date YYYY-MM-DD", 2) from None
    else:
        # End the history today, so no event lies in the future (those are rejected).
        start_ms = (int(time.time() * 1000) // MS_PER_DAY - days) * MS_PER_DAY
    sim = simulation(
        mode,
        customers,
        days,
        seed,
        start_ms=start_ms,
        bad_fraction=bad_fraction,
        duplicate_fraction=duplicate_fraction,
    )
    truth = truth or settings.data_dir / "ground-truth.jsonl"
    truth.parent.mkdir(parents=True, exist_ok=True)
    sim.write_ground_truth(truth)
    counts: Counter[str] = Counter()
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        files: dict[str, Any] = {}
        try:
            for topic, _key, value in tqdm(sim.raw_records(), total=sim.count_hint(), unit="ev"):
                if topic not in files:
                    files[topic] = (output / f"{topic}.jsonl").open("wb")
                files[topic].write(value + b"\n")
                counts[topic] += 1
        finally:
            for handle in files.values():
                handle.close()
        typer.echo(f"wrote {sum(counts.values())} events to {output}: {dict(counts)}")
        return
    check_topics(settings, [settings.topic(name) for name in INPUT_TOPICS])
    bar = tqdm(total=sim.count_hint(), unit="ev", desc="simulate", mininterval=0.5)

    def on_sent(topic: str) -> None:
        counts[topic] += 1
        bar.update()

    records = ((settings.topic(t), k, v) for t, k, v in sim.raw_records())
    sent = asyncio.run(produce(settings.kafka_bootstrap, records, rate=rate, on_sent=on_sent))
    bar.close()
    typer.echo(f"sent {sent} events {dict(counts)}; ground truth in {truth}")


@cli.command()
def replay(
    file: Annotated[Path, typer.Argument(help="JSON Lines file, one event per line.")],
    topic: Annotated[str, typer.Option(help="Input topic (without prefix), e.g. purchases.")],
    rate: Annotated[float | None, typer.Option(help="Events per second (default: max).")] = None,
    send_invalid: Annotated[
        bool,
        typer.Option(help="Also send lines that fail validation (they will be dead-lettered)."),
    ] = False,
) -> None:
    """Replay a JSON Lines file into an input topic, with a progress bar."""
    from schemas import InvalidEvent, validate
    from streams.ops.preflight import check_topics
    from streams.ops.producing import produce
    from streams.topics import INPUT_TOPICS

    if topic not in INPUT_TOPICS:
        typer.secho(
            f"unknown topic {topic!r}; one of {', '.join(INPUT_TOPICS)}", fg="red", err=True
        )
        raise typer.Exit(2)
    settings = _settings()
    rejected: Counter[str] = Counter()
    full_topic = settings.topic(topic)
    handle = file.open("rb")  # a missing or unreadable file fails here, before Kafka
    check_topics(settings, [full_topic])

    def records() -> Any:
        with handle:
            for line in tqdm(handle, unit="line", desc=f"replay {file.name}", mininterval=0.5):
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                try:
                    event = validate(topic, line, min_ts_ms=settings.min_event_time_ms)
                except InvalidEvent as err:
                    rejected[err.reason] += 1
                    if send_invalid:
                        yield full_topic, None, line
                    continue
                yield full_topic, event["customer_id"].encode(), line

    sent = asyncio.run(produce(settings.kafka_bootstrap, records(), rate=rate))
    total_rejected = sum(rejected.values())
    typer.echo(f"sent {sent} lines to {full_topic}; rejected {total_rejected} {dict(rejected)}")


@cli.command()
def tail(
    topic: Annotated[str, typer.Argument(help="Topic without prefix, e.g. segment-changes.")],
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest record.")] = False,
    limit: Annotated[int | None, typer.Option(help="Stop after this many records.")] = None,
    show_all: Annotated[
        bool,
        typer.Option("--all", help="Also show first assignments (records with initial: true)."),
    ] = False,
) -> None:
    """Pretty-print the records of an output topic as they arrive."""
    from streams.ops.preflight import check_topics
    from streams.ops.tailing import tail_topic

    settings = _settings()
    check_topics(settings, [settings.topic(topic)])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(tail_topic(settings, settings.topic(topic), from_beginning, limit, show_all))


@cli.command()
def top(
    url: Annotated[
        list[str] | None,
        typer.Option(help="A worker's base URL; repeat for each worker (default: this host's)."),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(help="Seconds between refreshes (default 1 on a terminal, 5 in logs)."),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
    kafka: Annotated[
        bool, typer.Option(help="Tail the output topics for the notable changes.")
    ] = True,
) -> None:
    """Live view of a deployment: rate, lag, segments, churn levels, model, notable changes."""
    from streams.ops.top.live import run_top

    settings = _settings()
    host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "") else settings.web_host
    urls = url or [f"http://{host}:{settings.web_port}"]
    asyncio.run(run_top(urls, settings, interval=interval, duration=duration, kafka=kafka))


@cli.command()
def customer(
    customer_id: Annotated[str, typer.Argument(help="The customer id.")],
    raw: Annotated[bool, typer.Option(help="Print the JSON document as is.")] = False,
) -> None:
    """Show a customer's features, segments and churn risk (from any worker)."""
    from streams.ops.cli_reports import fetch
    from streams.ops.tailing import render_customer

    # Any id is a path segment: spaces, slashes and non-ASCII are percent-encoded.
    path = f"/customers/{urllib.parse.quote(customer_id, safe='')}"
    unknown = f"customer {customer_id!r} is unknown (or opted out or erased)"
    document = fetch(_settings(), path, timeout=10, not_found=unknown)
    if raw:
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        render_customer(document)


@cli.command()
def segments(
    segment_type: Annotated[
        str | None, typer.Option("--type", help="Only segments of this type, e.g. lifecycle.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
) -> None:
    """The segment catalogue with every segment's KPIs (from any worker)."""
    from rich.console import Console

    from streams.ops.cli_reports import fetch, render_segments

    document = fetch(_settings(), "/segments")
    if as_json:
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        render_segments(document, Console(highlight=False), segment_type)


@cli.command()
def experiments(
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON document.")] = False,
) -> None:
    """Every experiment: arms, outcomes and the uplift with its 95 % interval."""
    from rich.console import Console

    from streams.ops.cli_reports import fetch, render_experiments

    document = fetch(_settings(), "/experiments")
    if as_json:
        typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        render_experiments(document, Console(highlight=False))


@cli.command()
def evaluate(
    customers: Annotated[int, typer.Option(help="Simulate this many customers.")] = 2000,
    days: Annotated[
        int,
        typer.Option(
            help="Simulated days. Every simulated history starts on day 0: the model learns "
            "from snapshots after the 90-day warm-up whose outcome matured by the cut-off."
        ),
    ] = 240,
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 42,
    history: Annotated[
        list[Path] | None,
        typer.Option(
            help="History: JSON Lines of input events (per-topic files or a `topic` field), "
            "or a transaction log (CSV or JSON Lines: customer_id, ts/timestamp/date, amount); "
            "repeatable."
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="A public purchase history shipped by an installed package: cdnow, "
            "cdnow-sample (needs `pip install lifetimes`)."
        ),
    ] = None,
    cutoff: Annotated[
        list[str] | None,
        typer.Option(
            help="Cut-off date YYYY-MM-DD (required with --history/--dataset; default for a "
            "simulation: days - horizon). Repeat it for several splits of one replay."
        ),
    ] = None,
    horizon: Annotated[
        list[int] | None,
        typer.Option(
            help="Days after the cut-off that define churn (default 30 for a simulation, "
            "90 for a history); one per --cutoff, or one for all."
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            help="Churn = no `purchase` or no `activity` in the horizon (default: activity for "
            "a simulation, purchase for a history)."
        ),
    ] = None,
    model_horizon: Annotated[
        int | None,
        typer.Option(
            help="H of the streaming churn model (default: --horizon). Outcomes mature H days "
            "after their snapshot: the model learns only from histories longer than H."
        ),
    ] = None,
    model_offset: Annotated[
        int | None,
        typer.Option(
            help="Days from the score to the model's outcome window (default: --horizon for a "
            "simulation, whose churn is 'stops within the horizon'; 0 for a history)."
        ),
    ] = None,
    warmup_days: Annotated[
        int,
        typer.Option(help="Snapshots of the first days of the replay are not learnt."),
    ] = 90,
    learning: Annotated[
        bool, typer.Option(help="--no-learning scores with the prior (hand-set) weights only.")
    ] = True,
    levels: Annotated[
        bool,
        typer.Option(
            help="--no-levels evaluates silent customers only on their snapshot and outcome "
            "days: the same scores and model, much faster, no lead-time figures."
        ),
    ] = True,
    medium: Annotated[
        float,
        typer.Option(help="Churn score entering `medium` (SEGMENTER_CHURN_MEDIUM_THRESHOLD)."),
    ] = Settings.model_fields["churn_medium_threshold"].default,
    high: Annotated[
        float, typer.Option(help="Churn score entering `high` (SEGMENTER_CHURN_HIGH_THRESHOLD).")
    ] = Settings.model_fields["churn_high_threshold"].default,
    active_days: Annotated[
        int,
        typer.Option(
            help="Population: customers active in these days before the cut-off (0: everyone)."
        ),
    ] = 60,
    mode: Annotated[
        str, typer.Option(help="fast (one score per customer-day) or exact (worker code path).")
    ] = "fast",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Replay a history through the churn logic and measure the churn score and events.

    The streaming score (the worker's code, learning from outcomes in stream
    time) is compared in the same run with recency alone and with BG/NBD and
    Pareto/NBD fitted in batch on the calibration data.
    """
    from models.churn import level_thresholds
    from streams.tools.evaluation import (
        dataset_splits,
        evaluate_simulation,
        history_splits,
        render_report,
        simulation_day,
    )
    from streams.tools.simulator import Simulation

    if label is not None and label not in ("purchase", "activity"):
        typer.secho("--label must be purchase or activity", fg="red", err=True)
        raise typer.Exit(2)
    real = bool(history) or dataset is not None
    cutoffs = list(cutoff or [])
    horizons = list(horizon or [90 if real else 30])
    if len(horizons) == 1:
        horizons *= max(1, len(cutoffs))
    if cutoffs and len(horizons) != len(cutoffs):
        typer.secho("give one --horizon per --cutoff, or one for all", fg="red", err=True)
        raise typer.Exit(2)
    try:
        thresholds = level_thresholds(medium, high)
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    options: dict[str, Any] = {
        "active_days": active_days,
        "mode": mode,
        "label": label or ("purchase" if real else "activity"),
        "model_horizon_days": model_horizon,
        "learning": learning,
        "levels": levels,
        "thresholds": thresholds,
        "warmup_days": warmup_days,
    }
    if model_offset is not None:
        options["model_offset_days"] = model_offset
    try:
        if real:
            if not cutoffs:
                typer.secho("--history and --dataset need --cutoff YYYY-MM-DD", fg="red", err=True)
                raise typer.Exit(2)
            splits = list(zip(cutoffs, horizons, strict=True))
            if dataset is not None:
                reports = dataset_splits(dataset, splits, **options)
            else:
                assert history is not None
                reports = history_splits(history, splits, **options)
        else:
            if len(cutoffs) > 1:
                typer.secho("a simulation takes one --cutoff", fg="red", err=True)
                raise typer.Exit(2)
            sim = Simulation(customers=customers, days=days, seed=seed)
            cutoff_day = simulation_day(sim, cutoffs[0]) if cutoffs else None
            reports = [
                evaluate_simulation(sim, cutoff_day=cutoff_day, horizon_days=horizons[0], **options)
            ]
    except (ValueError, KeyError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        payload: Any = reports[0].to_dict() if len(reports) == 1 else [r.to_dict() for r in reports]
        typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
    else:
        for report in reports:
            render_report(report)


def main() -> None:
    """Console-script entry point: expected failures are one line on stderr (cli_errors)."""
    cli_errors.run(cli)
