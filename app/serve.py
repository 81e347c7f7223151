"""The API's REST server as deployed: `python -m app.serve` (granian, WSGI).

granian parses HTTP in Rust and runs the Flask app on a few threads per worker process. Against
gunicorn with gevent workers, on the same 2 cores and wrk load (README, "Benchmarks"), it served
status polling at 1.0-1.1 of the reference instead of 0.65 and reserve at 0.65-0.72 instead of
0.42, with p99 under 15 ms instead of 120 ms.

A thread per request suits REST, not Server-Sent Events: an open stream would hold one of the
worker's few threads for minutes. So this server answers the stream endpoint with 503
(`SSE_ENABLED=0`, set here) and the streams run on gunicorn with gevent workers
(`gunicorn -c docker/gunicorn.conf.py wsgi:app`, where an idle stream is a greenlet); the ingress
routes `/api/queue/<id>/stream` there (k8s/base/ingress.yaml, docker/nginx.conf). `make run`
serves both from one gevent server, for simplicity.

Settings (app/settings.py): BIND (0.0.0.0:8000), WEB_CONCURRENCY (worker processes, 2),
API_THREADS (threads per worker, 2: the most the bench measured; a blocking MySQL or password
hash call holds one), PROMETHEUS_MULTIPROC_DIR (emptied at start, as gunicorn's hook does).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from app.settings import process_settings


def load() -> Any:
    """granian's factory, called in each worker process: the app, with the API's metric label sets."""
    from app import create_app
    from app.observability.metrics import initialise_label_sets

    application = create_app()
    initialise_label_sets("api")
    return application


def main() -> None:
    from granian import Granian
    from granian.constants import Interfaces

    settings = process_settings()
    host, _, port = settings.BIND.rpartition(":")
    # the workers are child processes that read their settings from the environment: streams belong
    # to the gevent server (module doc)
    os.environ.setdefault("SSE_ENABLED", "0")
    metrics_dir = settings.PROMETHEUS_MULTIPROC_DIR
    if metrics_dir:  # a previous run's files would be summed with this run's
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.makedirs(metrics_dir, exist_ok=True)
    Granian("app.serve:load", factory=True, address=host or "0.0.0.0", port=int(port),
            interface=Interfaces.WSGI, workers=settings.WEB_CONCURRENCY,
            blocking_threads=settings.API_THREADS, websockets=False,
            respawn_failed_workers=True, log_access=False).serve()


if __name__ == "__main__":
    main()
