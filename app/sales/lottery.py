"""The registration lottery of a presale (docs/waiting-room.md, "The registration lottery").

- **Before.** The organiser opens a lottery for a lane: how many win, when registration closes,
  and what losers get. Its commitment, SHA-256 of a secret seed, is public from then on
  (``GET /api/events/{id}/lottery`` and ``LotteryCommitted`` in Kafka). Fans with a verified
  e-mail register, one entry per account.
- **The draw** (at the deadline, by beat: app/sales/lottery_flows.py) orders the entrants exactly
  as the pre-queue's draw does (app/queue/verify_draw.py: pseudonymous ids, sorted by
  HMAC-SHA256(seed, id)), so the same verifier checks it (``--lottery``). The first ``winners``
  win a single-use code of the lane bound to their e-mail; each code is derived from a per-lottery
  secret (``code_key``), so only its SHA-256 is stored and the fan can see it again on the page.
- **Notices** are notification rows written in the draw's transaction under dedupe keys, so each
  winner is told once on every channel (e-mail, SMS, push, web push); losers get a standby place
  (``losers=waitlist``: the organiser promotes the next ones in draw order) or "not this time".

Rules only: each function flushes; lottery_flows.py holds the units of work.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.exc import IntegrityError

from app.auth.models import User
from app.catalogue.models import Event
from app.catalogue.services import get_event
from app.db import insert_ignore, is_duplicate_key, utcnow
from app.errors import Conflict, Forbidden, NotFound, Unprocessable
from app.extensions import db
from app.notifications.services import notice, record_notices
from app.outbox.services import record_event
from app.queue import lanes
from app.queue.draws import EntrantsPage
from app.queue.models import AccessCode, SaleLane
from app.queue.verify_draw import ALGORITHM, commitment_of, digest, drawn_order, entrant_id
from app.sales.models import LotteryEntry, SaleLottery

LOSERS = ("waitlist", "notice")
WON, STANDBY, LOST = "won", "standby", "lost"
NOTICE_KINDS = {WON: "lottery_won", STANDBY: "lottery_standby", LOST: "lottery_lost"}


def winner_code(lottery: SaleLottery, user_id: int) -> str:
    """A winner's code, derived again whenever it is needed (only its SHA-256 is stored): 12
    characters of the code alphabet from HMAC-SHA256(code_key, user id), in groups of four."""
    mac = hmac.new(bytes.fromhex(lottery.code_key), str(user_id).encode(), hashlib.sha256).digest()
    chars = "".join(lanes.CODE_ALPHABET[b % len(lanes.CODE_ALPHABET)] for b in mac[:lanes.CODE_LENGTH])
    return "-".join(chars[k:k + 4] for k in range(0, lanes.CODE_LENGTH, 4))


def get_lottery(event_id: int) -> SaleLottery:
    lottery = db.session.get(SaleLottery, event_id)
    if lottery is None:
        raise NotFound("This sale has no lottery", reason="lottery_not_found")
    return lottery


def create_lottery(event_id: int, data: dict[str, Any]) -> SaleLottery:
    """Open a lottery {lane, winners, closes_at, losers, codes_valid_until?, ticket_limit?} and
    commit to its seed (``LotteryCommitted`` in the caller's unit of work)."""
    event = get_event(event_id)
    lane = lanes.lane_named(event_id, data["lane"])
    if db.session.get(SaleLottery, event_id) is not None:
        raise Conflict("This sale has a lottery already", reason="lottery_exists")
    if data["closes_at"] <= utcnow():
        raise Unprocessable("Registration must close in the future", errors={"closes_at": ["in the past"]})
    limit = data.get("ticket_limit")
    if limit is not None and limit > event.max_per_user:
        raise Unprocessable(f"A code's ticket limit cannot exceed the sale's ({event.max_per_user})",
                            errors={"ticket_limit": [f"at most {event.max_per_user}"]})
    seed = secrets.token_hex(32)
    lottery = SaleLottery(event_id=event_id, lane_id=lane.id, winners=data["winners"], closes_at=data["closes_at"],
                          losers=data.get("losers", "notice"), codes_valid_until=data.get("codes_valid_until"),
                          ticket_limit=limit, seed=seed, entrant_key=secrets.token_hex(32),
                          code_key=secrets.token_hex(32), commitment=commitment_of(seed), committed_at=utcnow(),
                          promoted=0)
    db.session.add(lottery)
    try:
        db.session.flush()
    except IntegrityError as exc:  # two opened at once: the unit of work rolls back
        if not is_duplicate_key(exc):
            raise
        raise Conflict("This sale has a lottery already", reason="lottery_exists") from exc
    record_event(db.session, "LotteryCommitted", "queue", event_id, {
        "event_id": event_id, "algorithm": ALGORITHM, "commitment": lottery.commitment, "lane": lane.name,
        "winners": lottery.winners, "closes_at": lottery.closes_at.isoformat(),
        "committed_at": lottery.committed_at.isoformat()})
    return lottery


def register(event_id: int, user_id: int) -> tuple[LotteryEntry, bool]:
    """The account's entry (created: True the first time; one entry per account)."""
    lottery = get_lottery(event_id)
    entry = db.session.get(LotteryEntry, (event_id, user_id))
    if entry is not None:
        return entry, False
    if lottery.drawn_at is not None or utcnow() >= lottery.closes_at:
        raise Conflict("Registration for this lottery has closed", reason="lottery_closed")
    user = db.session.get(User, user_id)
    if user is None or user.email_verified_at is None:
        raise Forbidden("Confirm your e-mail address before entering the lottery (Account page)",
                        reason="email_unverified")
    # one entry per account, also when the same account enters twice at once (INSERT IGNORE)
    insert_ignore(db.session, LotteryEntry.__table__, [{
        "event_id": event_id, "user_id": user_id, "entrant_id": entrant_id(lottery.entrant_key, user_id),
        "registered_at": utcnow(), "place": None, "outcome": None, "code_id": None}])
    return db.session.get(LotteryEntry, (event_id, user_id)), True


def document(event_id: int) -> dict[str, Any]:
    """The lottery's public document, in the shape of the pre-queue draw's (the verifier reads
    both): the commitment before the draw; the seed, count and digest after it."""
    lottery = get_lottery(event_id)
    lane = db.session.get(SaleLane, lottery.lane_id)
    registered = db.session.scalar(select(func.count()).select_from(LotteryEntry)
                                   .where(LotteryEntry.event_id == event_id))
    drawn = lottery.drawn_at is not None
    return {"event_id": event_id, "algorithm": ALGORITHM, "state": "drawn" if drawn else "open",
            "lane": lane.name if lane else None, "winners": lottery.winners, "losers": lottery.losers,
            "registered": registered, "commitment": lottery.commitment,
            "committed_at": lottery.committed_at.isoformat(), "closes_at": lottery.closes_at.isoformat(),
            # the verifier's "the commitment came before the outcome could be known"
            "opens_at": lottery.closes_at.isoformat(),
            "seed": lottery.seed if drawn else None,
            "drawn_at": lottery.drawn_at.isoformat() if drawn else None,
            "entrants": lottery.entrants, "entrants_digest": lottery.entrants_digest,
            "entrants_url": ENTRANTS_PATH.format(event_id=event_id) if drawn else None,
            "promoted": lottery.promoted}


ENTRANTS_PATH = "/api/events/{event_id}/lottery/entrants"


def entrants(event_id: int, after: int, limit: int) -> EntrantsPage:
    """The drawn order's entrant ids after place ``after`` (keyset pages, as the pre-queue draw's)."""
    lottery = get_lottery(event_id)
    if lottery.drawn_at is None:
        raise Conflict("The lottery is not drawn yet", reason="draw_not_published")
    ids = list(db.session.scalars(select(LotteryEntry.entrant_id).where(
        LotteryEntry.event_id == event_id, LotteryEntry.place > after).order_by(LotteryEntry.place).limit(limit)))
    return EntrantsPage(ids, after, lottery.entrants or 0)


def close_now(event_id: int) -> SaleLottery:
    """End registration now (the organiser's "draw now"): the next draw run draws it."""
    lottery = get_lottery(event_id)
    if lottery.drawn_at is not None:
        raise Conflict("The lottery is drawn already", reason="lottery_drawn")
    lottery.closes_at = min(lottery.closes_at, utcnow())
    db.session.flush()
    return lottery


def my_entry(event_id: int, user_id: int) -> dict[str, Any]:
    """The fan's entry: registered or not, then won (with their code), standby (their place) or lost."""
    lottery = get_lottery(event_id)
    entry = db.session.get(LotteryEntry, (event_id, user_id))
    if entry is None:
        return {"state": "not_registered", "closes_at": lottery.closes_at.isoformat()}
    out: dict[str, Any] = {"state": entry.outcome or "registered", "entrant_id": entry.entrant_id,
                           "registered_at": entry.registered_at.isoformat(), "place": entry.place,
                           "closes_at": lottery.closes_at.isoformat()}
    if entry.outcome == WON:
        out["code"] = winner_code(lottery, user_id)
    if entry.outcome == STANDBY:
        out["standby_place"] = entry.place - lottery.winners - lottery.promoted
    return out


def _notice_until(lottery: SaleLottery, event: Event) -> datetime:
    return lottery.codes_valid_until or event.sale_closes_at or event.starts_at


def _give_codes(lottery: SaleLottery, event: Event, winners: list[LotteryEntry]) -> list[AccessCode]:
    """A single-use code of the lottery's lane for each winner, bound to their e-mail."""
    emails = dict(db.session.execute(select(User.id, User.email).where(User.id.in_([w.user_id for w in winners]))
                                     ).all())
    codes = []
    for entry in winners:
        code = AccessCode(event_id=event.id, lane_id=lottery.lane_id, batch=f"lottery-{event.id}",
                          digest=lanes.code_digest(event.id, winner_code(lottery, entry.user_id)), max_uses=1,
                          email=emails[entry.user_id].strip().lower(), valid_from=None,
                          valid_until=lottery.codes_valid_until, ticket_limit=lottery.ticket_limit,
                          created_at=utcnow())
        db.session.add(code)
        codes.append(code)
    db.session.flush()
    for entry, code in zip(winners, codes, strict=True):
        entry.outcome, entry.code_id = WON, code.id
    return codes


def draw(event_id: int) -> tuple[list[AccessCode], list[str]] | None:
    """Draw a lottery whose registration has closed, once (its row is locked): order, winners'
    codes, ``LotteryDrawn``, and every notice as a pending row. (codes to copy to Redis, notice
    ids to send) once the caller commits; None when there is nothing to draw."""
    lottery = db.session.scalar(select(SaleLottery).where(SaleLottery.event_id == event_id).with_for_update())
    if lottery is None or lottery.drawn_at is not None or utcnow() < lottery.closes_at:
        return None
    event = get_event(event_id)
    entries = {e.entrant_id: e for e in db.session.scalars(select(LotteryEntry).where(
        LotteryEntry.event_id == event_id))}
    order = drawn_order(lottery.seed, entries)
    for place, entrant in enumerate(order, start=1):
        entry = entries[entrant]
        entry.place = place
        entry.outcome = None if place <= lottery.winners else (STANDBY if lottery.losers == "waitlist" else LOST)
    winners = [entries[e] for e in order[:lottery.winners]]
    codes = _give_codes(lottery, event, winners)
    lottery.drawn_at, lottery.entrants, lottery.entrants_digest = utcnow(), len(order), digest(order)
    db.session.flush()
    record_event(db.session, "LotteryDrawn", "queue", event_id, {
        "event_id": event_id, "algorithm": ALGORITHM, "seed": lottery.seed, "commitment": lottery.commitment,
        "entrants": len(order), "entrants_digest": lottery.entrants_digest, "winners": len(winners),
        "drawn_at": lottery.drawn_at.isoformat()})
    ids = _record_lottery_notices(lottery, event, [entries[e] for e in order])
    return codes, ids


def promote(event_id: int, count: int) -> tuple[list[AccessCode], list[str]]:
    """Give the next ``count`` standby entrants, in draw order, a code and a notice (a winner's
    code went unused): (codes, notice ids), once the caller commits."""
    lottery = db.session.scalar(select(SaleLottery).where(SaleLottery.event_id == event_id).with_for_update())
    if lottery is None:
        raise NotFound("This sale has no lottery", reason="lottery_not_found")
    if lottery.drawn_at is None or lottery.losers != "waitlist":
        raise Conflict("Only a drawn lottery with a standby list promotes", reason="no_standby_list")
    event = get_event(event_id)
    nexts = list(db.session.scalars(select(LotteryEntry).where(
        LotteryEntry.event_id == event_id, LotteryEntry.outcome == STANDBY).order_by(LotteryEntry.place)
        .limit(count)))
    codes = _give_codes(lottery, event, nexts)
    lottery.promoted += len(nexts)
    db.session.flush()
    return codes, _record_lottery_notices(lottery, event, nexts)


def _record_lottery_notices(lottery: SaleLottery, event: Event, entries: list[LotteryEntry]) -> list[str]:
    """Each entry's outcome notice on every channel of the account, as pending rows whose dedupe
    keys make any re-run add none (notifications' record_notices)."""
    until = _notice_until(lottery, event).timestamp()
    at = utcnow().timestamp()
    ids: list[str] = []
    for outcome, kind in NOTICE_KINDS.items():
        users = [(e.user_id, until) for e in entries if e.outcome == outcome]
        if users:
            ids += record_notices(event.id, at, users, kind)
    return ids


def sync_codes(event_id: int) -> None:
    """Copy a drawn lottery's codes to the sale's Redis once (the draw's commit came first; a lost
    copy is made by the next beat run)."""
    lottery = db.session.scalar(select(SaleLottery).where(SaleLottery.event_id == event_id))
    if lottery is None or lottery.drawn_at is None:
        return
    codes = list(db.session.scalars(select(AccessCode).where(AccessCode.event_id == event_id,
                                                               AccessCode.batch == f"lottery-{event_id}")))
    lanes.sync_codes(event_id, codes)
    db.session.execute(update(SaleLottery).where(SaleLottery.event_id == event_id)
                       .values(codes_synced_at=utcnow()))


def due(now: datetime) -> tuple[list[int], list[int]]:
    """(lotteries whose registration has closed and that are not drawn, drawn ones whose codes are
    not in Redis yet)."""
    to_draw = list(db.session.scalars(select(SaleLottery.event_id).where(SaleLottery.drawn_at.is_(None),
                                                                          SaleLottery.closes_at <= now)))
    to_sync = list(db.session.scalars(select(SaleLottery.event_id).where(SaleLottery.drawn_at.is_not(None),
                                                                          SaleLottery.codes_synced_at.is_(None))))
    return to_draw, to_sync


def lottery_notice(n: Row, user: Row, event: Event) -> Any:
    """The lottery's notices name the winner's code or the standby place (registered by create_app:
    notifications imports nothing of sales)."""
    lottery = db.session.get(SaleLottery, event.id)
    entry = db.session.get(LotteryEntry, (event.id, user.id))
    if lottery is None or entry is None:  # gone since (an account deleted): nothing to name
        return notice(n, user, event, fields={"code": "", "place": ""})
    fields = {"code": winner_code(lottery, user.id)} if n.kind == "lottery_won" else {
        "place": max(1, (entry.place or 0) - lottery.winners - lottery.promoted)}
    return notice(n, user, event, fields=fields)
