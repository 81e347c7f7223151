"""Account tasks (queue `default`)."""

from __future__ import annotations

import random

from celery import Task

from tasks.celery_app import celery


@celery.task(name="auth.send_email_code", bind=True, max_retries=5, ignore_result=True)
def send_email_code(self: Task, user_id: int, code: str) -> str | None:
    """The code that proves the account's e-mail address."""
    from app.auth.services import deliver_email_code
    from app.notifications.channels import PermanentError, TransientError

    try:
        return deliver_email_code(user_id, code)
    except TransientError as exc:
        raise self.retry(exc=exc, countdown=random.uniform(0, min(60.0, 0.5 * 2 ** self.request.retries))) from exc
    except PermanentError:
        return None  # the address refuses mail: it stays unverified
