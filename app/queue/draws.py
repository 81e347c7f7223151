"""The pre-queue's draw, verifiable by anyone (docs/waiting-room.md, "A draw anyone can verify").

A sale commits to a secret seed when it is created: its SHA-256 is public (the event's page,
``GET /api/queue/{id}/draw``, ``DrawCommitted`` in Kafka). At the opening the pre-queue is ordered
by the seed (app/queue/verify_draw.py: the algorithm, shared with the verifier) and the order is
recorded here, the seed and the ordered pseudonymous entrant ids published (``DrawPublished``),
*before* anyone is placed in the line: a draw that cannot be recorded does not happen, and the
sale's opening waits for MySQL.

``make_commitment`` and ``record`` only flush, in their caller's unit of work. ``draw_prequeue`` is the one
unit of work of its own here: the record must be committed before the line is placed from it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.lock import Lock
from sqlalchemy import delete, select

from app.catalogue.models import Event
from app.catalogue.services import get_event
from app.db import bulk_insert, in_transaction, transaction, utcnow
from app.errors import Conflict, NotFound
from app.extensions import db, redis_store
from app.outbox.services import record_event
from app.queue.models import DrawEntrant, SaleDraw
from app.queue.verify_draw import ALGORITHM, commitment_of, digest, drawn_order, entrant_id
from app.redis import calls
from app.redis.keys import QueueKeys
from app.redis.locks import keep

# a pre-queue that grew between its read and its placement (an API server whose clock runs behind
# the opening) is read and drawn again; this many times at most before the tick gives up
DRAW_ATTEMPTS = 5
# the advance lock's lease for one attempt: measured 21 us of draw per entrant (bench/draw_bench.py),
# with room for a slower machine
LOCK_BASE_MS, LOCK_MS_PER_ENTRANT = 10_000, 0.1
ENTRANTS_PAGE_MAX = 10_000
_INSERT_CHUNK = 5_000


def make_commitment(event_id: int) -> SaleDraw:
    """The sale's commitment, made once: a secret random seed, its SHA-256 public from now on, and
    ``DrawCommitted`` in the outbox (the caller's unit of work commits it)."""
    draw = db.session.get(SaleDraw, event_id)
    if draw is not None:
        return draw
    seed = secrets.token_hex(32)
    draw = SaleDraw(event_id=event_id, seed=seed, entrant_key=secrets.token_hex(32),
                    commitment=commitment_of(seed), committed_at=utcnow())
    db.session.add(draw)
    db.session.flush()
    record_event(db.session, "DrawCommitted", "queue", event_id, {
        "event_id": event_id, "algorithm": ALGORITHM, "commitment": draw.commitment,
        "committed_at": draw.committed_at.isoformat()})
    return draw


def record(event_id: int, user_ids: list[str]) -> list[str]:
    """Draw ``user_ids`` (the pre-queue) by the committed seed, record the order and publish it:
    the user ids in the drawn order. The same set draws the same order, so a retry after a crash
    writes nothing new and announces nothing twice."""
    if not user_ids and db.session.get(SaleDraw, event_id) is None:
        return []  # nobody to draw, and no commitment to keep: nothing to publish
    draw = make_commitment(event_id)  # a sale created before draws were committed commits now (the page says so)
    by_entrant = {entrant_id(draw.entrant_key, user): user for user in user_ids}
    order = drawn_order(draw.seed, by_entrant)
    order_digest = digest(order)
    if draw.drawn_at is None or draw.entrants_digest != order_digest:
        session = db.session
        session.execute(delete(DrawEntrant).where(DrawEntrant.event_id == event_id))
        rows = [{"event_id": event_id, "place": place, "entrant_id": entrant}
                for place, entrant in enumerate(order, start=1)]
        for i in range(0, len(rows), _INSERT_CHUNK):
            bulk_insert(session, DrawEntrant.__table__, rows[i:i + _INSERT_CHUNK])
        draw.drawn_at, draw.entrants, draw.entrants_digest = utcnow(), len(order), order_digest
        session.flush()
        record_event(session, "DrawPublished", "queue", event_id, {
            "event_id": event_id, "algorithm": ALGORITHM, "commitment": draw.commitment, "seed": draw.seed,
            "entrants": len(order), "entrants_digest": order_digest})
    return [by_entrant[entrant] for entrant in order]


def draw_prequeue(event_id: int, now: float | None = None, lock: Lock | None = None) -> int | None:
    """Draw the pre-queue once and place it, in the drawn order, ahead of later arrivals: how many
    were placed (None: the sale was drawn before). Called under the sale's advance ``lock``, which
    is kept for as long as a draw of this size takes (a million entrants: about 26 s, `make
    bench-draw`), and checked again before anyone is placed."""
    if in_transaction():
        raise RuntimeError("the draw commits its own record before the line is placed from it")
    keys = QueueKeys(event_id)
    client = redis_store.client
    for _ in range(DRAW_ATTEMPTS):
        if client.hget(keys.meta, "shuffled") == "1":  # placed before: its record stands as published
            return None
        members = list(client.smembers(keys.pre))
        ttl_ms = LOCK_BASE_MS + LOCK_MS_PER_ENTRANT * len(members)
        if lock is not None:
            keep(lock, ttl_ms)
        with transaction():
            order = record(event_id, members)
        if lock is not None:  # LockLost: another advancer may be drawing; it places, not this one
            keep(lock, ttl_ms)
        outcome = calls.shuffle(keys, now=now or time.time(), order=order)
        if outcome.status == "placed":
            return outcome.placed
        if outcome.status == "drawn_before":
            return None
        # "grown": someone reached the pre-queue after it was read; draw the whole set again
    raise RuntimeError(f"the pre-queue of sale {event_id} kept growing during its draw")


# --- what is public ------------------------------------------------------------------------------

@dataclass(frozen=True)
class EntrantsPage:
    items: list[str]
    after: int
    total: int

    def body(self, event_id: int, limit: int, path: str = "/api/queue/{event_id}/draw/entrants") -> dict[str, Any]:
        """The page's JSON; ``path``: where the pages are (a registration lottery's are elsewhere)."""
        last = self.after + len(self.items)
        more = last < self.total
        return {"items": self.items, "from_place": self.after + 1, "total": self.total,
                "next": f"{path.format(event_id=event_id)}?after={last}&limit={limit}" if more else None}


def _event_and_draw(event_id: int) -> tuple[Event, SaleDraw]:
    event = get_event(event_id)  # 404 for an unknown sale
    draw = db.session.get(SaleDraw, event_id)
    if draw is None:
        raise NotFound("This sale has no committed draw", reason="draw_not_committed")
    return event, draw


def document(event_id: int) -> dict[str, Any]:
    """The draw as anyone sees it: the commitment always; the seed and the list once drawn."""
    event, draw = _event_and_draw(event_id)
    drawn = draw.drawn_at is not None
    return {"event_id": event_id, "algorithm": ALGORITHM, "state": "drawn" if drawn else "committed",
            "commitment": draw.commitment, "committed_at": draw.committed_at.isoformat(),
            "opens_at": event.sale_opens_at.isoformat(),
            "seed": draw.seed if drawn else None, "drawn_at": draw.drawn_at.isoformat() if drawn else None,
            "entrants": draw.entrants, "entrants_digest": draw.entrants_digest,
            "entrants_url": f"/api/queue/{event_id}/draw/entrants?after=0&limit={ENTRANTS_PAGE_MAX}" if drawn else None}


def entrants(event_id: int, after: int, limit: int) -> EntrantsPage:
    """The drawn order from place ``after + 1`` on (keyset pages: any size up to 10,000 is one
    index range, however deep)."""
    _, draw = _event_and_draw(event_id)
    if draw.drawn_at is None:
        raise Conflict("The order is published when the sale opens", reason="draw_not_published")
    items = db.session.scalars(select(DrawEntrant.entrant_id).where(
        DrawEntrant.event_id == event_id, DrawEntrant.place > after).order_by(DrawEntrant.place).limit(limit)).all()
    return EntrantsPage(list(items), after, draw.entrants or 0)


def my_entry(event_id: int, user_id: int) -> dict[str, Any]:
    """The fan's own entrant id (theirs alone to know) and place in the draw, once drawn."""
    _, draw = _event_and_draw(event_id)
    mine = entrant_id(draw.entrant_key, user_id)
    place = None
    if draw.drawn_at is not None:
        place = db.session.scalar(select(DrawEntrant.place).where(
            DrawEntrant.event_id == event_id, DrawEntrant.entrant_id == mine))
    return {"event_id": event_id, "entrant_id": mine, "state": "drawn" if draw.drawn_at else "committed",
            "place": place, "entrants": draw.entrants}
