"""The worker's entry point: the app's Celery instance (app/extensions.py), configured from the
app's configuration, with every task of tasks/ registered, the hold writer as a worker step and the
worker-side signals (request id, task metrics). Every task runs inside a Flask application context
(app/tasking.AppContextTask)."""

from __future__ import annotations

import time
from typing import Any

from celery import Task, bootsteps, signals

from app.extensions import celery
from app.observability.context import clear_context, set_context
from app.settings import process_settings
from app.tasking import AppContextTask, configure_celery, flask_app, set_flask_app


def _survive_kombu_reconnect_race() -> None:
    """kombu 5.7's Redis transport: when the broker goes away while tasks are unacknowledged, the
    consumer closes its channel, which restores those messages through a connection that was
    already released; `_connparams` then reads `None.hostname`, and the AttributeError escapes
    `ignore_errors` (it only ignores connection errors): "Unrecoverable error", the worker exits
    (seen in tests/integration/test_faults.py; celery/celery#10205, kombu#970 are relatives). Raising the
    connection error it really is lets the consumer do what it does for any lost connection:
    reconnect. The unacknowledged messages are redelivered after the visibility timeout, as
    after any lost connection."""
    import redis
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._connparams
    if getattr(original, "_patched", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> dict:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection was already released")
        return original(self, asynchronous)

    _connparams._patched = True  # type: ignore[attr-defined]
    kombu_redis.Channel._connparams = _connparams


_survive_kombu_reconnect_race()
configure_celery(process_settings())  # create_app applies the same settings again, from the same loader
celery.autodiscover_tasks(["tasks"], related_name=None, force=True)


class HoldWriterStep(bootsteps.StartStopStep):
    """Runs the hold writer (app/booking/writer.py) as a thread of the worker's main process, in
    every worker that consumes the `booking` queue: `make run`, the compose stack, k8s and the
    tests get it with no process of its own. Several workers share the streams (consumer group)."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.writer = None

    def start(self, worker: Any) -> None:
        consumed = worker.app.amqp.queues.consume_from
        if consumed is not None and "booking" not in consumed:
            return
        app = flask_app()
        if not app.config["HOLD_WRITER_ENABLED"]:
            return
        from app.booking.writer import HoldWriter

        self.writer = HoldWriter(app, name=worker.hostname)
        self.thread = self.writer.start()

    def stop(self, worker: Any) -> None:
        if self.writer is not None:
            self.writer.stop()
            self.thread.join(10)


celery.steps["worker"].add(HoldWriterStep)


class HeartbeatStep(bootsteps.StartStopStep):
    """Every few seconds the worker says it is alive, and which queues it consumes, in the broker's
    Redis (keys.WORKERS_KEY); a warm shutdown says it is gone. The exporter counts the live workers
    per queue (`tickets_celery_queue_workers`), and CeleryQueueUnserved pages when a queue has none
    (a worker SIGKILLed, OOM-killed, or never started)."""

    requires = {"celery.worker.components:Pool"}

    def start(self, worker: Any) -> None:
        import threading

        from app.observability.workers import heartbeat

        self.stopping = threading.Event()
        queues = sorted(worker.app.amqp.queues.consume_from or worker.app.amqp.queues)
        broker_url = flask_app().config["CELERY_BROKER_URL"]
        self.thread = threading.Thread(target=heartbeat, args=(broker_url, worker.hostname, queues, self.stopping),
                                       name="worker-heartbeat", daemon=True)
        self.thread.start()

    def stop(self, worker: Any) -> None:
        if getattr(self, "thread", None) is not None:
            self.stopping.set()
            self.thread.join(10)


celery.steps["worker"].add(HeartbeatStep)

# --- the request id (sent by app/tasking.py) binds the task's log context; task metrics -------
_started: dict[str, float] = {}


@signals.task_prerun.connect
def _bind_task_context(task_id: str | None = None, task: Task | None = None, **_kwargs: Any) -> None:
    rid = getattr(task.request, "request_id", None) if task is not None else None
    set_context(request_id=rid, task_id=task_id, user_id=None, event_id=None)
    if task_id:
        _started[task_id] = time.monotonic()


@signals.task_postrun.connect
def _task_finished(task_id: str | None = None, task: Task | None = None, state: str | None = None,
                   **_kwargs: Any) -> None:
    from app.observability.metrics import TASK_RUNTIME, TASKS

    started = _started.pop(task_id, None) if task_id else None
    if task is not None:
        TASKS.labels(task=task.name, outcome=(state or "unknown").lower()).inc()
        if started is not None:
            TASK_RUNTIME.labels(task=task.name).observe(time.monotonic() - started)
    clear_context()


@signals.task_retry.connect
def _task_retried(sender: Task | None = None, **_kwargs: Any) -> None:
    from app.observability.metrics import TASK_RETRIES

    if sender is not None:
        TASK_RETRIES.labels(task=sender.name).inc()


@signals.worker_process_init.connect
def _fresh_connections_after_fork(**_kwargs: Any) -> None:
    # connections inherited across fork are shared sockets: never reuse them in a child
    from app.extensions import db
    from app.observability.metrics import initialise_label_sets

    if db.engine is not None:
        db.engine.dispose(close=False)
    initialise_label_sets("worker", [name for name in celery.tasks if not name.startswith("celery.")],
                          topic_prefix=flask_app().config["KAFKA_TOPIC_PREFIX"])


__all__ = ["AppContextTask", "celery", "flask_app", "set_flask_app"]
