"""Gauges read at scrape time: the domains' (each domain's gauges.py, handed over by the exporter,
app/exporter.py) and the Celery queues' depth."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import redis
from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from celeryconfig import WORK_QUEUES

log = logging.getLogger(__name__)

GaugeSource = Callable[[], Iterable[Metric]]


class ScrapeCollector(Collector):
    """Reads every source in the app's context at each scrape. A source that fails (Redis or MySQL
    away) is logged and left out of that scrape: the others, and the scrape, still answer."""

    def __init__(self, app: Flask, sources: list[GaugeSource]) -> None:
        self.app = app
        self.sources = [*sources, self._celery_queues]

    def collect(self) -> Iterator[Metric]:
        with self.app.app_context():
            for source in self.sources:
                try:
                    metrics = list(source())
                except Exception:  # noqa: BLE001 - a scrape must not fail because one store hiccupped
                    log.warning("gauges of %s unavailable", getattr(source, "__module__", source), exc_info=True)
                    continue
                yield from metrics

    def _celery_queues(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("tickets_celery_queue_length", "Messages waiting in a Celery queue",
                                  labels=["queue"])
        broker = redis.Redis.from_url(self.app.config["CELERY_BROKER_URL"], socket_timeout=3)
        pipe = broker.pipeline(transaction=False)
        for name in WORK_QUEUES:
            pipe.llen(name)
        for name, length in zip(WORK_QUEUES, pipe.execute(), strict=True):
            depth.add_metric([name], int(length))
        yield depth
