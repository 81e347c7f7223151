"""Correlation ids carried through logs: request id (API -> tasks), user, task and event ids."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
user_id_var: ContextVar[str | None] = ContextVar("user_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("task_id", default=None)
event_id_var: ContextVar[str | None] = ContextVar("event_id", default=None)

ALL_VARS = {"request_id": request_id_var, "user_id": user_id_var, "task_id": task_id_var,
            "event_id": event_id_var}


def set_context(**values: object) -> None:
    for name, value in values.items():
        ALL_VARS[name].set(None if value is None else str(value))


def clear_context() -> None:
    for var in ALL_VARS.values():
        var.set(None)
