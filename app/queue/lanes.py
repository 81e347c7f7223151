"""Presale codes and priority lanes (docs/waiting-room.md, "Presale codes and lanes").

- **A lane** is a line of its own beside the general one: it opens at its own time (a presale
  opens before the sale) and is served at its share of the admissions while it holds anyone (the
  ADVANCE script's weighted fair queueing; the general line gets the rest). A lane may reserve
  sections (VIP) for its fans until a release time, after which anyone may buy them.
- **An access code** puts the fan who redeems it at join in its lane, for the whole sale. Codes are
  made in batches, single- or N-use, optionally bound to one account's e-mail, with a validity
  window and a ticket limit; only their SHA-256 is stored, and the plain codes are shown once.
- **Redemption** is part of the JOIN script (one call): the code's uses left live in the sale's
  ``codes`` hash, so a code shared beyond its uses is refused atomically, and wrong guesses are
  counted per fan (10 in 10 minutes, then 429). ``CodeRedeemed`` goes through the sale's event
  stream; the drain records it in ``code_redemptions`` (the record) with its outbox row.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.auth.models import User
from app.catalogue.models import Event, Section
from app.catalogue.services import get_event
from app.db import epoch_text, is_duplicate_key, utcnow
from app.errors import Conflict, Forbidden, NotFound, TooManyRequests, Unprocessable
from app.extensions import db, redis_store
from app.queue.models import AccessCode, CodeRedemption, SaleLane
from app.redis.keys import QueueKeys

MAX_LANES = 4
MAX_LANE_SHARE_PERCENT = 90  # the general line always keeps at least a tenth of the admissions
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed from an SMS
CODE_LENGTH = 12  # 60 bits: guessing one of a million codes takes ~10^12 tries, and 10 are allowed
LANE_BAND = 10 ** 12  # app/redis/lua/lanes.lua's: lane i's line number n is the score i * LANE_BAND + n
_LANE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def normalized(code: str) -> str:
    """A code as typed: case, spaces and dashes do not matter."""
    return re.sub(r"[\s-]", "", code).upper()


def code_digest(event_id: int, code: str) -> str:
    """What is stored of a code (and looked up at join): SHA-256 of the sale and the code."""
    return hashlib.sha256(f"{event_id}:{normalized(code)}".encode()).hexdigest()


def email_digest(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


# --- lanes ----------------------------------------------------------------------------------------

def lanes_of(event_id: int) -> list[SaleLane]:
    return list(db.session.scalars(select(SaleLane).where(SaleLane.event_id == event_id).order_by(SaleLane.id)))


def lane_named(event_id: int, name: str) -> SaleLane:
    lane = db.session.scalar(select(SaleLane).where(SaleLane.event_id == event_id, SaleLane.name == name))
    if lane is None:
        raise NotFound(f"The sale has no lane {name!r}", reason="lane_not_found")
    return lane


def meta_fields(event: Event) -> dict[str, str]:
    """The sale's lanes as the waiting room's scripts read them (app/redis/lua/lanes.lua):
    ``lanes`` "name|share|opens_at;..." in order, and ``first_opens_at``, the earliest opening."""
    lanes = lanes_of(event.id)
    opens = [lane.opens_at or event.sale_opens_at for lane in lanes]
    spec = ";".join(f"{lane.name}|{lane.share_percent / 100:g}|{epoch_text(at)}" for lane, at in zip(lanes, opens,
                                                                                                  strict=True))
    return {"lanes": spec, "first_opens_at": epoch_text(min([event.sale_opens_at, *opens]))}


def lane_names(spec: str) -> list[str]:
    """The lane names of a ``lanes`` field that ``meta_fields`` wrote, in order."""
    return [part.split("|", 1)[0] for part in spec.split(";")] if spec else []


def create_lane(event_id: int, data: dict[str, Any]) -> SaleLane:
    """A new lane {name, share_percent, opens_at?, sections?: [ids], sections_released_at?}
    (flushed; the caller commits and then syncs the waiting room)."""
    event = get_event(event_id)
    name = data["name"]
    if not _LANE_NAME.match(name):
        raise Unprocessable("A lane's name is 1-32 lower-case letters, digits, - or _",
                            errors={"name": ["lower-case letters, digits, - or _"]})
    lanes = lanes_of(event_id)
    if any(lane.name == name for lane in lanes):
        raise Conflict(f"The sale already has a lane {name!r}", reason="lane_exists")
    if len(lanes) >= MAX_LANES:
        raise Conflict(f"A sale has at most {MAX_LANES} lanes", reason="too_many_lanes")
    taken = sum(lane.share_percent for lane in lanes)
    if taken + data["share_percent"] > MAX_LANE_SHARE_PERCENT:
        raise Unprocessable(f"The lanes' shares may add up to {MAX_LANE_SHARE_PERCENT} % at most; "
                            f"{taken} % is taken", reason="share_too_large",
                            errors={"share_percent": [f"at most {MAX_LANE_SHARE_PERCENT - taken}"]})
    opens_at = data.get("opens_at")
    if opens_at is not None and event.sale_closes_at is not None and opens_at >= event.sale_closes_at:
        raise Unprocessable("The lane must open before the sale closes", errors={"opens_at": ["after the close"]})
    section_ids = data.get("sections") or []
    sections = list(db.session.scalars(select(Section).where(Section.event_id == event_id,
                                                             Section.id.in_(section_ids)))) if section_ids else []
    if len(sections) != len(set(section_ids)):
        raise Unprocessable("Every section must be one of this event's", errors={"sections": ["unknown section"]})
    if sections and data.get("sections_released_at") is None:
        raise Unprocessable("Reserved sections need the time they are released to everyone",
                            errors={"sections_released_at": ["required with sections"]})
    if any(section.lane_id is not None for section in sections):
        raise Conflict("A section is already reserved by another lane", reason="section_reserved")
    lane = SaleLane(event_id=event_id, name=name, share_percent=data["share_percent"], opens_at=opens_at,
                    sections_released_at=data.get("sections_released_at") if sections else None,
                    created_at=utcnow())
    db.session.add(lane)
    try:
        db.session.flush()
    except IntegrityError as exc:  # the same lane added twice at once: the unit of work rolls back
        if not is_duplicate_key(exc):
            raise
        raise Conflict(f"The sale already has a lane {name!r}", reason="lane_exists") from exc
    for section in sections:
        section.lane_id = lane.id
    db.session.flush()
    return lane


def update_lane(event_id: int, name: str, data: dict[str, Any]) -> SaleLane:
    """Change a lane's share, opening or sections' release (an organiser opening the presale or
    releasing the VIP sections now). Flushed; the caller commits and syncs the waiting room."""
    lane = lane_named(event_id, name)
    if "share_percent" in data:
        others = sum(other.share_percent for other in lanes_of(event_id) if other.id != lane.id)
        if others + data["share_percent"] > MAX_LANE_SHARE_PERCENT:
            raise Unprocessable(f"The lanes' shares may add up to {MAX_LANE_SHARE_PERCENT} % at most; "
                                f"{others} % is taken by the others", reason="share_too_large",
                                errors={"share_percent": [f"at most {MAX_LANE_SHARE_PERCENT - others}"]})
        lane.share_percent = data["share_percent"]
    if "opens_at" in data:
        lane.opens_at = data["opens_at"]
    if "sections_released_at" in data:
        lane.sections_released_at = data["sections_released_at"]
    db.session.flush()
    return lane


@dataclass(frozen=True)
class SectionReservation:
    """A section a lane keeps for its fans until ``released_at`` (epoch s)."""
    lane: str
    released_at: float


def section_reservations(event_id: int) -> dict[int, SectionReservation]:
    """section id -> its reservation, for the sale's reserved sections (the booking intake's check)."""
    rows = db.session.execute(select(Section.id, SaleLane.name, SaleLane.sections_released_at)
                              .join(SaleLane, Section.lane_id == SaleLane.id)
                              .where(Section.event_id == event_id)).all()
    return {sid: SectionReservation(name, released.timestamp() if released else float("inf"))
            for sid, name, released in rows}


def lane_views(event_id: int) -> list[dict[str, Any]]:
    """Each lane with its figures: codes, uses, redeemed, waiting and admitted (the console's)."""
    event = get_event(event_id)
    lanes = lanes_of(event_id)
    codes = dict(db.session.execute(select(AccessCode.lane_id, func.count()).where(AccessCode.event_id == event_id)
                                    .group_by(AccessCode.lane_id)).all())
    uses = dict(db.session.execute(select(AccessCode.lane_id, func.coalesce(func.sum(AccessCode.max_uses), 0))
                                   .where(AccessCode.event_id == event_id).group_by(AccessCode.lane_id)).all())
    sections: dict[int, list[int]] = {}
    for sid, lane_id in db.session.execute(select(Section.id, Section.lane_id).where(Section.event_id == event_id,
                                                                                     Section.lane_id.is_not(None))):
        sections.setdefault(lane_id, []).append(sid)
    figures = lane_figures(event_id, [lane.name for lane in lanes])
    return [{"id": lane.id, "event_id": event_id, "name": lane.name, "share_percent": lane.share_percent,
             "opens_at": lane.opens_at or event.sale_opens_at, "sections": sorted(sections.get(lane.id, [])),
             "sections_released_at": lane.sections_released_at, "codes": codes.get(lane.id, 0),
             "uses": int(uses.get(lane.id, 0)), **figures[lane.name]} for lane in lanes]


def lane_figures(event_id: int, names: list[str]) -> dict[str, dict[str, int]]:
    """Per lane, from the sale's Redis stats: redeemed, admitted and waiting (zero before the sale
    is in Redis). The lane's band in the lanes zset is its index (lanes.lua's LANE_BAND)."""
    keys = QueueKeys(event_id)
    pipe = redis_store.client.pipeline(transaction=False)
    for index, name in enumerate(names, start=1):
        pipe.hmget(keys.stats, f"redeemed:{name}", f"admitted:{name}")
        pipe.zcount(keys.lanes, index * LANE_BAND - LANE_BAND // 2, f"({index * LANE_BAND + LANE_BAND // 2}")
    replies = pipe.execute()
    out = {}
    for i, name in enumerate(names):
        (redeemed, admitted), waiting = replies[2 * i], replies[2 * i + 1]
        out[name] = {"redeemed": int(redeemed or 0), "admitted": int(admitted or 0), "waiting": int(waiting)}
    return out


# --- codes ----------------------------------------------------------------------------------------

def create_codes(event_id: int, data: dict[str, Any]) -> tuple[SaleLane, list[tuple[AccessCode, str]]]:
    """A batch of codes {lane, count | emails, uses, valid_from?, valid_until?, ticket_limit?, batch?}:
    (the lane, [(code row, plain code)]). Flushed; the caller commits, then ``sync_codes``."""
    event = get_event(event_id)
    lane = lane_named(event_id, data["lane"])
    emails = [e.strip().lower() for e in data.get("emails") or []]
    count = len(emails) if emails else data.get("count")
    if not count:
        raise Unprocessable("Give count, or emails (one code each)", errors={"count": ["required without emails"]})
    if len(set(emails)) != len(emails):
        raise Unprocessable("An e-mail appears twice", errors={"emails": ["duplicates"]})
    valid_from, valid_until = data.get("valid_from"), data.get("valid_until")
    if valid_from and valid_until and valid_until <= valid_from:
        raise Unprocessable("valid_until must come after valid_from", errors={"valid_until": ["before valid_from"]})
    limit = data.get("ticket_limit")
    if limit is not None and limit > event.max_per_user:
        raise Unprocessable(f"A code's ticket limit cannot exceed the sale's ({event.max_per_user})",
                            errors={"ticket_limit": [f"at most {event.max_per_user}"]})
    now = utcnow()
    batch = data.get("batch") or f"{lane.name}-{now:%Y%m%d%H%M%S}"
    made: list[tuple[AccessCode, str]] = []
    for i in range(count):
        plain = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        plain = "-".join(plain[k:k + 4] for k in range(0, CODE_LENGTH, 4))
        row = AccessCode(event_id=event_id, lane_id=lane.id, batch=batch, digest=code_digest(event_id, plain),
                         max_uses=data.get("uses", 1), email=emails[i] if emails else None,
                         valid_from=valid_from, valid_until=valid_until, ticket_limit=limit, created_at=now)
        db.session.add(row)
        made.append((row, plain))
    db.session.flush()
    return lane, made


def code_views(event_id: int, after: int, limit: int) -> list[dict[str, Any]]:
    """The sale's codes (never the plain codes), with each one's redemptions: keyset pages by id."""
    get_event(event_id)
    used = (select(CodeRedemption.code_id, func.count().label("n")).where(CodeRedemption.event_id == event_id)
            .group_by(CodeRedemption.code_id).subquery())
    rows = db.session.execute(
        select(AccessCode, SaleLane.name, func.coalesce(used.c.n, 0))
        .join(SaleLane, AccessCode.lane_id == SaleLane.id).outerjoin(used, used.c.code_id == AccessCode.id)
        .where(AccessCode.event_id == event_id, AccessCode.id > after).order_by(AccessCode.id).limit(limit)).all()
    return [{"id": code.id, "batch": code.batch, "lane": lane, "max_uses": code.max_uses, "redeemed": int(n),
             "email": code.email, "valid_from": code.valid_from, "valid_until": code.valid_until,
             "ticket_limit": code.ticket_limit} for code, lane, n in rows]


def sync_codes(event_id: int, codes: list[AccessCode] | None = None) -> None:
    """Copy codes into the sale's ``codes`` hash (all of the sale's when ``codes`` is None: the sale
    was not in Redis). HSETNX: a code already there keeps the uses Redis has spent, which MySQL
    learns only once the drain has recorded them."""
    session = db.session
    if codes is None:
        codes = list(session.scalars(select(AccessCode).where(AccessCode.event_id == event_id)))
    if not codes:
        return
    names = dict(session.execute(select(SaleLane.id, SaleLane.name).where(SaleLane.event_id == event_id)).all())
    spent = dict(session.execute(select(CodeRedemption.code_id, func.count()).where(
        CodeRedemption.event_id == event_id, CodeRedemption.code_id.in_([c.id for c in codes]))
        .group_by(CodeRedemption.code_id)).all())
    keys = QueueKeys(event_id)
    pipe = redis_store.client.pipeline(transaction=False)
    for code in codes:
        value = "|".join([names[code.lane_id], str(max(0, code.max_uses - spent.get(code.id, 0))),
                          email_digest(code.email) if code.email else "", epoch_text(code.valid_from),
                          epoch_text(code.valid_until), "" if code.ticket_limit is None else str(code.ticket_limit),
                          str(code.id)])
        pipe.hsetnx(keys.codes, code.digest, value)
    pipe.execute()


def email_digest_of(user_id: int) -> str:
    """The digest the JOIN script compares with a code's bound e-mail."""
    email = db.session.scalar(select(User.email).where(User.id == user_id))
    return email_digest(email) if email else ""


def record_redemptions(session: Any, event_id: int, redeemed: list[dict[str, Any]]) -> None:
    """The drain's part: a row per CodeRedeemed event ({user_id, code_id, at}), once (a re-drained
    event finds its row)."""
    if not redeemed:
        return
    users = [r["user_id"] for r in redeemed]
    have = set(session.scalars(select(CodeRedemption.user_id).where(CodeRedemption.event_id == event_id,
                                                                    CodeRedemption.user_id.in_(users))))
    for r in redeemed:
        if r["user_id"] not in have:
            session.add(CodeRedemption(event_id=event_id, user_id=r["user_id"], code_id=r["code_id"],
                                       redeemed_at=r["at"]))
            have.add(r["user_id"])
    session.flush()


def raise_code_refusal(outcome: str, detail: str | None) -> None:
    """The 4xx of a code the JOIN script refused (app/redis/lua/join.lua's ``redeem``)."""
    if outcome == "code_attempts":
        retry_after = max(1, math.ceil(int(detail or 0) / 1000))
        raise TooManyRequests("Too many wrong access codes; try again later",
                              reason="access_code_attempts_exceeded", headers={"Retry-After": str(retry_after)})
    if outcome == "code_unknown":
        raise Unprocessable("This access code is not valid for this sale", reason="access_code_invalid",
                            errors={"code": ["not valid for this sale"], "attempts_left": int(detail or 0)})
    if outcome == "code_other_email":
        raise Forbidden("This access code belongs to another account's e-mail", reason="access_code_other_email")
    if outcome == "code_not_yet":
        raise Conflict(f"This access code is valid from {_iso(detail)}", reason="access_code_not_valid_yet")
    if outcome == "code_expired":
        raise Conflict(f"This access code expired at {_iso(detail)}", reason="access_code_expired")
    if outcome == "code_used_up":
        raise Conflict("This access code has been used as many times as it allows",
                       reason="access_code_used_up")
    raise AssertionError(f"unhandled code refusal {outcome}")


def _iso(epoch: str | None) -> str:
    return datetime.fromtimestamp(float(epoch or 0), UTC).isoformat()
