"""Every Prometheus metric of the platform, defined once (names listed in docs/metrics.md).

With PROMETHEUS_MULTIPROC_DIR set (gunicorn workers, Celery prefork children), prometheus_client
writes these to files that the API's /metrics and the worker exporter sum over processes.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric

from app.settings import process_settings

log = logging.getLogger(__name__)

if process_settings().PROMETHEUS_MULTIPROC_DIR:
    # every process of the image inherits the variable; the files need their directory to exist
    os.makedirs(process_settings().PROMETHEUS_MULTIPROC_DIR, exist_ok=True)

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
HOLD_WRITER_DEAD_LETTERS = Counter("tickets_hold_writer_dead_letters_total",
                                   "Accepted requests the hold writer parked: malformed, or refused by MySQL "
                                   "for their own values (reason: malformed|refused)", ["reason"])
HOLD_WRITER_ERRORS = Counter("tickets_hold_writer_errors_total",
                             "Hold-writer batches left pending after an error (kind: transient: the database "
                             "or Redis connection, retried; unexpected: a bug, alerting)", ["kind"])

REDIS_COMMAND_ERRORS = Counter("tickets_redis_command_errors_total",
                               "API requests that ended in a 500 because Redis refused a command as wrong "
                               "(a Lua script error, WRONGTYPE): a bug, never retried")

# --- after the sell-out: refunds and the waitlist -----------------------------------------------
REFUNDS = Counter("tickets_refunds_total", "Refunds finished (outcome: succeeded|declined; via: api|worker)",
                  ["outcome", "via"])
WAITLIST_JOINS = Counter("tickets_waitlist_joins_total", "Fans who joined a section's waitlist")
WAITLIST_OFFERS = Counter("tickets_waitlist_offers_total",
                          "Waitlist offers by outcome (made|expired: the worker; claimed|declined: the API)",
                          ["outcome"])

# --- the door ----------------------------------------------------------------------------------
CHECKIN_RESULTS = ("admitted", "already_used", "refunded", "wrong_event", "invalid")
CHECKINS = Counter("tickets_checkins_total",
                   "Ticket scans at the door (result: admitted|already_used|refunded|wrong_event|invalid)",
                   ["result"])

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

# Each series lives in exactly one scrape target: the process that produces it (docs/metrics.md).
API_RESERVATION_OUTCOMES = ("requested", "gate_sold_out", "confirmed", "cancelled")  # the API's /metrics
WORKER_RESERVATION_OUTCOMES = ("held", "rejected", "expired")  # the hold writer and sweeper: the exporter
RESERVATION_OUTCOMES = API_RESERVATION_OUTCOMES + WORKER_RESERVATION_OUTCOMES
NOTIFICATION_CHANNELS = ("push", "email", "sms")
NOTIFICATION_OUTCOMES = ("sent", "logged", "failed", "disabled", "retry")
TOPIC_SUFFIXES = ("queue", "reservations", "orders", "notifications")

_http_metrics = None
# besides flask_* and the labelled ones below
API_FAMILIES = {"tickets_queue_joins", "tickets_waitlist_joins", "tickets_redis_command_errors", "tickets_checkins"}
API_OFFER_OUTCOMES = ("claimed", "declined")
WORKER_OFFER_OUTCOMES = ("made", "expired")
REFUND_OUTCOMES = ("succeeded", "declined")


def owner(family: str, labels: dict[str, str]) -> str:
    """Which scrape target serves a series: "api" (the API's /metrics), "worker" (the exporter) or
    "any" (a library's own, such as python_gc_*)."""
    if family == "tickets_reservations":
        return "api" if labels.get("outcome") in API_RESERVATION_OUTCOMES else "worker"
    if family == "tickets_waitlist_offers":
        return "api" if labels.get("outcome") in API_OFFER_OUTCOMES else "worker"
    if family == "tickets_refunds":
        return "api" if labels.get("via") == "api" else "worker"
    if family in API_FAMILIES or family.startswith("flask_"):
        return "api"
    return "worker" if family.startswith("tickets_") else "any"


def owned_by(process: str, metrics: Iterable[Metric]) -> Iterator[Metric]:
    """Only the series ``process`` owns. Every process imports this module, so an unlabelled
    worker metric (say the hold latency) exists at zero in the API's files too; without this filter
    it would be scraped from both targets and read two ways."""
    for metric in metrics:
        samples = [s for s in metric.samples if owner(metric.name, s.labels) in (process, "any")]
        if samples:
            metric.samples = samples
            yield metric


class ApiRegistry(CollectorRegistry):
    """The API's /metrics registry: the gunicorn workers' files, without the workers' series."""

    def collect(self) -> Iterator[Metric]:
        return owned_by("api", super().collect())


def initialise_label_sets(process: str, task_names: list[str] | None = None, topic_prefix: str = "tickets") -> None:
    """Create the known label sets of what ``process`` ("api" or "worker") produces at zero, so
    series exist before the first event (dashboards and alerts see 0, not "no data", and rate()
    works from the first increment). Only the producer creates them: a zero for `held` on the API's
    /metrics beside the real count on the exporter would make the same series read two ways."""
    if process == "api":
        for outcome in API_RESERVATION_OUTCOMES:
            RESERVATIONS.labels(outcome=outcome)
        for outcome in API_OFFER_OUTCOMES:
            WAITLIST_OFFERS.labels(outcome=outcome)
        for outcome in REFUND_OUTCOMES:
            REFUNDS.labels(outcome=outcome, via="api")
        for result in CHECKIN_RESULTS:
            CHECKINS.labels(result=result)
        return
    for outcome in WORKER_RESERVATION_OUTCOMES:
        RESERVATIONS.labels(outcome=outcome)
    for outcome in WORKER_OFFER_OUTCOMES:
        WAITLIST_OFFERS.labels(outcome=outcome)
    for outcome in REFUND_OUTCOMES:
        REFUNDS.labels(outcome=outcome, via="worker")
    for channel in NOTIFICATION_CHANNELS:
        NOTIFICATION_LATENCY.labels(channel=channel)
        for outcome in NOTIFICATION_OUTCOMES:
            NOTIFICATIONS.labels(channel=channel, outcome=outcome)
    for suffix in TOPIC_SUFFIXES:
        OUTBOX_PUBLISHED.labels(topic=f"{topic_prefix}.{suffix}")
    for reason in ("malformed", "refused"):
        HOLD_WRITER_DEAD_LETTERS.labels(reason=reason)
    for kind in ("transient", "unexpected"):
        HOLD_WRITER_ERRORS.labels(kind=kind)
    for name in task_names or []:
        TASK_RUNTIME.labels(task=name)
        TASK_RETRIES.labels(task=name)
        for outcome in ("success", "failure"):
            TASKS.labels(task=name, outcome=outcome)


def metrics_access_guard(view: Callable[..., Any]) -> Callable[..., Any]:
    """/metrics is for the scraper, not the public (it tells an attacker every route and rate).

    With METRICS_TOKEN set, only `Authorization: Bearer <token>` is served. Without it, only a
    direct request from METRICS_ALLOW_FROM (loopback and private networks by default: an in-cluster
    Prometheus); a request that came through a proxy (X-Forwarded-For or Forwarded) is public."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        from flask import current_app, request

        from app.errors import json_error

        token = current_app.config["METRICS_TOKEN"]
        if token:
            given = request.headers.get("Authorization", "")
            allowed = hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
        else:
            forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
            allowed = not forwarded and _address_allowed(request.remote_addr or "",
                                                         current_app.config["METRICS_ALLOW_FROM"])
        if not allowed:
            return json_error(403, "Metrics are for the monitoring system", reason="metrics_forbidden")
        return view(*args, **kwargs)

    return guarded


def _address_allowed(address: str, networks: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n.strip(), strict=False) for n in networks.split(",") if n.strip())


def init_http_metrics(app: Flask) -> None:
    """prometheus-flask-exporter: request count/latency by URL rule, summed over gunicorn workers."""
    global _http_metrics
    from prometheus_flask_exporter import PrometheusMetrics

    kwargs = {"group_by": "url_rule", "default_labels": {}, "excluded_paths": ["/metrics", "/healthz"],
              "metrics_decorator": metrics_access_guard}
    if _http_metrics is not None:
        # a second app in one process (tests): a private registry avoids duplicate series
        app.extensions["http_metrics"] = PrometheusMetrics(app, registry=CollectorRegistry(auto_describe=True),
                                                           **kwargs)
        return
    if app.config["PROMETHEUS_MULTIPROC_DIR"]:
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        class ApiMetrics(GunicornInternalPrometheusMetrics):
            def generate_metrics(self, accept_header: str | None = None, names: list[str] | None = None):
                from prometheus_client.exposition import choose_encoder
                from prometheus_client.multiprocess import MultiProcessCollector

                registry = ApiRegistry()  # the library's own builds a plain registry per scrape
                MultiProcessCollector(registry)
                encode, content_type = choose_encoder(accept_header)
                return encode(registry).decode("utf-8"), content_type

        _http_metrics = ApiMetrics(app, **kwargs)
    else:
        _http_metrics = PrometheusMetrics(app, **kwargs)
    app.extensions["http_metrics"] = _http_metrics


def http_request_recorder(app: Flask) -> Callable[[str, str, int, float], None]:
    """``record(method, url_rule, status, seconds)``: counts an answer in the exporter's own request
    series (flask_http_request_total, flask_http_request_duration_seconds), for an answer given
    outside Flask's dispatch (app/booking/fast_reserve.py), so the SLOs and dashboards see it as
    they see every other. The exporter keeps its metric objects to itself: they are found in its
    registry by name."""
    registry = app.extensions["http_metrics"].registry
    collectors = registry._names_to_collectors  # noqa: SLF001 - prometheus_client has no public lookup
    duration = collectors["flask_http_request_duration_seconds"]
    total = collectors["flask_http_request_total"]

    def record(method: str, url_rule: str, status: int, seconds: float) -> None:
        duration.labels(method=method, url_rule=url_rule, status=status).observe(seconds)
        total.labels(method=method, status=status).inc()

    return record


def via() -> str:
    """Which process counts an event that both the API and the workers produce (a refund)."""
    from flask import has_request_context

    return "api" if has_request_context() else "worker"
