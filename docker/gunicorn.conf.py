"""gunicorn settings for the API (`gunicorn -c docker/gunicorn.conf.py wsgi:app`).

gevent workers: a waiting-room SSE stream is an idle greenlet, not a blocked sync worker, so one
worker process holds thousands of listeners. Prometheus multiprocess files are cleaned at start
and a dead worker's gauges are marked dead.
"""

import os
import shutil

from app.settings import process_settings

settings = process_settings()
bind = settings.BIND
workers = settings.WEB_CONCURRENCY
worker_class = settings.GUNICORN_WORKER_CLASS
worker_connections = settings.GUNICORN_WORKER_CONNECTIONS
timeout = 60
graceful_timeout = 30
keepalive = 5
accesslog = None
errorlog = "-"


def on_starting(server):
    path = settings.PROMETHEUS_MULTIPROC_DIR
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def post_worker_init(worker):
    # the API's own label sets at zero (the workers' live on the exporter: docs/metrics.md)
    from app.observability.metrics import initialise_label_sets

    initialise_label_sets("api")


def child_exit(server, worker):
    if settings.PROMETHEUS_MULTIPROC_DIR:
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)


def pre_request(worker, req):
    # gevent: a keep-alive connection whose next request is already buffered would be served again
    # at once, ahead of greenlets that have been ready for longer; yield first so every connection
    # gets its turn (this is what kept status p99 at 0.5-1 s under load)
    if worker_class == "gevent":
        import gevent

        gevent.sleep(0)
