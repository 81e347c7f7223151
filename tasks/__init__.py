"""Celery tasks: `celery -A tasks worker|beat|flower`. Task modules call the domain services."""

from tasks.celery_app import celery

app = celery

from tasks import admission, auth, booking, maintenance, notifications, outbox  # noqa: E402,F401
from tasks import cli as _cli  # noqa: E402,F401  (registers `celery -A tasks queue|outbox|holds`)

__all__ = ["app", "celery"]
