"""Typed calls of every Lua script but the two intake ones (app/redis/intake_calls.py).

Each script gets one function here: its KEYS as a NamedTuple whose fields are in the order the Lua
reads them (app/redis/lua/<script>.lua documents the same order), its ARGV as keyword parameters,
and its reply parsed into named fields. A NamedTuple is a tuple, so the keys go to redis-py as they
are, with no copy on the hot path (JOIN and STATUS serve every poll). Callers never index KEYS,
ARGV or a reply by position; tests/integration/test_lua_scripts.py runs each script's outcomes
against a real Redis through these functions.
"""

from __future__ import annotations

import json
from typing import Any, Literal, NamedTuple

from app.redis.keys import QueueKeys
from app.redis.scripts import script

# --- waiting room: JOIN, STATUS, LEAVE, SHUFFLE, ADVANCE --------------------------------------------
# Their first fourteen keys are the sale's (QueueKeys.all(): meta, line, pre, joined, hb, active,
# notifiable, expired, seq, stats, events, lanes, codes, laneof), in that order.


class CallerKeys(NamedTuple):
    """JOIN's and STATUS's keys after the sale's fourteen."""
    rate_limit: str  # KEYS[15]: the caller's per-second counter on this sale
    revoked: str  # KEYS[16]: the caller's token revocation key (the sale's never-set stand-in in cluster mode)

    @classmethod
    def of(cls, sale: QueueKeys, user_id: int, revoked: str) -> CallerKeys:
        return cls(sale.rate_limit(user_id), revoked)


class PlaceReply(NamedTuple):
    """JOIN's and STATUS's answer: the fixed table the prelude's `reply` returns
    (app/redis/lua/prelude.lua), field by field."""
    state: str  # waiting | pre_queue | admitted | expired | not_in_queue
    rank: int  # 0-based place in the line (-1: not in it)
    detail: str | None  # admitted: the admission's end (epoch s); expired: why
    eta_rate: str  # the line's measured speed, people/s (0: not measured yet), at the fan's line's share
    paused: str  # "1" while the sale is paused
    pre_size: int  # people in the pre-queue
    created: int  # 1 when this call took the place
    admit_per_minute: str  # the configured rate, at the fan's line's share
    heartbeat_timeout: str  # seconds without a poll before a non-notifiable place lapses
    opens_at: str  # the sale's opening (epoch s)
    eta_rel: str  # the measured speed's relative uncertainty
    line_number: str  # the place's number in the line ('' when not in it): its signed place
    served_up_to: str  # the line number of the last place served (SERVING's figure)
    joined_at: str  # when the place was taken (epoch s; '' when none is held)
    lane: str  # the fan's priority lane ('' for the general line; app/queue/lanes.py)
    ticket_limit: str  # the fan's access code's ticket limit ('' for the sale's own)


class Refusal(NamedTuple):
    """A JOIN or STATUS that took no place and read none."""
    outcome: Literal["token_revoked", "no_meta", "rate_limited", "pow_required", "not_open", "closed",
                     "code_attempts", "code_unknown", "code_other_email", "code_not_yet", "code_expired",
                     "code_used_up"]
    # rate_limited, code_attempts: ms to wait; pow_required: the difficulty; not_open, closed,
    # code_not_yet, code_expired: when; code_unknown, code_other_email: attempts left
    detail: str | None


_REFUSALS = {"token_revoked", "no_meta", "rate_limited", "pow_required", "not_open", "closed", "code_attempts",
             "code_unknown", "code_other_email", "code_not_yet", "code_expired", "code_used_up"}


def _place(reply: list[Any]) -> PlaceReply | Refusal:
    if reply[0] in _REFUSALS:
        return Refusal(reply[0], None if len(reply) < 2 else str(reply[1]))
    return PlaceReply._make(reply)


def join(sale: QueueKeys, caller: CallerKeys, user_keys: list[str], *, user_id: int, now: float,
         per_second: int, event_id: int, proof_of_work: str, user_args: list[str], code_digest: str = "",
         email_digest: str = "") -> PlaceReply | Refusal:
    """Take or keep a place (with an access code's digest: in its lane). ``user_keys``: the user's
    device cache and joined-sales set (KEYS 18-19) on one Redis; none in cluster mode, where
    ``user_args`` carries what was read of them instead (app/redis/cluster.py)."""
    return _place(script("JOIN")(keys=[*sale.all(), *caller, sale.code_failures(user_id), *user_keys],
                                 args=[user_id, f"{now:.6f}", per_second, event_id, proof_of_work, code_digest,
                                       email_digest, *user_args]))


def status(sale: QueueKeys, caller: CallerKeys, *, user_id: int, now: float, per_second: int) -> PlaceReply | Refusal:
    """The caller's place (``per_second`` 0: unmetered); the poll is also the heartbeat."""
    return _place(script("STATUS")(keys=[*sale.all(), *caller], args=[user_id, f"{now:.6f}", per_second]))


def leave(sale: QueueKeys, *, user_id: int, now: float, kind: str) -> bool:
    """Give up a place or an active slot (``kind``: the event recorded, QueueLeft or
    AdmissionReleased); False when the user had neither."""
    return int(script("LEAVE")(keys=sale.all(), args=[user_id, f"{now:.6f}", kind])) > 0


class Shuffled(NamedTuple):
    """``status``: placed (``placed`` of them) | drawn_before (the sale's draw happened already) |
    grown (the pre-queue holds someone the order lacks: draw again)."""
    status: str
    placed: int = 0


def shuffle(sale: QueueKeys, *, now: float, order: list[str]) -> Shuffled:
    """Put the pre-queue in the drawn ``order`` ahead of later arrivals, once per sale."""
    placed = int(script("SHUFFLE")(keys=sale.all(), args=[f"{now:.6f}", *order]))
    if placed == -1:
        return Shuffled("drawn_before")
    return Shuffled("grown") if placed == -2 else Shuffled("placed", placed)


class Admitted(NamedTuple):
    user_id: int
    joined: float  # epoch s
    notifiable: bool  # has a channel: is owed a "your turn" notice
    until: float  # the admission's end (epoch s)


class AdvanceReply(NamedTuple):
    """ADVANCE's answer (app/redis/lua/advance.lua): a header, then the users admitted."""
    status: str  # ok | paused | not_open | ended | needs_shuffle | no_meta
    lapsed: int  # admissions whose window ended
    abandoned: int  # places dropped for missed heartbeats
    admitted_count: float  # admissions counted towards the speed sample
    observed_seconds: float  # the speed sample's time (0: no sample this tick)
    served: float  # people the line delivered in that time
    capacity_bound: bool  # the active cap, not the rate, limited admissions
    admit_per_minute: float
    max_active: int
    window: float  # admission window, seconds
    admitted: list[Admitted]


_ADVANCE_HEADER = 10


def advance(sale: QueueKeys, *, now: float, max_batch: int, force: int = 0) -> AdvanceReply:
    """One step of the line: lapse, drop the abandoned, admit at the rate (``force``: up to N now)."""
    reply = script("ADVANCE")(keys=sale.advance_keys(), args=[f"{now:.6f}", max_batch, force])
    h, rows = reply[:_ADVANCE_HEADER], reply[_ADVANCE_HEADER:]
    admitted = [Admitted(int(rows[i]), float(rows[i + 1]), bool(int(rows[i + 2])), float(rows[i + 3]))
                for i in range(0, len(rows), 4)]
    return AdvanceReply(h[0], int(h[1]), int(h[2]), float(h[3] or 0), float(h[4] or 0), float(h[5] or 0),
                        h[6] == 1, float(h[7] or 1), int(h[8] or 1), float(h[9] or 600), admitted)


class ServingKeys(NamedTuple):
    meta: str
    stats: str
    line: str
    pre: str

    @classmethod
    def of(cls, sale: QueueKeys) -> ServingKeys:
        return cls(sale.meta, sale.stats, sale.line, sale.pre)


class ServingReply(NamedTuple):
    """SERVING's answer: what anyone may know of a sale's line (app/queue/services.serving)."""
    served_up_to: float  # the line number of the last place served
    eta_rate: float  # the line's measured speed, people/s (0: not measured yet)
    eta_rel: float  # its relative uncertainty
    paused: bool
    admit_per_minute: float  # the configured rate
    heartbeat_timeout: float
    opens_at: float  # epoch s
    closes_at: float | None  # epoch s (None: open-ended)
    shuffled: bool  # the pre-queue has been drawn and numbered
    waiting: int  # places in the line
    pre_queue: int  # places in the pre-queue
    admitted_total: int


class ProcessLease(NamedTuple):
    """A stream process's lease on a sale, renewed by SERVING (app/queue/streams.py)."""
    processes: str  # KEYS: the sale's stream processes
    joined: str  # the sale's joined hash
    hb: str  # the sale's heartbeats
    process: str  # ARGV: the calling process
    until: float  # its lease's end (epoch s)
    ttl: int  # the processes hash's TTL (s)

    @classmethod
    def of(cls, sale: QueueKeys, process: str, until: float, ttl: int) -> ProcessLease:
        return cls(sale.stream_processes(), sale.joined, sale.hb, process, until, ttl)


def serving(keys: ServingKeys, lease: ProcessLease | None = None, *, now: float = 0,
            heartbeats: list[int] | None = None) -> ServingReply | None:
    """The sale's serving figures (None: the sale is not in Redis). ``lease``: a stream process's,
    renewed in the same call with the ``heartbeats`` of the waiting fans it streams to."""
    keys_, args = (keys, []) if lease is None else (
        [*keys, lease.processes, lease.joined, lease.hb],
        [lease.process, f"{lease.until:.3f}", lease.ttl, f"{now:.6f}", *(heartbeats or ())])
    reply = script("SERVING")(keys=keys_, args=args)
    if not reply:
        return None
    return ServingReply(float(reply[0]), float(reply[1]), float(reply[2]), reply[3] == "1", float(reply[4]),
                        float(reply[5]), float(reply[6] or 0), float(reply[7]) if reply[7] else None,
                        reply[8] == "1", int(reply[9]), int(reply[10]), int(reply[11]))


# --- the sold-out gate: GIVE, RELEASE_HOLD, RESET, SETTLE ---------------------------------------------

class ReleaseKeys(NamedTuple):
    """Where a section's released units go: its waitlist (fans waiting take them first), the
    waitlist's pool and its stats."""
    waitlist: str
    pool: str
    stats: str

    @classmethod
    def of(cls, event_id: int, section_id: int) -> ReleaseKeys:
        keys = QueueKeys(event_id)
        return cls(*(keys.waitlist(section_id, part) for part in ("wl", "pool", "stats")))


# put_back's answer (app/redis/lua/put_back.lua): the gate's new value, or one of these
TO_WAITLIST, NO_GATE = -3, -2


def give(gate: str, user_units: str, release: ReleaseKeys, *, quantity: int, user_id: int | None) -> int:
    """Units that never became a hold go back (to the waitlist first) and off the user's live count
    (``user_id`` None: the gate only): the gate's new value, TO_WAITLIST or NO_GATE."""
    return int(script("GIVE")(keys=[gate, user_units, *release], args=[quantity, "" if user_id is None else user_id]))


class HoldKeys(NamedTuple):
    gate: str
    holds: str  # the section's live holds: member -> deadline
    user_units: str


def release_hold(keys: HoldKeys, release: ReleaseKeys, *, member: str, give_back: bool,
                 user_id: int | None) -> int | None:
    """A hold ended. Its units go back once (``give_back``: expired or cancelled, not sold) unless
    the gate already reclaimed them: the gate's new value, TO_WAITLIST, NO_GATE, or None when
    nothing went back."""
    back = int(script("RELEASE_HOLD")(keys=[*keys, *release],
                                      args=[member, "1" if give_back else "0", "" if user_id is None else user_id]))
    return None if back == -1 else back


class ResetKeys(NamedTuple):
    gate: str
    holds: str
    pending: str  # requests between the API and MySQL (non-empty: busy)
    writes: str  # the hold writers' commit counter
    pool: str  # kept for the waitlist
    offered: str  # units in open offers


class ResetReply(NamedTuple):
    reset: bool  # False: busy (a request in flight, or a writer committed since ``writes`` was read)
    previous: int | None  # the gate before (None: it did not exist)
    value: int | None  # the gate now


def reset(keys: ResetKeys, *, expected: int, now: float, writes: str) -> ResetReply:
    """Set the gate to MySQL's count less what the waitlist keeps, if nothing moved meanwhile."""
    reply = script("RESET")(keys=keys, args=[expected, f"{now:.6f}", writes])
    if reply[0] != "reset":
        return ResetReply(False, None, None)
    return ResetReply(True, None if reply[1] is None else int(reply[1]), int(reply[2]))


class SettleKeys(NamedTuple):
    pending: str
    writes: str
    reserve_stream: str
    user_units: str
    dead_letters: str
    pending_of_user: str
    pending_units: str


class SettledSection(NamedTuple):
    """The five keys SETTLE takes per section its batch touches, after the seven above."""
    gate: str
    holds: str
    waitlist: str
    pool: str
    stats: str

    @classmethod
    def of(cls, event_id: int, section_id: int) -> SettledSection:
        keys = QueueKeys(event_id)
        return cls(keys.gate(section_id), keys.holds(section_id), *ReleaseKeys.of(event_id, section_id))


def settle(keys: SettleKeys, sections: list[SettledSection], *, group: str, plan: dict[str, list]) -> int:
    """The hold writer's follow-up of one committed batch, all of it or none: how many entries it
    acknowledged. ``plan``: ack, done, holds, give, dead (app/redis/lua/settle.lua)."""
    flat = [key for section in sections for key in section]
    return int(script("SETTLE")(keys=[*keys, *flat], args=[group, json.dumps(plan, separators=(",", ":"))]))


# --- the waitlist: JOIN_WAITLIST, LEAVE_WAITLIST, MAKE_OFFERS, EXPIRE_OFFERS, DECLINE_OFFER -------------

class WaitlistKeys(NamedTuple):
    """One section's waitlist keys (QueueKeys.waitlist parts)."""
    waitlist: str  # wl: fans in arrival order
    quantities: str  # wlq: fan -> units wanted
    pool: str  # units released while fans wait, kept for offers
    offers: str  # offer id -> "user:quantity:expires"
    offer_expiries: str  # offerexp: offer id -> expiry
    user_offer: str  # useroffer: fan -> open offer id
    offered: str  # units in open offers
    seq: str  # offer ids
    stats: str  # released, declined, expired, first_release_at
    fresh: str  # offers made and not yet announced
    gate: str  # the section's gate

    @classmethod
    def of(cls, event_id: int, section_id: int) -> WaitlistKeys:
        keys = QueueKeys(event_id)
        parts = ("wl", "wlq", "pool", "offers", "offerexp", "useroffer", "offered", "seq", "stats", "fresh")
        return cls(*(keys.waitlist(section_id, part) for part in parts), keys.gate(section_id))


class WaitlistJoin(NamedTuple):
    outcome: Literal["joined", "already", "offered", "admission_inactive", "not_sold_out", "limit_exceeded"]
    detail: int | None  # joined/already: the 1-based position; limit_exceeded: the units the fan has


def join_waitlist(keys: WaitlistKeys, active: str, user_units: str, *, user_id: int, now: float, quantity: int,
                  max_per_user: int) -> WaitlistJoin:
    """A place on a sold-out section's waitlist for a fan with a live admission (``active``)."""
    reply = script("JOIN_WAITLIST")(
        keys=[active, keys.gate, keys.waitlist, keys.quantities, keys.seq, user_units, keys.user_offer, keys.pool],
        args=[user_id, f"{now:.6f}", quantity, max_per_user])
    return WaitlistJoin(reply[0], None if len(reply) < 2 else int(reply[1]))


def leave_waitlist(keys: WaitlistKeys, *, user_id: int) -> bool:
    """Off the waitlist; False when the fan was not on it."""
    return bool(script("LEAVE_WAITLIST")(keys=[keys.waitlist, keys.quantities], args=[user_id]))


def _offer_keys(keys: WaitlistKeys) -> list[str]:
    return [keys.offers, keys.offer_expiries, keys.user_offer, keys.offered, keys.gate, keys.waitlist, keys.pool,
            keys.stats, keys.fresh]


class Offer(NamedTuple):
    user_id: int
    offer_id: str
    quantity: int
    expires: float  # epoch s (0 for an expired offer's answer)


def make_offers(keys: WaitlistKeys, *, now: float, window_seconds: int, scan: int) -> list[Offer]:
    """Offers from the pool in arrival order (a fan wanting more than it holds keeps their place);
    what is left once nobody waits opens to everyone."""
    made = script("MAKE_OFFERS")(
        keys=[keys.waitlist, keys.quantities, keys.pool, keys.offers, keys.offer_expiries, keys.user_offer,
              keys.offered, keys.seq, keys.gate, keys.fresh],
        args=[f"{now:.6f}", window_seconds, scan])
    return [Offer(int(made[i]), made[i + 1], int(made[i + 2]), float(made[i + 3])) for i in range(0, len(made), 4)]


def expire_offers(keys: WaitlistKeys, *, now: float) -> list[Offer]:
    """Offers past their end: their units back to the pool (or the gate when nobody waits)."""
    gone = script("EXPIRE_OFFERS")(keys=_offer_keys(keys), args=[f"{now:.6f}"])
    return [Offer(int(gone[i]), gone[i + 1], int(gone[i + 2]), 0.0) for i in range(0, len(gone), 3)]


def decline_offer(keys: WaitlistKeys, *, user_id: int) -> int:
    """The fan's open offer passes on: its quantity (0: the fan had none)."""
    return int(script("DECLINE_OFFER")(keys=_offer_keys(keys), args=[user_id]))


# --- small ones: OPEN_STREAM, FORGET_NOTICES, CHECK_CODE, ROTATE_SESSION --------------------------------

class StreamKeys(NamedTuple):
    user_streams: str  # the user's open streams of the sale
    processes: str  # the sale's stream processes and their leases


def open_stream(keys: StreamKeys, *, process: str, stream_id: str, now: float, until: float, user_cap: int,
                sale_cap: int, user_ttl: int, processes_ttl: int) -> Literal["ok", "user", "event"]:
    """A stream of ``process`` for the user, unless the user (``user``) or the sale (``event``) is
    at its cap; it lives as long as the process's lease (``until``, renewed by ``serving``)."""
    return script("OPEN_STREAM")(keys=keys, args=[process, stream_id, f"{now:.3f}", f"{until:.3f}", user_cap,
                                                  sale_cap, user_ttl, processes_ttl])


def forget_notices(notices_due: str, owed: list[tuple[str, str]]) -> int:
    """Notices now recorded in MySQL are no longer owed: each (user, admitted_until as ADVANCE wrote
    it) is forgotten only if still that admission's. How many were."""
    return int(script("FORGET_NOTICES")(keys=[notices_due], args=[x for pair in owed for x in pair]))


class CodeKeys(NamedTuple):
    code: str  # the one-time code's hash
    attempts: str


def check_code(keys: CodeKeys, *, given: str, max_attempts: int) -> Literal["ok", "wrong", "expired", "too_many"]:
    """A one-time code's check: ``ok`` spends it, ``too_many`` burns it."""
    return script("CHECK_CODE")(keys=keys, args=[given, max_attempts])


def rotate_session(session: str, *, presented: str, next_jti: str, ttl: int) -> Literal["ok", "revoked", "reused"]:
    """Spend the presented refresh jti for the next one; a reused one ends the session."""
    return script("ROTATE_SESSION")(keys=[session], args=[presented, next_jti, ttl])
