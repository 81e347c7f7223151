"""Worker and domain metrics endpoint: `python -m app.observability.exporter --port 9808`.

Serves the Celery workers' metrics (task counts/outcomes, runtimes, retries, booking and
notification outcomes), summed over every prefork child through PROMETHEUS_MULTIPROC_DIR, plus the
gauges read at scrape time (waiting rooms, Celery queue depth, outbox lag).
"""

from __future__ import annotations

import argparse
import os
import time

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector


def build_registry(app) -> CollectorRegistry:
    from app.observability.collectors import DomainCollector

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    registry.register(DomainCollector(app))
    return registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("EXPORTER_PORT", "9808")))
    parser.add_argument("--address", default=os.environ.get("EXPORTER_ADDRESS", "0.0.0.0"))
    args = parser.parse_args()
    from app import create_app

    app = create_app()
    start_http_server(args.port, addr=args.address, registry=build_registry(app))
    print(f"metrics exporter on http://{args.address}:{args.port}/metrics", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
