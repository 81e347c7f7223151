"""The waitlists' gauges, read at scrape time by the metrics exporter (app/exporter.py)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from app.extensions import redis_store
from app.redis.calls import WaitlistKeys
from app.redis.keys import WAITLIST_REGISTRY_KEY


def gauges() -> Iterator[GaugeMetricFamily]:
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
