"""Celery settings (imported by tasks.celery_app). Environment variables as in app.config."""

from __future__ import annotations

import os

from kombu import Queue

from app.config import load_dev_env

load_dev_env()  # a second terminal's `celery -A tasks ...` reaches what `make run` started
_redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
broker_url = os.environ.get("CELERY_BROKER_URL") or _redis_url
result_backend = os.environ.get("CELERY_RESULT_BACKEND") or broker_url
result_expires = 3600

# JSON only: no pickle ever crosses the broker
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# At-least-once delivery: a task is acknowledged after it ran, and a worker that dies mid-task
# (OOM, SIGKILL) gets its task re-queued. Every task is idempotent for that reason.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_time_limit = 300
task_soft_time_limit = 240
# Redis redelivers an unacknowledged message after the visibility timeout; it must exceed every
# task's time limit, or a long task would run twice while still running.
broker_transport_options = {"visibility_timeout": 3600}
result_backend_transport_options = {"visibility_timeout": 3600}
broker_connection_retry_on_startup = True
# Task events feed Flower. Beat and the housekeeping worker run with CELERY_TASK_EVENTS=0, so the
# once-a-second ticks below do not bury a sale's real work there.
worker_send_task_events = task_send_sent_event = os.environ.get("CELERY_TASK_EVENTS", "1") != "0"
worker_hijack_root_logger = False

QUEUES = ("admission", "booking", "notifications", "outbox", "default", "housekeeping")
task_queues = tuple(Queue(name, routing_key=name) for name in QUEUES)
task_default_queue = "default"
task_create_missing_queues = True
task_routes = {
    "queue.*": {"queue": "admission"},
    "booking.*": {"queue": "booking"},
    "notifications.*": {"queue": "notifications"},
    "outbox.*": {"queue": "outbox"},
    "maintenance.*": {"queue": "default"},
}

# Beat's periodic ticks go to their own queue, `housekeeping`, consumed by a small worker with task
# events off (`-Q housekeeping`): about 1,100 ticks in 8 minutes would otherwise flood Flower and
# queue behind a sale's bookings. The work they start (notify_admissions, retries) keeps its queue.
HOUSEKEEPING_QUEUE = os.environ.get("HOUSEKEEPING_QUEUE") or "housekeeping"
_advance_every = float(os.environ.get("QUEUE_ADVANCE_INTERVAL_SECONDS") or 1.0)
beat_schedule = {
    "advance-waiting-rooms": {"task": "queue.advance_all", "schedule": _advance_every,
                              "options": {"expires": max(_advance_every * 2, 2)}},
    "drain-queue-events": {"task": "queue.drain_events", "schedule": 1.0, "options": {"expires": 5}},
    "relay-outbox": {"task": "outbox.relay", "schedule": 5.0, "options": {"expires": 10}},
    "sweep-expired-holds": {"task": "booking.sweep_holds", "schedule": 10.0, "options": {"expires": 20}},
    "reconcile-gates": {"task": "booking.reconcile_gates", "schedule": 30.0, "options": {"expires": 60}},
    "waitlist-offers": {"task": "booking.waitlist_tick", "schedule": 1.0, "options": {"expires": 5}},
    "sweep-refunds": {"task": "booking.sweep_refunds", "schedule": 60.0, "options": {"expires": 60}},
    "sweep-payments": {"task": "booking.sweep_payments", "schedule": 60.0, "options": {"expires": 60}},
    "sweep-notifications": {"task": "notifications.sweep", "schedule": 60.0, "options": {"expires": 60}},
    "prune-outbox": {"task": "outbox.prune", "schedule": 3600.0},
}
for _entry in beat_schedule.values():
    _entry.setdefault("options", {})["queue"] = HOUSEKEEPING_QUEUE
# Exactly one active scheduler even when two beat processes run (two pods during a rollout):
# RedBeat keeps the schedule in Redis and holds a lock that a second beat waits on.
# (tasks/scheduler.py: RedBeat that rides out a Redis outage instead of exiting)
beat_scheduler = "tasks.scheduler:ResilientRedBeatScheduler"
redbeat_redis_url = os.environ.get("REDBEAT_REDIS_URL") or broker_url
redbeat_key_prefix = os.environ.get("REDBEAT_KEY_PREFIX") or "redbeat:"
redbeat_lock_timeout = 15
beat_max_loop_interval = 1
