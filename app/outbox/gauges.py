"""The outbox's gauges, read at scrape time by the metrics exporter (app/exporter.py)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from app.outbox.relay import lag


def gauges() -> Iterator[GaugeMetricFamily]:
    """How many events wait for Kafka, and the oldest one's age."""
    current = lag()
    count = GaugeMetricFamily("tickets_outbox_unpublished", "Outbox events not yet published to Kafka")
    count.add_metric([], current["unpublished"])
    age = GaugeMetricFamily("tickets_outbox_oldest_unpublished_age_seconds",
                            "Age of the oldest unpublished outbox event")
    age.add_metric([], current["oldest_age_seconds"])
    yield from (count, age)
