"""Account tasks (queue `default`)."""

from __future__ import annotations

from celery import Task

from tasks.celery_app import celery
from tasks.notifications import send_or_retry


@celery.task(name="auth.send_email_code", bind=True, max_retries=5, ignore_result=True)
def send_email_code(self: Task, user_id: int, code: str) -> str | None:
    """The code that proves the account's e-mail address."""
    from app.auth.flows import deliver_email_code

    return send_or_retry(self, deliver_email_code, user_id, code)
