"""Send Celery tasks without failing the caller, and run work after the surrounding database
transaction commits.

A task sent before COMMIT can run before its rows are visible (or for rows that are then rolled
back); a task sent after COMMIT can be lost if the process dies in between, so every producer of
work here also has a beat sweeper that finds and re-enqueues what was missed (pypi/warehouse does
the same with its `tm` integration). ``call_after_commit(session, lambda: send_task(...))`` sends
one after COMMIT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_CALLBACKS_KEY = "tickets.after_commit_callbacks"


def send_task(name: str, args: tuple | list = (), kwargs: dict | None = None, **options: Any) -> None:
    """Send a task by name now, logging (not raising) when the broker is unavailable.

    Callers rely on beat sweepers to pick up work whose message was lost, so a broker outage must
    not turn a committed change into a 500 for the user.
    """
    from flask import current_app, has_app_context

    if has_app_context() and not current_app.config.get("CELERY_ENABLED", True):
        return
    from tasks.celery_app import celery

    try:
        celery.send_task(name, args=list(args), kwargs=kwargs or {}, **options)
    except Exception:  # noqa: BLE001 - broker errors are many kinds; the sweeper recovers
        log.exception("could not enqueue task %s; a sweeper will retry", name)


def call_after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run ``fn`` once the transaction commits (e.g. give units back to the Redis gate)."""
    session.info.setdefault(_CALLBACKS_KEY, []).append(fn)


@event.listens_for(Session, "after_commit")
def _run_callbacks(session: Session) -> None:
    for fn in session.info.pop(_CALLBACKS_KEY, []):
        try:
            fn()
        except Exception:  # noqa: BLE001 - the commit stands; reconcilers repair derived state
            log.exception("after-commit callback failed")


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # outermost transaction rolled back
        session.info.pop(_CALLBACKS_KEY, None)
