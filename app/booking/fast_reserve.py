"""POST /api/tickets/reserve's accepted answer without Flask's per-request machinery.

Under a flash sale the reserve endpoint is one Redis script call, and Flask's machinery around it
(the request context, URL matching, eleven request hooks, the response object) cost more CPU than
the call itself: 0.54 ms a request in-process against 0.19 for the whole reference app (bench/
reference_app.py), with the booking worker, MariaDB and Redis on the same cores. This WSGI
middleware answers the common case, a JSON body with a Content-Length, by calling what the view
calls (the token check, then ``accept_reserve``) inside an application context, and builds the 202
itself with what the request hooks would add: the request id, ``X-Content-Type-Options`` and the
HTTP request metrics.

Everything else is Flask's to answer, so each error keeps its one renderer:
- what the lean path does not take (another path or method, a query string, a body that is not
  plain JSON with a Content-Length, an offer claim) goes to Flask from the start;
- a refusal or an error raised on the way (401, 403, 404, 409 sold out, 422, Redis down) is handed
  to the Flask view in the environ, and the view raises it before doing anything else, so Flask's
  error handlers, translations, hooks and metrics answer it as if the view had raised it. Nothing
  runs twice: a refusal changed nothing.

``API_RESERVE_FAST_PATH=0`` turns it off (the bench compares both).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from timeit import default_timer
from typing import Any

import orjson
from flask import Flask
from werkzeug.datastructures import EnvironHeaders
from werkzeug.http import parse_cookie

from app.auth.jwt_setup import verify_access_token
from app.booking.api import REFUSAL, accept_reserve
from app.errors import MAX_JSON_DEPTH
from app.jsonio import NO_SNIFF
from app.observability.context import clear_context, set_context
from app.observability.logging import REQUEST_ID_HEADER, request_id_from
from app.observability.metrics import http_request_recorder

RESERVE_ENDPOINT = "tickets.Reserve"  # the view this answers for (app/booking/api.py)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FastReserve:
    """The WSGI middleware (module doc) in front of ``wsgi_app``, Flask's own WSGI callable, which
    answers everything this does not."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.max_body = app.config["MAX_CONTENT_LENGTH"]
        self._path: str | None = None
        self._record: Callable[[str, str, int, float], None] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = self._path or self._reserve_path()
        if environ.get("PATH_INFO") != path or environ.get("REQUEST_METHOD") != "POST" \
                or environ.get("QUERY_STRING") or "HTTP_X_OFFER_TOKEN" in environ:
            return self.wsgi_app(environ, start_response)
        started = default_timer()
        body = self._json_body(environ)
        if body is None:  # not plain JSON, chunked, too large, too deep or malformed: Flask's answers
            return self.wsgi_app(environ, start_response)
        rid = request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        set_context(request_id=rid, user_id=None, task_id=None, event_id=None)
        try:
            with self.app.app_context():
                answer = orjson.dumps(self._accept(environ, body))
        except Exception as exc:  # noqa: BLE001 - every refusal and error is Flask's to answer
            environ[REFUSAL] = exc
            environ["HTTP_X_REQUEST_ID"] = rid  # the same id in the logs and on the answer
            return self.wsgi_app(environ, start_response)
        finally:
            clear_context()
        start_response("202 ACCEPTED", [("Content-Type", "application/json"), ("Content-Length", str(len(answer))),
                                        (REQUEST_ID_HEADER, rid), NO_SNIFF])
        self._recorder()("POST", path, 202, max(default_timer() - started, 0.0))
        return [answer]

    def _json_body(self, environ: dict[str, Any]) -> Any:
        """The parsed body, left readable for Flask (None: Flask's to answer)."""
        if environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != "application/json":
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 < length <= self.max_body:
            return None
        data = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(data)
        environ["CONTENT_LENGTH"] = str(len(data))
        if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH:  # guard_json_body measures it properly
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return None

    def _accept(self, environ: dict[str, Any], body: Any) -> dict[str, Any]:
        """Reserve.post's work (app/booking/api.py): the accepted reservation's view, or a raise."""
        headers = EnvironHeaders(environ)  # werkzeug's view of the environ, as request.headers is
        cookies = parse_cookie(environ.get("HTTP_COOKIE", "")) if "Authorization" not in headers else {}
        _jwt_header, claims, _location = verify_access_token(
            self.app.config, headers.get("Authorization", ""), cookies.get, "POST", lambda name: headers.get(name, ""))
        return accept_reserve(claims, body, headers.get("Idempotency-Key"), headers.get("X-Admission-Token"))

    def _reserve_path(self) -> str:
        """The reserve view's route, read from the URL map (filled after this middleware is
        installed), so the two never disagree. It is also the url_rule label of its metrics."""
        self._path = next(rule.rule for rule in self.app.url_map.iter_rules(RESERVE_ENDPOINT))
        return self._path

    def _recorder(self) -> Callable[[str, str, int, float], None]:
        if self._record is None:  # the exporter is set up after the blueprints, after this middleware
            self._record = http_request_recorder(self.app)
        return self._record
