from __future__ import annotations

import hashlib
import time

import orjson
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
from app.queue import draws, passes, services, streams
from app.queue.schemas import (
    DrawEntrantsArgsSchema,
    DrawEntrantsSchema,
    DrawSchema,
    JoinSchema,
    MyDrawEntrySchema,
    QueueStatusSchema,
    parse_join,
)

blp = Blueprint("queue", __name__, url_prefix="/api/queue", description="Waiting room")

SERVING_MAX_AGE = 1  # seconds: a cache in front (docker/nginx.conf, a CDN) serves every fan from one answer
# a published draw never changes; before it, the commitment may be made late (the page shows when)
DRAW_MAX_AGE = {"drawn": 3600, "committed": 10}


@blp.route("/<int:event_id>/join")
class Join(MethodView):
    @jwt_required_blocklist_deferred
    @blp.doc(requestBody={"required": False, "content": {"application/json": {"schema": JoinSchema}}})
    @blp.response(202, QueueStatusSchema)
    def post(self, event_id: int) -> Response:
        """Take a place in the sale's waiting room (joining again keeps the same place).

        With `{"code": ...}`, an access code: the fan waits in its lane (a presale) for the whole
        sale. Refusals: 422 `access_code_invalid`, 403 `access_code_other_email`, 409
        `access_code_used_up`, `access_code_not_valid_yet`, `access_code_expired`, 429
        `access_code_attempts_exceeded` (10 wrong codes in 10 minutes). A sale may ask for a
        proof of work (428 `proof_of_work_required`): see docs/security.md."""
        nonce = request.headers.get("X-Proof-Of-Work", "")
        code = parse_join(request)
        return json_response(services.join(event_id, current_user_id(), revoked_key(), nonce, code).as_dict(), 202)


@blp.route("/<int:event_id>/status")
class Status(MethodView):
    @jwt_required_blocklist_deferred
    @blp.response(200, QueueStatusSchema)
    def get(self, event_id: int) -> Response:
        """Position, honest wait estimate and, once admitted, the admission pass. Polling is the heartbeat."""
        return json_response(services.status(event_id, current_user_id(), revoked_key=revoked_key()).as_dict(), 200)


@blp.route("/<int:event_id>/serving")
class Serving(MethodView):
    @blp.doc(responses={200: {"description": "the sale's public serving figures"}, 304: {"description": "unchanged"}})
    def get(self, event_id: int) -> Response:
        """The sale's serving figures, the same for every fan and cacheable for a second: served up
        to (a line number), the measured admission rate and its uncertainty, paused, the opening.

        A fan's page works out an honest position from these and its own line number (from join
        or status): `line_number - served_up_to` is never lower than the true position."""
        body = orjson.dumps(services.serving_dict(event_id, services.serving(event_id)))
        response = Response(body, status=200, mimetype="application/json")
        response.set_etag(hashlib.blake2b(body, digest_size=12).hexdigest())
        response.headers["Cache-Control"] = f"public, max-age={SERVING_MAX_AGE}"
        return response.make_conditional(request)


@blp.route("/<int:event_id>/stream")
class Stream(MethodView):
    @jwt_required()
    @blp.doc(responses={200: {"description": "text/event-stream of queue status objects"}})
    def get(self, event_id: int) -> Response:
        """Server-Sent Events: the status object whenever it changes; ends after admitted/expired.

        Served by the gevent server (`gunicorn -c docker/gunicorn.conf.py`), where an idle stream
        costs a greenlet; the threaded REST server (`python -m app.serve`) answers 503
        `stream_unavailable`, and clients poll the status instead. `?place=<signed place>` (from
        join or status) opens the stream without a status call of its own; a place that is not
        the caller's is a 403.
        """
        if not current_app.config["SSE_ENABLED"]:
            # the threaded REST server (app/serve.py): a stream would hold one of its few threads
            raise AppError("Live updates are not served here: poll the status every poll_after_ms",
                           status_code=503, reason="stream_unavailable", headers={"Retry-After": "5"})
        user_id = current_user_id()
        place = request.args.get("place")
        if place:
            claims = passes.decode_place(place, user_id, event_id)  # 403 for a forged or borrowed place
            first = services.estimate(int(claims["num"]), services.serving(event_id), time.time(), place=place)
        else:
            first = services.status(event_id, user_id)  # 404/429 before the stream starts
        stream_id = streams.open_lease(event_id, user_id)  # 429 beyond the per-user and per-sale caps
        events = streams.updates(event_id, user_id, first, stream_id, streams.StreamSocket.of(request.environ))
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(stream_with_context(events), mimetype="text/event-stream", headers=headers)


@blp.route("/<int:event_id>")
class Place(MethodView):
    @jwt_required()
    @blp.response(204)
    def delete(self, event_id: int) -> None:
        """Give up the place (or the active slot once admitted)."""
        services.leave(event_id, current_user_id())


@blp.route("/<int:event_id>/draw")
class Draw(MethodView):
    @blp.response(200, DrawSchema)
    def get(self, event_id: int) -> Response:
        """The sale's verifiable draw: before the opening, the commitment (SHA-256 of a secret
        seed); after it, the seed and the ordered pseudonymous entrants
        (`python -m app.queue.verify_draw URL` checks them; docs/waiting-room.md)."""
        body = draws.document(event_id)
        return json_response(body, 200, headers={"Cache-Control": f"public, max-age={DRAW_MAX_AGE[body['state']]}"})


@blp.route("/<int:event_id>/draw/entrants")
class DrawEntrants(MethodView):
    @blp.arguments(DrawEntrantsArgsSchema, location="query")
    @blp.response(200, DrawEntrantsSchema)
    def get(self, args: dict, event_id: int) -> Response:
        """The published order, from place `after + 1`, up to `limit` entrant ids a page; `next`
        is the following page. 409 `draw_not_published` before the draw."""
        page = draws.entrants(event_id, args["after"], args["limit"])
        return json_response(page.body(event_id, args["limit"]), 200,
                             headers={"Cache-Control": f"public, max-age={DRAW_MAX_AGE['drawn']}"})


@blp.route("/<int:event_id>/draw/me")
class MyDrawEntry(MethodView):
    @jwt_required()
    @blp.response(200, MyDrawEntrySchema)
    def get(self, event_id: int) -> Response:
        """The caller's entrant id in the draw, and their place once drawn (null: not an entrant)."""
        return json_response(draws.my_entry(event_id, current_user_id()), 200, headers={"Cache-Control": "private"})
