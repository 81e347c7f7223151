"""The relay: publish unpublished outbox rows to Kafka in id order, then mark them published.

One relay runs at a time: redis-py's Lock, renewed before every batch and checked again before the
rows are marked (a relay paused past the TTL finds the lock gone and stops), so a second relay
never publishes alongside the first and never overtakes it within an aggregate. The rows are read
without a row lock and no transaction is open while Kafka acknowledges (no lock across the
network); they are marked only after Kafka acknowledged them (acks=all, idempotent producer), so a
crash in between re-publishes (at-least-once; consumers dedupe on the envelope id).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from flask import current_app
from sqlalchemy import delete, func, select, update

from app.db import utcnow
from app.extensions import db
from app.observability.metrics import OUTBOX_PUBLISH_FAILURES, OUTBOX_PUBLISHED
from app.outbox.models import OutboxEvent
from app.outbox.services import envelope
from app.redis.keys import OUTBOX_RELAY_LOCK_KEY
from app.redis.locks import LockLost, LockTimeout, keep, redis_lock

if TYPE_CHECKING:
    from kafka import KafkaProducer
    from redis.lock import Lock

log = logging.getLogger(__name__)

_producer_lock = threading.Lock()
_producer: Any = None
_producer_servers: str | None = None


class RelayError(RuntimeError):
    """Kafka did not acknowledge a batch; the rows stay unpublished and are retried."""


def get_producer(servers: str) -> KafkaProducer:
    global _producer, _producer_servers
    with _producer_lock:
        if _producer is None or _producer_servers != servers:
            from kafka import KafkaProducer

            _producer = KafkaProducer(
                bootstrap_servers=servers.split(","),
                acks="all",
                enable_idempotence=True,
                retries=5,
                linger_ms=5,
                # fail fast while Kafka is down: the rows stay and the task retries with backoff
                bootstrap_timeout_ms=5_000,
                request_timeout_ms=10_000,
                delivery_timeout_ms=20_000,
                max_block_ms=10_000,
                key_serializer=lambda k: k.encode(),
                value_serializer=orjson.dumps,  # compact JSON, as json.dumps with separators, in C
            )
            _producer_servers = servers
            _track_outbox_topics(_producer)
        return _producer


def _track_outbox_topics(producer: KafkaProducer) -> None:
    """Have the producer's metadata track every outbox topic from the start.

    kafka-python tracks a topic once a send finds it unknown. A broker that answers the bootstrap's
    metadata request (no topics asked) with every topic, as Tansu does, makes the existing ones
    known without being tracked. The next refresh, which asks for the tracked topics only, then
    drops them, and the producer's sender thread loops without pause on a partition that has no
    leader any more. That cost most of a core in the flash-sale bench. The library has no public
    call for this, so the sender's own ``add_topic`` is used."""
    from app.outbox.services import TOPIC_BY_AGGREGATE, topic_for

    add_topic = getattr(getattr(producer, "_sender", None), "add_topic", None)
    if add_topic is not None:
        for aggregate_type in TOPIC_BY_AGGREGATE:
            add_topic(topic_for(aggregate_type))


def reset_producer() -> None:
    global _producer
    with _producer_lock:
        if _producer is not None:
            try:
                _producer.close(timeout=2)
            except Exception:  # noqa: BLE001 - a broken producer is discarded either way
                pass
        _producer = None


def relay(batch: int = 500, max_batches: int = 20) -> int:
    """Publish up to ``batch * max_batches`` rows; returns how many were published."""
    servers = current_app.config["KAFKA_BOOTSTRAP_SERVERS"]
    if not servers:
        pending = db.session.scalar(select(func.count(OutboxEvent.id)).where(OutboxEvent.published_at.is_(None)))
        db.session.rollback()
        if pending:
            log.info("KAFKA_BOOTSTRAP_SERVERS not set: %s outbox events kept unpublished", pending)
        return 0
    published = 0
    try:
        with redis_lock(OUTBOX_RELAY_LOCK_KEY, ttl_ms=RELAY_LOCK_TTL_MS) as lock:
            for _ in range(max_batches):
                keep(lock, RELAY_LOCK_TTL_MS)  # a whole TTL for this batch, whatever came before
                count = _relay_batch(servers, batch, lock)
                published += count
                if count < batch:
                    break
    except LockTimeout:  # another relay is publishing: this turn is skipped
        return 0
    except LockLost:
        log.warning("outbox relay: the lock expired under this relay; stopping (the next run goes on)")
    return published


# a batch's Kafka wait is bounded (flush 15 s, each future 15 s, delivery timeout 20 s): the lock
# outlives it with room to spare, and is renewed before every batch
RELAY_LOCK_TTL_MS = 60_000


ENVELOPE_COLUMNS = (OutboxEvent.id, OutboxEvent.topic, OutboxEvent.event_id, OutboxEvent.type,
                    OutboxEvent.occurred_at, OutboxEvent.aggregate_type, OutboxEvent.aggregate_id,
                    OutboxEvent.schema_version, OutboxEvent.data)


def _relay_batch(servers: str, batch: int, lock: Lock) -> int:
    session = db.session
    # plain rows, not ORM objects: building and expiring an object per event was most of what the
    # relay cost its worker under a sale (and reading an expired one was a SELECT of its own)
    rows = session.execute(
        select(*ENVELOPE_COLUMNS).where(OutboxEvent.published_at.is_(None)).order_by(OutboxEvent.id).limit(batch)
    ).all()
    messages = [(row.id, row.topic, row.aggregate_id, envelope(row)) for row in rows]
    session.rollback()  # no transaction (and no lock) stays open while Kafka acknowledges
    if not messages:
        return 0
    ids = [message[0] for message in messages]
    try:
        producer = get_producer(servers)
        futures = [producer.send(topic, key=key, value=value) for _, topic, key, value in messages]
        producer.flush(timeout=15)
        for future in futures:
            future.get(timeout=15)
    except Exception as exc:  # noqa: BLE001 - kafka-python raises many kinds; all mean "not acked"
        reset_producer()
        OUTBOX_PUBLISH_FAILURES.inc()
        _record_failure(ids, exc)
        raise RelayError(f"publishing {len(ids)} outbox events failed: {exc!r}") from exc
    keep(lock, RELAY_LOCK_TTL_MS)  # still ours: no other relay published past these rows meanwhile
    now = utcnow()
    session.execute(update(OutboxEvent).where(OutboxEvent.id.in_(ids), OutboxEvent.published_at.is_(None))
                    .values(published_at=now).execution_options(synchronize_session=False))
    session.commit()
    for _, topic, _, _ in messages:
        OUTBOX_PUBLISHED.labels(topic=topic).inc()
    return len(ids)


def _record_failure(ids: list[int], exc: Exception) -> None:
    session = db.new_session()
    try:
        session.execute(update(OutboxEvent).where(OutboxEvent.id.in_(ids))
                        .values(attempts=OutboxEvent.attempts + 1, last_error=repr(exc)[:2000]))
        session.commit()
    except Exception:  # noqa: BLE001 - bookkeeping only
        session.rollback()
    finally:
        session.close()


def lag() -> dict[str, float]:
    """Unpublished count and the age of the oldest unpublished event (seconds)."""
    count, oldest = db.session.execute(
        select(func.count(OutboxEvent.id), func.min(OutboxEvent.occurred_at))
        .where(OutboxEvent.published_at.is_(None))
    ).one()
    db.session.rollback()
    age = 0.0
    if oldest is not None:
        if oldest.tzinfo is None:  # an aggregate (MIN) bypasses the column type: naive UTC
            oldest = oldest.replace(tzinfo=UTC)
        age = max(0.0, (utcnow() - oldest).total_seconds())
    return {"unpublished": int(count or 0), "oldest_age_seconds": age}


def prune(retention_hours: int, batch: int = 1000) -> int:
    cutoff = utcnow() - timedelta(hours=retention_hours)
    total = 0
    while True:
        ids = db.session.scalars(select(OutboxEvent.id).where(OutboxEvent.published_at.is_not(None),
                                                              OutboxEvent.published_at < cutoff).limit(batch)).all()
        if not ids:
            db.session.rollback()
            return total
        db.session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(ids)))
        db.session.commit()
        total += len(ids)


def replay(since: datetime, topic: str | None = None) -> int:
    """Publish again every outbox event since ``since`` (published or not), in id order."""
    servers = current_app.config["KAFKA_BOOTSTRAP_SERVERS"]
    if not servers:
        raise RelayError("KAFKA_BOOTSTRAP_SERVERS is not set")
    query = select(OutboxEvent).where(OutboxEvent.occurred_at >= since).order_by(OutboxEvent.id)
    if topic:
        query = query.where(OutboxEvent.topic == topic)
    producer = get_producer(servers)
    count = 0
    for row in db.session.scalars(query).yield_per(500):
        producer.send(row.topic, key=row.aggregate_id, value=envelope(row))
        count += 1
    producer.flush(timeout=30)
    db.session.rollback()
    return count
