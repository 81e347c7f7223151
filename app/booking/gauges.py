"""Booking's gauges, read at scrape time by the metrics exporter (app/exporter.py): the intake's
oldest request not yet written by the hold writer, and the waitlists."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from app.extensions import redis_store
from app.redis.calls import WaitlistKeys
from app.redis.keys import WAITLIST_REGISTRY_KEY, QueueKeys
from app.redis.registry import registered_event_ids


def gauges() -> Iterator[GaugeMetricFamily]:
    yield from _intake()
    yield from _waitlists()


def _intake() -> Iterator[GaugeMetricFamily]:
    """Per live sale, the age of the oldest accepted request still on the reserve stream: an entry
    leaves it only once the hold writer's batch is settled (app/redis/lua/settle.lua), so this
    grows when the writer is stopped or stuck (HoldWriterBehind)."""
    age = GaugeMetricFamily("tickets_reserve_oldest_pending_age_seconds",
                            "Age of a sale's oldest accepted reserve request not yet written to MySQL",
                            labels=["event_id"])
    client = redis_store.client
    now = time.time()
    for event_id in registered_event_ids():
        oldest = client.xrange(QueueKeys(event_id).reserve_stream(), count=1)
        entry_ms = int(oldest[0][0].split("-")[0]) if oldest else None
        age.add_metric([str(event_id)], max(0.0, now - entry_ms / 1000) if entry_ms else 0.0)
    yield age


def _waitlists() -> Iterator[GaugeMetricFamily]:
    """Fans waiting and offers open, per section with a waitlist."""
    waiting = GaugeMetricFamily("tickets_waitlist_waiting_users", "Fans on a section's waitlist",
                                labels=["event_id", "section_id"])
    offers = GaugeMetricFamily("tickets_waitlist_offers_out", "Open waitlist offers of a section",
                               labels=["event_id", "section_id"])
    client = redis_store.client
    for member in sorted(client.smembers(WAITLIST_REGISTRY_KEY)):
        event_id, section_id = (int(x) for x in member.split(":"))
        keys = WaitlistKeys.of(event_id, section_id)
        pipe = client.pipeline(transaction=False)
        pipe.zcard(keys.waitlist)
        pipe.hlen(keys.offers)
        n_waiting, n_offers = pipe.execute()
        label = [str(event_id), str(section_id)]
        waiting.add_metric(label, int(n_waiting))
        offers.add_metric(label, int(n_offers))
    yield from (waiting, offers)
