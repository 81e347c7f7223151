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

from app.observability.workers import live_workers_per_queue
from celeryconfig import QUEUES

log = logging.getLogger(__name__)

GaugeSource = Callable[[], Iterable[Metric]]


class ScrapeCollector(Collector):
    """Reads every source in the app's context at each scrape. A source that fails (Redis or MySQL
    away) is logged and left out of that scrape: the others, and the scrape, still answer."""

    def __init__(self, app: Flask, sources: list[GaugeSource]) -> None:
        self.app = app
        self.sources = [self._redis_up, *sources, self._celery_queues]

    def collect(self) -> Iterator[Metric]:
        with self.app.app_context():
            for source in self.sources:
                try:
                    metrics = list(source())
                except Exception:  # noqa: BLE001 - a scrape must not fail because one store hiccupped
                    log.warning("gauges of %s unavailable", getattr(source, "__module__", source), exc_info=True)
                    continue
                yield from metrics

    def _redis_up(self) -> Iterator[GaugeMetricFamily]:
        """1 when the application's Redis answers a PING (RedisDown pages on 0)."""
        from app.extensions import redis_store

        up = GaugeMetricFamily("tickets_redis_up", "1 when the application's Redis answers")
        try:
            up.add_metric([], 1 if redis_store.client.ping() else 0)
        except redis.RedisError:
            up.add_metric([], 0)
        yield up

    def _celery_queues(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("tickets_celery_queue_length", "Messages waiting in a Celery queue",
                                  labels=["queue"])
        workers = GaugeMetricFamily("tickets_celery_queue_workers", "Live workers consuming a Celery queue",
                                    labels=["queue"])
        broker = redis.Redis.from_url(self.app.config["CELERY_BROKER_URL"], socket_timeout=3, decode_responses=True)
        pipe = broker.pipeline(transaction=False)
        for name in QUEUES:
            pipe.llen(name)
        for name, length in zip(QUEUES, pipe.execute(), strict=True):
            depth.add_metric([name], int(length))
        for name, count in live_workers_per_queue(broker, QUEUES).items():
            workers.add_metric([name], count)
        yield from (depth, workers)
