"""Every Prometheus metric of the platform, defined once (names listed in docs/metrics.md).

With PROMETHEUS_MULTIPROC_DIR set (gunicorn workers, Celery prefork children), prometheus_client
writes these to files that the API's /metrics and the worker exporter sum over processes.
"""

from __future__ import annotations

import logging
import os

from flask import Flask
from prometheus_client import CollectorRegistry, Counter, Histogram

log = logging.getLogger(__name__)

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # every process of the image inherits the variable; the files need their directory to exist
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)

# --- waiting room -------------------------------------------------------------------------
QUEUE_JOINS = Counter("tickets_queue_joins_total", "Users who took a place in a waiting room", ["event_id"])
QUEUE_ADMISSIONS = Counter("tickets_queue_admissions_total", "Users admitted from a waiting room", ["event_id"])
QUEUE_EXPIRED = Counter("tickets_queue_expired_total",
                        "Places or admissions that expired (reason: abandoned|window_lapsed)",
                        ["event_id", "reason"])
QUEUE_WAIT = Histogram("tickets_queue_wait_seconds", "Time from joining to admission", buckets=WAIT_BUCKETS)

# --- booking --------------------------------------------------------------------------------
RESERVATIONS = Counter("tickets_reservations_total",
                       "Reservation outcomes (requested|held|confirmed|rejected|expired|cancelled|gate_sold_out)",
                       ["outcome"])
HOLD_LATENCY = Histogram("tickets_reservation_hold_latency_seconds", "Time from reserve request to seats held",
                         buckets=LATENCY_BUCKETS)
GATE_DRIFT = Counter("tickets_gate_drift_units_total",
                     "Units by which the reconciler corrected the Redis sold-out gate from MySQL")
GATE_DRIFT_FIXES = Counter("tickets_gate_drift_fixes_total", "Sections whose Redis gate the reconciler corrected")

# --- notifications ----------------------------------------------------------------------------
NOTIFICATIONS = Counter("tickets_notifications_total", "Notification attempts by channel and outcome",
                        ["channel", "outcome"])
NOTIFICATION_LATENCY = Histogram("tickets_notification_delivery_seconds",
                                 "Time from admission to provider acknowledgement", ["channel"],
                                 buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0))

# --- outbox ---------------------------------------------------------------------------------
OUTBOX_PUBLISHED = Counter("tickets_outbox_published_total", "Outbox events published to Kafka", ["topic"])
OUTBOX_PUBLISH_FAILURES = Counter("tickets_outbox_publish_failures_total", "Relay runs that failed to publish")

# --- Celery ---------------------------------------------------------------------------------
TASKS = Counter("tickets_celery_tasks_total", "Celery tasks finished, by task and outcome", ["task", "outcome"])
TASK_RUNTIME = Histogram("tickets_celery_task_runtime_seconds", "Celery task runtime", ["task"],
                         buckets=LATENCY_BUCKETS + (30.0, 60.0))
TASK_RETRIES = Counter("tickets_celery_task_retries_total", "Celery task retries", ["task"])

RESERVATION_OUTCOMES = ("requested", "held", "confirmed", "rejected", "expired", "cancelled", "gate_sold_out")
NOTIFICATION_CHANNELS = ("push", "email", "sms")
NOTIFICATION_OUTCOMES = ("sent", "failed", "disabled", "retry")
TOPIC_SUFFIXES = ("queue", "reservations", "notifications")

_http_metrics = None


def initialise_label_sets(task_names: list[str] | None = None, topic_prefix: str = "tickets") -> None:
    """Create every known label set at zero, so series exist before the first event (dashboards and
    alerts see 0, not "no data", and rate() works from the first increment)."""
    for outcome in RESERVATION_OUTCOMES:
        RESERVATIONS.labels(outcome=outcome)
    for channel in NOTIFICATION_CHANNELS:
        NOTIFICATION_LATENCY.labels(channel=channel)
        for outcome in NOTIFICATION_OUTCOMES:
            NOTIFICATIONS.labels(channel=channel, outcome=outcome)
    for suffix in TOPIC_SUFFIXES:
        OUTBOX_PUBLISHED.labels(topic=f"{topic_prefix}.{suffix}")
    for name in task_names or []:
        TASK_RUNTIME.labels(task=name)
        TASK_RETRIES.labels(task=name)
        for outcome in ("success", "failure"):
            TASKS.labels(task=name, outcome=outcome)


def init_http_metrics(app: Flask) -> None:
    """prometheus-flask-exporter: request count/latency by URL rule, summed over gunicorn workers."""
    global _http_metrics
    from prometheus_flask_exporter import PrometheusMetrics

    kwargs = {"group_by": "url_rule", "default_labels": {}, "excluded_paths": ["/metrics", "/healthz"]}
    if _http_metrics is not None:
        # a second app in one process (tests): a private registry avoids duplicate series
        PrometheusMetrics(app, registry=CollectorRegistry(auto_describe=True), **kwargs)
        return
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        _http_metrics = GunicornInternalPrometheusMetrics(app, **kwargs)
    else:
        _http_metrics = PrometheusMetrics(app, **kwargs)
