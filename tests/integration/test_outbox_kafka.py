"""Outbox -> Kafka against a real Kafka-compatible broker (Tansu)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import func, select

from app.db import transaction, utcnow
from app.extensions import db
from app.outbox.models import OutboxEvent
from tests.helpers import admitted_pass, wait_reservation
from tests.support import ROOT, wait_for


def consume(bootstrap: str, topic: str, timeout_ms: int = 3000) -> list[dict]:
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=timeout_ms, max_poll_interval_ms=5000)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            return []
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        return [{"key": m.key.decode(), "partition": m.partition, "offset": m.offset, **json.loads(m.value)}
                for m in consumer]
    finally:
        consumer.close()


def unpublished(app) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count(OutboxEvent.id)).where(OutboxEvent.published_at.is_(None)))
        db.session.rollback()
        return count


def relay_until_empty(app) -> None:
    from app.outbox.relay import RelayError, relay

    def drained() -> bool:
        with app.app_context():
            try:
                relay()
            except RelayError:
                return False
        return unpublished(app) == 0

    wait_for(drained, timeout=60, interval=0.5, message="outbox drained to Kafka")


def full_flow(app, client, make_event, make_user) -> tuple[dict, dict, str]:
    from app.queue.events import drain_events

    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    user = make_user()
    token = admitted_pass(client, app, event["id"], user)
    r = client.post("/api/tickets/reserve", json={"event_id": event["id"], "section_id": event["sections"][0]["id"],
                                                  "quantity": 1},
                    headers={**user["headers"], "X-Admission-Token": token, "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 202
    rid = r.json["reservation_id"]
    wait_reservation(client, user, rid)
    c = client.post(f"/api/tickets/{rid}/confirm", json={"payment_token": "tok_ok"}, headers=user["headers"])
    assert c.status_code == 200
    with app.app_context(), transaction():
        drain_events(event["id"])
    return event, user, rid


def test_full_flow_arrives_in_order_with_the_envelope(app, client, worker, tansu, make_event, make_user):
    event, user, rid = full_flow(app, client, make_event, make_user)
    relay_until_empty(app)
    reservations = [m for m in consume(tansu.bootstrap, "tickets.reservations") if m["aggregate_id"] == rid]
    assert [m["type"] for m in reservations] == ["SeatsHeld", "ReservationConfirmed"]
    assert len({m["partition"] for m in reservations}) == 1 and all(m["key"] == rid for m in reservations)
    first = reservations[0]
    assert set(first) >= {"id", "type", "occurred_at", "aggregate_type", "aggregate_id", "schema_version", "data"}
    assert first["aggregate_type"] == "reservation" and first["schema_version"] == 1
    assert first["data"]["user_id"] == user["id"]
    with app.app_context():  # envelope ids are unique across tests
        ours = set(db.session.scalars(select(OutboxEvent.event_id).where(OutboxEvent.aggregate_type == "queue")))
        db.session.rollback()
    queue = [m for m in consume(tansu.bootstrap, "tickets.queue") if m["id"] in ours]
    assert {m["aggregate_id"] for m in queue} == {str(event["id"])}
    assert [m["type"] for m in queue] == ["QueueJoined", "UserAdmitted", "AdmissionReleased"]
    assert all(m["data"]["user_id"] == user["id"] for m in queue)


def test_broker_down_keeps_events_and_delivers_them_later(app, client, worker, tansu, make_event, make_user):
    from app.outbox.relay import RelayError, relay

    tansu.stop()
    try:
        event, user, rid = full_flow(app, client, make_event, make_user)  # users see no error
        assert unpublished(app) >= 5

        def failed_attempt_recorded() -> bool:
            with app.app_context():
                try:
                    relay()  # a relay already running in the worker holds the lock: then 0
                except RelayError:
                    pass
                attempts = db.session.scalar(select(func.max(OutboxEvent.attempts)))
                db.session.rollback()
            return attempts >= 1

        wait_for(failed_attempt_recorded, timeout=60, interval=0.5, message="a failed publish attempt")
        assert unpublished(app) >= 5
    finally:
        tansu.start()
    relay_until_empty(app)
    types = [m["type"] for m in consume(tansu.bootstrap, "tickets.reservations") if m["aggregate_id"] == rid]
    assert types == ["SeatsHeld", "ReservationConfirmed"]


def test_without_kafka_the_relay_keeps_rows(app, client, make_event, make_user):
    from app.outbox.relay import relay
    from app.outbox.services import record_event

    with app.app_context():
        record_event(db.session, "Probe", "reservation", "x", {"n": 1})
        db.session.commit()
    servers = app.config["KAFKA_BOOTSTRAP_SERVERS"]
    app.config["KAFKA_BOOTSTRAP_SERVERS"] = ""
    try:
        with app.app_context():
            assert relay() == 0
        assert unpublished(app) >= 1
    finally:
        app.config["KAFKA_BOOTSTRAP_SERVERS"] = servers


def test_prune_removes_old_published_rows(app):
    from app.outbox.relay import prune
    from app.outbox.services import record_event

    with app.app_context():
        old = record_event(db.session, "Old", "reservation", "a", {})
        new = record_event(db.session, "New", "reservation", "b", {})
        db.session.flush()
        old.published_at = utcnow() - timedelta(days=10)
        new.published_at = utcnow()
        db.session.commit()
        assert prune(retention_hours=24) == 1
        assert db.session.scalars(select(OutboxEvent.type)).all() == ["New"]


def test_events_tail_and_replay_cli(app, client, worker, tansu, make_event, make_user):
    event, user, rid = full_flow(app, client, make_event, make_user)
    relay_until_empty(app)
    env = {**os.environ}
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "events", "tail", "--topic",
                          "tickets.reservations", "--from-beginning", "--timeout", "5"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    mine = [x["event"]["type"] for x in lines if x["key"] == rid]
    assert mine == ["SeatsHeld", "ReservationConfirmed"]
    since = (utcnow() - timedelta(minutes=5)).isoformat()
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "events", "replay", "--since", since,
                          "--topic", "tickets.reservations"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "re-published 2 events" in out.stdout, out.stdout + out.stderr
    types = [m["type"] for m in consume(tansu.bootstrap, "tickets.reservations") if m["aggregate_id"] == rid]
    assert types == ["SeatsHeld", "ReservationConfirmed"] * 2


def test_events_cli_without_kafka_gives_a_clean_message(app):
    """`events replay` / `tail` with no broker configured, or a bad time: a one-line error and a
    non-zero exit, never a traceback."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": ""}
    for command, says in ((["replay", "--since", "2026-01-01T00:00:00Z"], "KAFKA_BOOTSTRAP_SERVERS is not set"),
                          (["tail", "--timeout", "1"], "KAFKA_BOOTSTRAP_SERVERS is not set"),
                          (["replay", "--since", "yesterday"], "is not an ISO-8601 time")):
        out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "events", *command],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode in (1, 2) and says in out.stderr, out
        assert "Traceback" not in out.stderr, out.stderr


def test_a_relay_started_after_other_publishers_keeps_every_topic_in_its_metadata(app, tansu):
    """Tansu answers a producer's bootstrap (no topic asked) with every topic it holds, so kafka-python
    knows them without tracking them; its next refresh dropped them, and the sender thread then
    looped without pause on a partition with no leader (most of a core, in the flash-sale bench).
    The relay's producer tracks every outbox topic (app/outbox/relay.py, _track_outbox_topics)."""
    from kafka import KafkaProducer

    from app.outbox.relay import get_producer, reset_producer
    from app.outbox.services import topic_for

    with app.app_context():
        queue_topic, reservations_topic = topic_for("queue"), topic_for("reservation")
        other = KafkaProducer(bootstrap_servers=[tansu.bootstrap])  # another worker's relay, earlier
        other.send(queue_topic, key=b"1", value=b"{}").get(timeout=10)
        other.close()
        reset_producer()
        producer = get_producer(tansu.bootstrap)
        try:
            producer.send(queue_topic, key="1", value={}).get(timeout=10)
            # a topic this producer had not known: its metadata is refreshed for the tracked topics
            producer.send(reservations_topic, key="1", value={}).get(timeout=10)
            producer.flush(timeout=10)
            # what the sender thread looks up for each partition it holds a batch queue for
            metadata = producer._metadata  # noqa: SLF001 - the state the loop depended on
            assert metadata.partitions_for_topic(queue_topic), "the queue topic dropped from the metadata"
            assert metadata.partitions_for_topic(reservations_topic)
        finally:
            reset_producer()
