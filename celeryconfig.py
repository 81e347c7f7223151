"""Celery's settings, derived from the application's one settings object (``app.settings.Settings``).

``create_app`` applies them to the Celery instance of ``app/extensions.py`` (``app.tasking.
configure_celery``), so the API, the worker, beat and the CLI read the environment once, through
the same loader. The queue names are defined here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from kombu import Queue

from app.settings import Settings

# Work queues: a sale's work (admission, booking), notices, the outbox relay, the rest.
WORK_QUEUES = ("admission", "booking", "notifications", "outbox", "default")
# Beat's periodic ticks go to their own queue, consumed by a small worker with task events off
# (`-Q housekeeping`): about 1,100 ticks in 8 minutes would otherwise flood Flower and queue behind
# a sale's bookings. The work they start (notify_admissions, retries) keeps its queue.
HOUSEKEEPING_QUEUE = "housekeeping"
QUEUES = (*WORK_QUEUES, HOUSEKEEPING_QUEUE)

task_queues = tuple(Queue(name, routing_key=name) for name in QUEUES)
task_routes = {
    "queue.*": {"queue": "admission"},
    "booking.*": {"queue": "booking"},
    "notifications.*": {"queue": "notifications"},
    "outbox.*": {"queue": "outbox"},
    "maintenance.*": {"queue": "default"},
}

_STATIC: dict[str, Any] = {
    "result_expires": 3600,
    # JSON only: no pickle ever crosses the broker
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "timezone": "UTC",
    "enable_utc": True,
    # At-least-once delivery: a task is acknowledged after it ran, and a worker that dies mid-task
    # (OOM, SIGKILL) gets its task re-queued. Every task is idempotent for that reason.
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_time_limit": 300,
    "task_soft_time_limit": 240,
    # Redis redelivers an unacknowledged message after the visibility timeout; it must exceed every
    # task's time limit, or a long task would run twice while still running.
    "broker_transport_options": {"visibility_timeout": 3600},
    "result_backend_transport_options": {"visibility_timeout": 3600},
    "broker_connection_retry_on_startup": True,
    "worker_hijack_root_logger": False,
    "task_queues": task_queues,
    "task_default_queue": "default",
    "task_create_missing_queues": True,
    "task_routes": task_routes,
    # Exactly one active scheduler even when two beat processes run (two pods during a rollout):
    # RedBeat keeps the schedule in Redis and holds a lock that a second beat waits on.
    # (tasks/scheduler.py: RedBeat that rides out a Redis outage instead of exiting)
    "beat_scheduler": "tasks.scheduler:ResilientRedBeatScheduler",
    "redbeat_lock_timeout": 15,
    "beat_max_loop_interval": 1,
}


def beat_schedule(advance_every: float, housekeeping_queue: str) -> dict[str, dict[str, Any]]:
    schedule: dict[str, dict[str, Any]] = {
        "advance-waiting-rooms": {"task": "queue.advance_all", "schedule": advance_every,
                                  "options": {"expires": max(advance_every * 2, 2)}},
        "drain-queue-events": {"task": "queue.drain_events", "schedule": 1.0, "options": {"expires": 5}},
        "relay-outbox": {"task": "outbox.relay", "schedule": 5.0, "options": {"expires": 10}},
        "sweep-expired-holds": {"task": "booking.sweep_holds", "schedule": 10.0, "options": {"expires": 20}},
        "reconcile-gates": {"task": "booking.reconcile_gates", "schedule": 30.0, "options": {"expires": 60}},
        "waitlist-offers": {"task": "booking.waitlist_tick", "schedule": 1.0, "options": {"expires": 5}},
        "sweep-refunds": {"task": "booking.sweep_refunds", "schedule": 60.0, "options": {"expires": 60}},
        "sweep-payments": {"task": "booking.sweep_payments", "schedule": 60.0, "options": {"expires": 60}},
        # a sale that is over leaves Redis: its figures to MySQL, its keys deleted (app/sales/lifecycle.py)
        "close-ended-sales": {"task": "queue.close_ended_sales", "schedule": 300.0, "options": {"expires": 300}},
        "sweep-notifications": {"task": "notifications.sweep", "schedule": 15.0, "options": {"expires": 15}},
        # a presale's registration lottery is drawn at its deadline (app/sales/lottery_flows.py)
        "draw-lotteries": {"task": "queue.draw_lotteries", "schedule": 5.0, "options": {"expires": 10}},
        "prune-outbox": {"task": "outbox.prune", "schedule": 3600.0},
    }
    for entry in schedule.values():
        entry.setdefault("options", {})["queue"] = housekeeping_queue
    return schedule


def celery_settings(settings: Settings) -> dict[str, Any]:
    """Celery's settings for the application's settings (``app.settings.Settings``)."""
    events = settings.CELERY_TASK_EVENTS
    return {
        **_STATIC,
        "broker_url": settings.CELERY_BROKER_URL,
        "result_backend": settings.CELERY_RESULT_BACKEND,
        # Task events feed Flower. Beat and the housekeeping worker run with CELERY_TASK_EVENTS=0,
        # so the once-a-second ticks do not bury a sale's real work there.
        "worker_send_task_events": events,
        "task_send_sent_event": events,
        "beat_schedule": beat_schedule(settings.QUEUE_ADVANCE_INTERVAL_SECONDS, settings.HOUSEKEEPING_QUEUE),
        "redbeat_redis_url": settings.REDBEAT_REDIS_URL,
        "redbeat_key_prefix": settings.REDBEAT_KEY_PREFIX,
    }
