"""Gauges read at scrape time: waiting-room sizes, Celery queue depth and outbox lag."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from celeryconfig import WORK_QUEUES

log = logging.getLogger(__name__)

CELERY_QUEUES = WORK_QUEUES


class DomainCollector(Collector):
    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.app.app_context():
            yield from self._queue_metrics()
            yield from self._waitlist_metrics()
            yield from self._celery_metrics()
            yield from self._outbox_metrics()

    def _queue_metrics(self) -> Iterator[GaugeMetricFamily]:
        from app.extensions import redis_store
        from app.queue.services import registered_event_ids
        from app.redis.keys import QueueKeys

        waiting = GaugeMetricFamily("tickets_queue_waiting_users", "Users waiting in line (incl. pre-queue)",
                                    labels=["event_id"])
        active = GaugeMetricFamily("tickets_queue_active_users", "Admitted users whose window is open",
                                   labels=["event_id"])
        paused = GaugeMetricFamily("tickets_queue_paused", "1 while a sale's waiting room is paused",
                                   labels=["event_id"])
        rate = GaugeMetricFamily("tickets_queue_admit_rate_per_minute", "Measured admission rate (EWMA)",
                                 labels=["event_id"])
        try:
            client = redis_store.client
            now = time.time()
            for event_id in registered_event_ids():
                keys = QueueKeys(event_id)
                pipe = client.pipeline(transaction=False)
                pipe.zcard(keys.line)
                pipe.scard(keys.pre)
                pipe.zcount(keys.active, f"({now}", "+inf")
                pipe.hget(keys.meta, "paused")
                pipe.hget(keys.stats, "rate_ewma")
                line, pre, act, is_paused, ewma = pipe.execute()
                label = [str(event_id)]
                waiting.add_metric(label, int(line) + int(pre))
                active.add_metric(label, int(act))
                paused.add_metric(label, 1 if is_paused == "1" else 0)
                rate.add_metric(label, float(ewma or 0))
        except Exception:  # noqa: BLE001 - a scrape must not fail because Redis hiccupped
            log.warning("queue metrics unavailable", exc_info=True)
        yield from (waiting, active, paused, rate)
        yield from self._queue_event_lag()

    def _queue_event_lag(self) -> Iterator[GaugeMetricFamily]:
        from app.queue.events import lag

        undrained = GaugeMetricFamily("tickets_queue_events_undrained",
                                      "Queue events not yet copied to the outbox (the stream is never trimmed)",
                                      labels=["event_id"])
        age = GaugeMetricFamily("tickets_queue_events_oldest_undrained_age_seconds",
                                "Age of a sale's oldest queue event not yet in the outbox", labels=["event_id"])
        try:
            for event_id, (length, oldest) in lag().items():
                undrained.add_metric([str(event_id)], length)
                age.add_metric([str(event_id)], oldest)
        except Exception:  # noqa: BLE001 - a scrape must not fail because Redis hiccupped
            log.warning("queue event lag unavailable", exc_info=True)
        yield from (undrained, age)

    def _waitlist_metrics(self) -> Iterator[GaugeMetricFamily]:
        from app.booking.waitlist import _keys
        from app.extensions import redis_store
        from app.redis.keys import WAITLIST_REGISTRY_KEY as REGISTRY_KEY

        waiting = GaugeMetricFamily("tickets_waitlist_waiting_users", "Fans on a section's waitlist",
                                    labels=["event_id", "section_id"])
        offers = GaugeMetricFamily("tickets_waitlist_offers_out", "Open waitlist offers of a section",
                                   labels=["event_id", "section_id"])
        try:
            client = redis_store.client
            for member in sorted(client.smembers(REGISTRY_KEY)):
                event_id, section_id = (int(x) for x in member.split(":"))
                keys = _keys(event_id, section_id)
                pipe = client.pipeline(transaction=False)
                pipe.zcard(keys["wl"])
                pipe.hlen(keys["offers"])
                n_waiting, n_offers = pipe.execute()
                label = [str(event_id), str(section_id)]
                waiting.add_metric(label, int(n_waiting))
                offers.add_metric(label, int(n_offers))
        except Exception:  # noqa: BLE001 - a scrape must not fail because Redis hiccupped
            log.warning("waitlist metrics unavailable", exc_info=True)
        yield from (waiting, offers)

    def _celery_metrics(self) -> Iterator[GaugeMetricFamily]:
        import redis

        depth = GaugeMetricFamily("tickets_celery_queue_length", "Messages waiting in a Celery queue",
                                  labels=["queue"])
        try:
            broker = redis.Redis.from_url(self.app.config["CELERY_BROKER_URL"], socket_timeout=3)
            pipe = broker.pipeline(transaction=False)
            for name in CELERY_QUEUES:
                pipe.llen(name)
            for name, length in zip(CELERY_QUEUES, pipe.execute(), strict=True):
                depth.add_metric([name], int(length))
        except Exception:  # noqa: BLE001
            log.warning("celery queue metrics unavailable", exc_info=True)
        yield depth

    def _outbox_metrics(self) -> Iterator[GaugeMetricFamily]:
        from app.outbox.relay import lag

        count = GaugeMetricFamily("tickets_outbox_unpublished", "Outbox events not yet published to Kafka")
        age = GaugeMetricFamily("tickets_outbox_oldest_unpublished_age_seconds",
                                "Age of the oldest unpublished outbox event")
        try:
            current = lag()
            count.add_metric([], current["unpublished"])
            age.add_metric([], current["oldest_age_seconds"])
        except Exception:  # noqa: BLE001
            log.warning("outbox metrics unavailable", exc_info=True)
        yield count
        yield age
