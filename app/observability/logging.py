"""Logs in Elastic Common Schema JSON (Elastic's `ecs-logging` formatter), one object per line,
with the correlation ids of the current request or task, for Filebeat/Elasticsearch/Kibana.

- `service.name` (SERVICE_NAME, "tickets") and `event.dataset` per process (`tickets.api`,
  `tickets.worker`, `tickets.beat`, `tickets.exporter`, `tickets.writer`; LOG_DATASET overrides);
- the request id as `http.request.id`, the user as `user.id`, the task and the sale as
  `labels.task_id` and `labels.event_id`; any other `extra=` as a `labels.*` keyword, so no line
  invents a top-level field ECS does not define;
- no personal data: e-mail addresses and phone numbers are masked in every message.

`LOG_JSON=0` (make run's default) keeps one readable line per record instead.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from typing import Any

import ecs_logging
from flask import Flask, Response, g, request

from app.observability.context import ALL_VARS, clear_context, set_context

REQUEST_ID_HEADER = "X-Request-ID"

# attributes every LogRecord has; anything else on a record came from `extra=` (or the context)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# where a correlation id goes in ECS; the rest of `extra=` goes under labels.*
_ECS_NAMES = {"request_id": "http.request.id", "user_id": "user.id", "task_id": "labels.task_id",
              "event_id": "labels.event_id"}
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+\d{7,15}\b")


def mask_personal_data(text: str) -> str:
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))


class EcsFormatter(ecs_logging.StdlibFormatter):
    """ECS JSON with our correlation ids in ECS fields and everything else under labels."""

    def __init__(self, service: str, dataset: str) -> None:
        super().__init__(extra={"service.name": service, "event.dataset": dataset},
                         exclude_fields=["log.original"])  # the message, once

    def format_to_ecs(self, record: logging.LogRecord) -> dict[str, Any]:
        record = logging.makeLogRecord(vars(record))  # a copy: the fields move out of it below
        moved: dict[str, str] = {}
        for key in [k for k in vars(record) if k not in _STANDARD and not k.startswith("_")]:
            value = record.__dict__.pop(key)
            if value is not None:
                moved[_ECS_NAMES.get(key, f"labels.{key}")] = str(value)
        result = super().format_to_ecs(record)
        result["message"] = mask_personal_data(str(result.get("message", "")))
        for key in ("message", "stack_trace"):  # an exception's text may name an address too
            if key in result.get("error", {}):
                result["error"][key] = mask_personal_data(str(result["error"][key]))
        for dotted, value in moved.items():
            *parents, leaf = dotted.split(".")
            node = result
            for name in parents:
                node = node.setdefault(name, {})
            node[leaf] = value
        return result


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in ALL_VARS.items():
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


def configure_logging(level: str = "INFO", json_logs: bool = True, service: str = "tickets",
                      dataset: str = "tickets.api") -> None:
    root = logging.getLogger()
    if getattr(root, "_tickets_configured", False):
        return
    # the real stderr: in Celery workers sys.stderr is a proxy that re-logs what is written to it
    handler = logging.StreamHandler(sys.__stderr__)
    handler.addFilter(ContextFilter())
    if json_logs:
        handler.setFormatter(EcsFormatter(service, dataset))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root.handlers = [handler]
    root.setLevel(level)
    root._tickets_configured = True  # type: ignore[attr-defined]


def request_id_from(incoming: str) -> str:
    """The request's id: the caller's, if it is short and printable (it ends up in every log line),
    or a new one."""
    return incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex


def install_request_context(app: Flask) -> None:
    def _bind_request_id() -> None:
        rid = request_id_from(request.headers.get(REQUEST_ID_HEADER, ""))
        g.request_id = rid
        event_id = (request.view_args or {}).get("event_id")
        set_context(request_id=rid, user_id=None, task_id=None, event_id=event_id)

    # first of the before_request functions: an answer one of them gives early (a malformed JSON
    # body's 400, a 429) carries the request id too
    app.before_request_funcs.setdefault(None, []).insert(0, _bind_request_id)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        rid = getattr(g, "request_id", None)
        if rid:
            response.headers[REQUEST_ID_HEADER] = rid
        return response

    @app.teardown_request
    def _clear(_exc: BaseException | None) -> None:
        clear_context()
