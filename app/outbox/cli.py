"""`flask --app wsgi events tail|replay|status`: a developer's view of the event stream."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import click
from flask import current_app
from flask.cli import AppGroup

events_cli = AppGroup("events", help="Domain events: the outbox and its Kafka topics.")


@events_cli.command("tail")
@click.option("--topic", "topics", multiple=True, help="Topic (default: all three of the prefix).")
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offset.")
@click.option("--max-messages", type=int, default=0, help="Stop after N messages (0: run until Ctrl-C).")
@click.option("--timeout", type=float, default=0, help="Stop after this many idle seconds (0: never).")
def tail(topics: tuple[str, ...], from_beginning: bool, max_messages: int, timeout: float) -> None:
    """Print events from Kafka as they arrive, one JSON object per line."""
    from kafka import KafkaConsumer

    from app.outbox.services import TOPIC_BY_AGGREGATE

    servers = current_app.config["KAFKA_BOOTSTRAP_SERVERS"]
    if not servers:
        raise click.UsageError("KAFKA_BOOTSTRAP_SERVERS is not set")
    prefix = current_app.config["KAFKA_TOPIC_PREFIX"]
    topics = topics or tuple(f"{prefix}.{name}" for name in TOPIC_BY_AGGREGATE.values())
    from kafka.errors import KafkaError

    logging.getLogger("kafka").setLevel(logging.WARNING)  # stdout is the events; stderr only what matters
    try:
        consumer = KafkaConsumer(
            *topics, bootstrap_servers=servers.split(","),
            auto_offset_reset="earliest" if from_beginning else "latest", enable_auto_commit=False,
            consumer_timeout_ms=int(timeout * 1000) if timeout else float("inf"),
        )
    except KafkaError as exc:
        raise click.ClickException(f"cannot reach Kafka at {servers}: {exc}") from None
    seen = 0
    try:
        for message in consumer:
            value = json.loads(message.value)
            click.echo(json.dumps({"topic": message.topic, "partition": message.partition,
                                   "offset": message.offset, "key": (message.key or b"").decode(),
                                   "event": value}, ensure_ascii=False))
            seen += 1
            if max_messages and seen >= max_messages:
                break
    finally:
        consumer.close()


@events_cli.command("replay")
@click.option("--since", required=True, help="ISO-8601 time, e.g. 2026-11-27T10:00:00Z")
@click.option("--topic", default=None)
def replay_cmd(since: str, topic: str | None) -> None:
    """Re-publish outbox events that occurred since SINCE (consumers dedupe on the event id)."""
    from kafka.errors import KafkaError

    from app.outbox.relay import RelayError, replay

    try:
        moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{since!r} is not an ISO-8601 time", param_hint="--since") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        count = replay(moment, topic)
    except (RelayError, KafkaError) as exc:
        raise click.ClickException(f"nothing was re-published: {exc}") from None
    click.echo(f"re-published {count} events")


@events_cli.command("status")
def status() -> None:
    """Outbox lag: unpublished events and the age of the oldest."""
    from app.outbox.relay import lag

    click.echo(json.dumps(lag()))
