"""The app's side of Celery: its configuration, the task base that gives every task an app context,
sending tasks without failing the caller, and running work after the surrounding database
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

from celery import Task, signals
from flask import Flask
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.observability.context import request_id_var
from app.settings import Settings

log = logging.getLogger(__name__)

_flask_app: Flask | None = None


def configure_celery(settings: Settings) -> None:
    """Apply the app's configuration to the Celery instance (called by create_app and by the worker's
    entry point, tasks/celery_app.py, so both read the same settings from the same loader)."""
    from app.extensions import celery
    from celeryconfig import celery_settings

    celery.conf.update(celery_settings(settings))


def flask_app() -> Flask:
    """The worker's Flask app, built once per process from the environment."""
    global _flask_app
    if _flask_app is None:
        from flask import current_app, has_app_context

        if has_app_context():  # tests and in-process callers share their app
            return current_app._get_current_object()
        from app import create_app

        _flask_app = create_app()
    return _flask_app


def set_flask_app(app: Flask) -> None:
    global _flask_app
    _flask_app = app


class AppContextTask(Task):
    """Runs the task body in a Flask app context and removes the DB session afterwards. A task owns
    its unit of work: it commits what it wrote (app/db.transaction)."""

    abstract = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from flask import has_app_context

        from app.extensions import db

        if has_app_context():
            return super().__call__(*args, **kwargs)
        with flask_app().app_context():
            try:
                return super().__call__(*args, **kwargs)
            finally:
                db.remove()


@signals.before_task_publish.connect
def _propagate_request_id(headers: dict | None = None, **_kwargs: Any) -> None:
    """The request id travels from the API into the tasks it enqueues (logs join up)."""
    rid = request_id_var.get()
    if headers is not None and rid:
        headers["request_id"] = rid

_CALLBACKS_KEY = "tickets.after_commit_callbacks"


def send_task(name: str, args: tuple | list = (), kwargs: dict | None = None, **options: Any) -> None:
    """Send a task by name now, logging (not raising) when the broker is unavailable.

    Callers rely on beat sweepers to pick up work whose message was lost, so a broker outage must
    not turn a committed change into a 500 for the user.
    """
    from flask import current_app, has_app_context

    if has_app_context() and not current_app.config.get("CELERY_ENABLED", True):
        return
    from app.extensions import celery

    try:
        celery.send_task(name, args=list(args), kwargs=kwargs or {}, **options)
    except Exception:  # noqa: BLE001 - broker errors are many kinds; the sweeper recovers
        log.exception("could not enqueue task %s; a sweeper will retry", name)


def send_task_after_commit(name: str, args: tuple | list = (), kwargs: dict | None = None, **options: Any) -> None:
    """Inside a unit of work (app/db.transaction): send the task once it commits, never for a
    rolled-back one (a crash in between is covered by the task's beat sweeper). Outside one: now."""
    from app.db import db, in_transaction

    if db.engine is not None and in_transaction():
        call_after_commit(db.session(), lambda: send_task(name, args, kwargs, **options))
    else:
        send_task(name, args, kwargs, **options)


def call_after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run ``fn`` once the transaction commits (e.g. give units back to the Redis gate)."""
    session.info.setdefault(_CALLBACKS_KEY, []).append(fn)


@event.listens_for(Session, "after_commit")
def _run_callbacks(session: Session) -> None:
    from app.db import DEFER_AFTER_COMMIT, READY_AFTER_COMMIT

    if session.info.get(DEFER_AFTER_COMMIT):  # transaction() runs them once commit() returned
        session.info.setdefault(READY_AFTER_COMMIT, []).extend(session.info.pop(_CALLBACKS_KEY, []))
        return
    for fn in session.info.pop(_CALLBACKS_KEY, []):
        try:
            fn()
        except Exception:  # noqa: BLE001 - the commit stands; reconcilers repair derived state
            log.exception("after-commit callback failed")


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # outermost transaction rolled back
        session.info.pop(_CALLBACKS_KEY, None)
