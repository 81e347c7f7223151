"""Worker and domain metrics endpoint: `python -m app.exporter --port 9808`.

Serves the Celery workers' metrics (task counts/outcomes, runtimes, retries, booking and
notification outcomes), summed over every prefork child through PROMETHEUS_MULTIPROC_DIR, plus the
gauges read at scrape time (waiting rooms, waitlists, Celery queue depth, outbox lag). A process
entry point, like app/serve.py: it composes the domains' gauges, which observability (below every
domain) cannot import.
"""

from __future__ import annotations

import argparse
import glob
import os
import time
from collections.abc import Iterable

from flask import Flask
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from app.observability.collectors import GaugeSource, ScrapeCollector
from app.settings import process_settings


class TreeMultiProcessCollector(Collector):
    """Sums the multiprocess files in PROMETHEUS_MULTIPROC_DIR and its sub-directories, so one
    exporter can serve several worker containers that each write to their own sub-directory."""

    def __init__(self, root: str) -> None:
        self.root = root

    def collect(self) -> Iterable[Metric]:
        from app.observability.metrics import owned_by

        files = glob.glob(os.path.join(self.root, "**", "*.db"), recursive=True)
        return owned_by("worker", MultiProcessCollector.merge(files, accumulate=True))


def domain_gauges() -> list[GaugeSource]:
    """Each domain's gauges, read at scrape time."""
    from app.booking import gauges as booking
    from app.outbox import gauges as outbox
    from app.queue import gauges as queue

    return [queue.gauges, booking.gauges, outbox.gauges]


def build_registry(app: Flask, domain: bool = True) -> CollectorRegistry:
    root = app.config["PROMETHEUS_MULTIPROC_DIR"]
    if root:
        registry = CollectorRegistry()
        registry.register(TreeMultiProcessCollector(root))
    else:
        registry = REGISTRY
    if domain:
        registry.register(ScrapeCollector(app, domain_gauges()))
    return registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    settings = process_settings()
    parser.add_argument("--port", type=int, default=settings.EXPORTER_PORT)
    parser.add_argument("--address", default=settings.EXPORTER_ADDRESS)
    parser.add_argument("--worker-only", action="store_true",
                        help="Only the Celery worker metrics (a sidecar per worker pod); the waiting-room, queue-depth "
                             "and outbox gauges then come from one exporter without this flag.")
    args = parser.parse_args()
    from app import create_app

    app = create_app()
    start_http_server(args.port, addr=args.address, registry=build_registry(app, domain=not args.worker_only))
    print(f"metrics exporter on http://{args.address}:{args.port}/metrics", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
