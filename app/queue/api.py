from __future__ import annotations

import json
import time

from flask import Response, current_app, request, stream_with_context
from flask.views import MethodView
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.auth.jwt_setup import (
    current_user_id,
    jwt_required_blocklist_deferred,
    revoked_key,
)
from app.errors import AppError
from app.jsonio import json_response
from app.queue import services, streams
from app.queue.schemas import QueueStatusSchema

blp = Blueprint("queue", __name__, url_prefix="/api/queue", description="Waiting room")

TERMINAL = {"admitted", "expired", "not_in_queue"}


@blp.route("/<int:event_id>/join")
class Join(MethodView):
    @jwt_required_blocklist_deferred
    @blp.response(202, QueueStatusSchema)
    def post(self, event_id: int) -> Response:
        """Take a place in the sale's waiting room (joining again keeps the same place).

        A sale may ask for a proof of work (428 `proof_of_work_required`): see docs/security.md."""
        nonce = request.headers.get("X-Proof-Of-Work", "")
        return json_response(services.join(event_id, current_user_id(), revoked_key(), nonce).as_dict(), 202)


@blp.route("/<int:event_id>/status")
class Status(MethodView):
    @jwt_required_blocklist_deferred
    @blp.response(200, QueueStatusSchema)
    def get(self, event_id: int) -> Response:
        """Position, honest wait estimate and, once admitted, the admission pass. Polling is the heartbeat."""
        return json_response(services.status(event_id, current_user_id(), revoked_key=revoked_key()).as_dict(), 200)


@blp.route("/<int:event_id>/stream")
class Stream(MethodView):
    @jwt_required()
    @blp.doc(responses={200: {"description": "text/event-stream of queue status objects"}})
    def get(self, event_id: int) -> Response:
        """Server-Sent Events: the status object whenever it changes; ends after admitted/expired.

        Served by the gevent server (`gunicorn -c docker/gunicorn.conf.py`), where an idle stream
        costs a greenlet; the threaded REST server (`python -m app.serve`) answers 503
        `stream_unavailable`, and clients poll the status instead.
        """
        if not current_app.config["SSE_ENABLED"]:
            # the threaded REST server (app/serve.py): a stream would hold one of its few threads
            raise AppError("Live updates are not served here: poll the status every poll_after_ms",
                           status_code=503, reason="stream_unavailable", headers={"Retry-After": "5"})
        user_id = current_user_id()
        first = services.status(event_id, user_id)  # 404/429 before the stream starts
        lease = streams.open_lease(event_id, user_id)  # 429 beyond the per-user and per-sale caps
        client_socket = request.environ.get("gunicorn.socket")
        interval = current_app.config["SSE_INTERVAL_SECONDS"]
        max_interval = max(interval, current_app.config["SSE_MAX_INTERVAL_SECONDS"])
        deadline = time.monotonic() + current_app.config["SSE_MAX_SECONDS"]

        def events():
            view, last, last_sent = first, None, 0.0
            try:
                while True:
                    payload = json.dumps(view.as_dict(), sort_keys=True)
                    if payload != last:
                        yield f"event: status\ndata: {payload}\n\n"
                        last, last_sent = payload, time.monotonic()
                    elif time.monotonic() - last_sent > 15:
                        yield ": keep-alive\n\n"  # proxies close silent connections
                        last_sent = time.monotonic()
                    if view.status in TERMINAL or time.monotonic() > deadline:
                        return
                    # far-back users are checked less often (a quarter of their wait, capped), so
                    # thousands of open streams cost little; near the front, every `interval`
                    time.sleep(max(interval, min(max_interval, (view.eta_seconds or 0) / 4)))
                    if streams.client_gone(client_socket):
                        return  # the fan closed the page: free the lease now, not at the next write
                    try:
                        view = services.status(event_id, user_id, metered=False)
                        streams.renew_lease(event_id, user_id, lease)
                    except AppError:
                        return
            finally:  # also when the client goes away (the generator is closed)
                try:
                    streams.close_lease(event_id, user_id, lease)
                except Exception:  # noqa: BLE001 - the lease then lapses by itself
                    pass

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(stream_with_context(events()), mimetype="text/event-stream", headers=headers)


@blp.route("/<int:event_id>")
class Place(MethodView):
    @jwt_required()
    @blp.response(204)
    def delete(self, event_id: int) -> None:
        """Give up the place (or the active slot once admitted)."""
        services.leave(event_id, current_user_id())
