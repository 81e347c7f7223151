"""The hold writer: turns accepted reserve requests (the sales' Redis streams) into holds or
rejections in MySQL, in batches. The decisions are app/booking/holds.py's pure ``decide``; this is
the shell that reads and locks, writes, and brings Redis up to date.

One transaction per batch per sale:
- the buyers' user rows are locked in id order (the per-user limit is checked in MySQL, the truth);
- general admission: the section row is locked and one conditional UPDATE takes the summed
  quantity of the requests that fit, in arrival order;
- seats: the requested seats are locked in id order and claimed by one UPDATE;
- reservations and their outbox events (one each: SeatsHeld or ReservationRejected): one
  multi-row INSERT each.
Only after COMMIT are the stream entries acknowledged, in the same SETTLE script call (atomic) as
the rest of the follow-up (holds tracked, rejected units given back, pending records retired). So a
writer killed at any point leaves its entries pending in the consumer group, and another writer
claims them (XAUTOCLAIM) after HOLD_WRITER_CLAIM_IDLE_MS.

The repair path: a re-run finds the reservations already written and rebuilds the Redis follow-up
from their rows (a live hold is tracked, a rejection's units go back, a hold that ended meanwhile
gives its units to the gate), then acknowledges.

Errors (docs/booking.md, "The hold writer's errors"):
- malformed entry (holds.parse_record refuses it): dead-lettered at once, alerting;
- refused by MySQL for its own values (DataError; IntegrityError other than a duplicate key): the
  batch is bisected until the one entry is found, which is dead-lettered, alerting;
- transient (the connection, the server, lock waits, Redis): the batch is retried with backoff and
  then left pending for a later claim; nothing is acknowledged, nothing dead-lettered;
- anything else is a bug: left pending and counted (tickets_hold_writer_errors_total{kind=
  "unexpected"}), never dead-lettered.

Lock order: users -> section or seats (-> expired reservations, SKIP LOCKED). Confirm and cancel
lock reservation -> section; no path waits in the other direction.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pymysql
import redis
from flask import Flask
from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    PendingRollbackError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.auth.models import User
from app.booking.holds import DROPPED, MalformedEntry, Outcome, SectionStock, Stock, decide, parse_record
from app.booking.models import CANCELLED, CONFIRMED, EXPIRED, HELD, REJECTED, Reservation, reservation_event_data
from app.catalogue.models import SEAT_AVAILABLE, SEAT_HELD, SECTION_GENERAL, Event, Seat, Section
from app.db import bulk_insert, is_duplicate_key, utcnow
from app.extensions import db, redis_store
from app.inventory import gate
from app.observability.context import clear_context, set_context
from app.observability.metrics import HOLD_LATENCY, HOLD_WRITER_DEAD_LETTERS, HOLD_WRITER_ERRORS, RESERVATIONS
from app.outbox.services import outbox_row, record_events
from app.redis import calls
from app.redis.keys import REGISTRY_KEY, QueueKeys

CLUSTER_POLL_MS = 20  # cluster mode, several sales: the pause between rounds of per-stream reads

log = logging.getLogger(__name__)

GROUP = "hold-writers"
TRANSIENT_ATTEMPTS = 6  # tries of one batch on transient errors (backoff 0.05 s doubling, jittered)
# a re-run's outcome for a reservation that has moved on since (confirmed, expired, cancelled)
SETTLED = "settled"


class WriterUnavailable(RuntimeError):
    """The database or Redis stayed unreachable through the retries: the entries stay pending."""


def is_transient(exc: BaseException) -> bool:
    """Errors about the connection or the server, not the entries: retrying can succeed."""
    if isinstance(exc, IntegrityError):
        return is_duplicate_key(exc)
    if isinstance(exc, (DataError,)):
        return False
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PendingRollbackError,
                            PoolTimeout, pymysql.err.OperationalError, pymysql.err.InterfaceError,
                            redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError))


def is_refused_entry(exc: BaseException) -> bool:
    """MySQL refused the values of a request (out of range, too long, a foreign key): the entry."""
    return isinstance(exc, (DataError, IntegrityError)) and not is_transient(exc)


Outcomes = dict[str, Outcome]


def write(event_id: int, records: list[dict[str, Any]]) -> Outcomes:
    """Write one batch of accepted requests of one sale in one transaction; returns the outcome of
    every request, those written by an earlier run included (rebuilt from their rows)."""
    session = db.session
    ids = {r["id"] for r in records}
    users = {r["user_id"] for r in records}
    # one lookup serves both: requests written already (a re-run) and keys taken by other requests
    existing = session.execute(
        select(Reservation.id, Reservation.user_id, Reservation.idempotency_key, Reservation.status,
               Reservation.hold_expires_at)
        .where(Reservation.event_id == event_id, Reservation.user_id.in_(users))).all()
    outcomes: Outcomes = {row.id: _rerun_outcome(row) for row in existing if row.id in ids}
    todo = [r for r in records if r["id"] not in outcomes]
    if not todo:
        session.rollback()
        return outcomes
    now = utcnow()
    event = session.get(Event, event_id)
    buyers = sorted({r["user_id"] for r in todo})
    # the per-user limit is decided here, in MySQL: lock the buyers in id order, then count
    session.execute(select(User.id).where(User.id.in_(buyers)).order_by(User.id).with_for_update())
    live = dict(session.execute(
        select(Reservation.user_id, func.coalesce(func.sum(Reservation.quantity), 0))
        .where(Reservation.event_id == event_id, Reservation.user_id.in_(buyers),
               or_(Reservation.status == CONFIRMED,
                   and_(Reservation.status == HELD, Reservation.hold_expires_at > now)))
        .group_by(Reservation.user_id)).all())
    stock = Stock(max_per_user=event.max_per_user if event else None,
                  live_units={int(user): int(units) for user, units in live.items()}, sections={},
                  taken_keys={(row.user_id, row.idempotency_key) for row in existing if row.id not in ids})
    wanted: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in todo:
        wanted[r["section_id"]].append(r)
    if event is not None:
        for section_id in sorted(wanted):
            section = session.scalar(select(Section).where(Section.id == section_id).with_for_update())
            if section is not None:
                stock.sections[section_id] = _stock_of(session, section, wanted[section_id], now)
    decision = decide(todo, stock, now + timedelta(seconds=event.hold_seconds if event else 0))
    for section_id, units in decision.units_taken.items():
        moved = session.execute(
            update(Section).where(Section.id == section_id, Section.sold + Section.held + units <= Section.capacity)
            .values(held=Section.held + units).execution_options(synchronize_session=False)).rowcount
        if moved != 1:  # cannot happen under the row lock; refuse rather than oversell
            raise RuntimeError(f"section {section_id} changed under its row lock")
    for section_id, owners in decision.seat_owners.items():
        until = decision.outcomes[next(iter(owners.values()))].hold_until
        claimed = session.execute(
            update(Seat).where(Seat.id.in_(owners))
            .values(state=SEAT_HELD, held_until=until, reservation_id=case(owners, value=Seat.id))
            .execution_options(synchronize_session=False)).rowcount
        if claimed != len(owners):
            raise RuntimeError(f"seats of section {section_id} changed under their row locks")
    _insert(session, todo, decision.outcomes, now)
    session.commit()
    outcomes.update(decision.outcomes)
    return outcomes


def _rerun_outcome(row: Any) -> Outcome:
    """A request written by an earlier run whose Redis follow-up never happened (the writer died
    between COMMIT and its SETTLE call, or Redis failed): what the follow-up must do now."""
    if row.status == HELD:
        return Outcome(HELD, None, row.hold_expires_at)  # tracked even if lapsed: TAKE reclaims it
    if row.status == REJECTED:
        return Outcome(REJECTED, "rerun")
    if row.status in (EXPIRED, CANCELLED):
        # its release found no tracked hold and gave nothing back to the gate: do it now
        return Outcome(SETTLED, row.status)
    return Outcome(SETTLED, None)  # confirmed (or later): its units stay sold and counted


def _stock_of(session: Any, section: Section, wanted: list[dict[str, Any]], now: datetime) -> SectionStock:
    """The section's free inventory under its row lock (seats: the requested ones, locked too)."""
    if section.kind == SECTION_GENERAL:
        from app.booking.services import release_expired_in_section

        free = section.capacity - section.sold - section.held
        if free < sum(r["quantity"] for r in wanted) and release_expired_in_section(session, section, now,
                                                                                    limit=500):
            session.refresh(section)
            free = section.capacity - section.sold - section.held
        return SectionStock(section.event_id, section.kind, free_units=free)
    seat_ids = sorted({s for r in wanted for s in r.get("seat_ids") or []})
    # lock in id order: overlapping batches queue up instead of deadlocking
    rows = session.execute(select(Seat.id, Seat.state, Seat.held_until).where(
        Seat.id.in_(seat_ids), Seat.section_id == section.id).order_by(Seat.id).with_for_update()).all()
    free = {row.id for row in rows if row.state == SEAT_AVAILABLE
            or (row.state == SEAT_HELD and row.held_until is not None and row.held_until <= now)}
    return SectionStock(section.event_id, section.kind, free_seats=free)


def _insert(session: Any, records: list[dict[str, Any]], outcomes: Outcomes, now: datetime) -> None:
    reservations, events = [], []
    for r in records:
        outcome = outcomes[r["id"]]
        if outcome.status == DROPPED:
            log.warning("request dropped: its Idempotency-Key is taken", extra={"reservation_id": r["id"]})
            continue
        created = datetime.fromtimestamp(r["created_at"], UTC)
        reservations.append({
            "id": r["id"], "user_id": r["user_id"], "event_id": r["event_id"], "section_id": r["section_id"],
            "quantity": r["quantity"], "seat_ids": r.get("seat_ids"), "status": outcome.status,
            "reason": outcome.reason, "amount_cents": r["amount_cents"], "currency": r["currency"],
            "idempotency_key": r["idempotency_key"], "request_hash": r["request_hash"],
            "hold_expires_at": outcome.hold_until, "payment_ref": None, "created_at": created, "updated_at": now,
            "confirmed_at": None})
        # one event per request: its first durable state (the request itself lived only in Redis)
        requested = {"requested_at": created.isoformat(), "request_id": r.get("request_id")}
        if outcome.status == HELD:
            data = reservation_event_data(r, HELD, hold_expires_at=outcome.hold_until.isoformat(), **requested)
            events.append(outbox_row("SeatsHeld", "reservation", r["id"], data, occurred_at=now))
        else:
            data = reservation_event_data(r, REJECTED, reason=outcome.reason, **requested)
            events.append(outbox_row("ReservationRejected", "reservation", r["id"], data, occurred_at=now))
    if reservations:
        bulk_insert(session, Reservation.__table__, reservations)
        record_events(session, events)


class Settlement:
    """The Redis follow-up of one batch, run as one SETTLE script call (atomic, one round trip):
    holds tracked, units that did not become a hold given back, pending records retired, entries
    acknowledged, and any dead letters parked."""

    def __init__(self, event_id: int) -> None:
        self.keys = QueueKeys(event_id)
        self.event_id = event_id
        self.sections: list[int] = []
        self.plan: dict[str, list] = {"ack": [], "done": [], "holds": [], "give": [], "dead": []}

    def _section(self, section_id: int) -> int:
        if section_id not in self.sections:
            self.sections.append(section_id)
        return self.sections.index(section_id) + 1

    def hold(self, r: dict[str, Any], until: datetime) -> None:
        self.plan["holds"].append([self._section(r["section_id"]), gate.hold_member(r["id"], r["quantity"]),
                                   f"{until.timestamp():.6f}"])

    def give_back(self, section_id: int, units: int, user_id: int | None) -> None:
        self.plan["give"].append([self._section(section_id), units, "" if user_id is None else str(user_id)])

    def done(self, r: dict[str, Any]) -> None:
        """The request left `pending` (its record, its place in the user's list, its units)."""
        self.plan["done"].append([r["id"], r["user_id"], r["section_id"], r["quantity"]])

    def ack(self, entry_id: str) -> None:
        self.plan["ack"].append(entry_id)

    def dead_letter(self, fields: dict[str, str]) -> None:
        self.plan["dead"].append([x for pair in fields.items() for x in pair])

    def run(self) -> None:
        keys = calls.SettleKeys(self.keys.pending(), self.keys.writes(), self.keys.reserve_stream(),
                                self.keys.user_units(), self.keys.dead_letters(), self.keys.pending_of(),
                                self.keys.pending_units())
        calls.settle(keys, [calls.SettledSection.of(self.event_id, section_id) for section_id in self.sections],
                     group=GROUP, plan=self.plan)


def _follow_up(event_id: int, records: list[dict[str, Any]], outcomes: Outcomes, entry_ids: list[str]) -> None:
    """Redis follows MySQL, all of it or none of it (Settlement): a crash before the script leaves
    the entries pending, and the re-run rebuilds the same follow-up from the rows."""
    settle = Settlement(event_id)
    for r in records:
        outcome = outcomes[r["id"]]
        if outcome.status == HELD:
            settle.hold(r, outcome.hold_until)
        elif outcome.status in (REJECTED, DROPPED):  # the units never became a hold
            settle.give_back(r["section_id"], r["quantity"], r["user_id"])
        elif outcome.status == SETTLED and outcome.reason in (EXPIRED, CANCELLED):
            # the hold ended before it was tracked: the user's count dropped then, the gate's units now
            settle.give_back(r["section_id"], r["quantity"], None)
        settle.done(r)
    for entry_id in entry_ids:
        settle.ack(entry_id)
    settle.run()
    now = time.time()
    for r in records:
        outcome = outcomes[r["id"]]
        if outcome.status in (DROPPED, SETTLED):
            continue
        RESERVATIONS.labels(outcome=outcome.status).inc()
        # the API's request id travels with the request record into this log line
        set_context(request_id=r.get("request_id"), user_id=r["user_id"], event_id=event_id)
        if outcome.status == HELD:
            HOLD_LATENCY.observe(max(0.0, now - r["created_at"]))
            log.info("seats held", extra={"reservation_id": r["id"], "quantity": r["quantity"]})
        else:
            log.info("reservation rejected", extra={"reservation_id": r["id"], "reason": outcome.reason})
    clear_context()


def _discard_session() -> None:
    """After a failure the session may sit on a dead connection: roll back if it can, else drop it
    (db.remove invalidates a connection that fails to close); the next try gets a fresh one."""
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the connection itself is gone
        pass
    db.remove()


def process(event_id: int, entries: list[tuple[str, dict[str, str]]]) -> int:
    """Write and acknowledge stream entries of one sale; returns how many were settled (written,
    or dead-lettered for cause). Transient errors are retried with backoff, then raised as
    WriterUnavailable with every entry still pending."""
    good: list[tuple[str, dict[str, Any]]] = []
    for entry_id, fields in entries:
        try:
            good.append((entry_id, parse_record(fields.get("r"), event_id)))
        except MalformedEntry as exc:
            _dead_letter(event_id, (entry_id, fields), "malformed", str(exc), record=_salvage(event_id, fields))
    return len(entries) - len(good) + (_write_batch(event_id, good) if good else 0)


def _write_batch(event_id: int, items: list[tuple[str, dict[str, Any]]]) -> int:
    records = [r for _entry_id, r in items]
    for attempt in range(TRANSIENT_ATTEMPTS):
        try:
            outcomes = write(event_id, records)
            _follow_up(event_id, records, outcomes, [entry_id for entry_id, _r in items])
            return len(items)
        except Exception as exc:  # noqa: BLE001 - sorted below: refused entry, transient, or a bug
            _discard_session()
            if is_refused_entry(exc):
                if len(items) == 1:
                    _dead_letter(event_id, (items[0][0], {}), "refused", repr(exc.orig if isinstance(
                        exc, DBAPIError) else exc)[:500], record=items[0][1])
                    return 1
                half = len(items) // 2  # bisect in arrival order: the first half is written first
                return _write_batch(event_id, items[:half]) + _write_batch(event_id, items[half:])
            if not is_transient(exc):
                HOLD_WRITER_ERRORS.labels(kind="unexpected").inc()
                raise
            HOLD_WRITER_ERRORS.labels(kind="transient").inc()
            if attempt == TRANSIENT_ATTEMPTS - 1:
                raise WriterUnavailable(f"{len(items)} requests of event {event_id} stay pending: {exc!r}") from exc
            log.warning("hold writer: transient error, retrying the batch", extra={"event_id": event_id,
                        "attempt": attempt + 1, "error": repr(exc)[:300]})
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def _salvage(event_id: int, fields: dict[str, str]) -> dict[str, Any] | None:
    """What a malformed entry still tells of the units taken for it (id, section, quantity, user),
    so they go back: from the pending record RESERVE kept under its id, else from the entry
    itself; None when neither can be read."""
    for source in ("pending", "entry"):
        try:
            r = json.loads(fields.get("r") or "")
            if source == "pending":
                r = json.loads(redis_store.client.hget(QueueKeys(event_id).pending(), str(r["id"])) or "")
            salvaged = {"id": str(r["id"]), "section_id": int(r["section_id"]), "quantity": int(r["quantity"]),
                        "user_id": int(r["user_id"])}
        except (KeyError, TypeError, ValueError):
            continue
        if salvaged["quantity"] > 0:
            return salvaged
    return None


def _dead_letter(event_id: int, entry: tuple[str, dict[str, str]], reason: str, error: str,
                 record: dict[str, Any] | None) -> None:
    """Park an entry that cannot be written, whatever is retried (logged with the entry, counted,
    alerting: TicketsHoldWriterDeadLetters), retire its request and give its units back: one
    SETTLE call."""
    fields = dict(entry[1]) if entry[1] else {"r": json.dumps(record, separators=(",", ":"))}
    log.error("hold writer: entry %s of event %s cannot be written (%s: %s); moved to the dead-letter stream",
              entry[0], event_id, reason, error, extra={"entry": fields.get("r", "")[:2000]})
    HOLD_WRITER_DEAD_LETTERS.labels(reason=reason).inc()
    settle = Settlement(event_id)
    settle.dead_letter({**fields, "reason": reason, "error": error[:500], "entry_id": entry[0]})
    if record is not None:  # a request was taken for it: retire it and give its units back
        settle.done(record)
        settle.give_back(record["section_id"], record["quantity"], record["user_id"])
    settle.ack(entry[0])
    settle.run()


class HoldWriter:
    """A consumer of every sale's reserve stream (consumer group GROUP). Several can run: each
    entry goes to one of them, and a dead one's entries are claimed by the others."""

    def __init__(self, app: Flask, name: str | None = None) -> None:
        self.app = app
        cfg = app.config
        self.name = name or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.batch = cfg["HOLD_WRITER_BATCH"]
        self.block_ms = cfg["HOLD_WRITER_BLOCK_MS"]
        self.claim_idle_ms = cfg["HOLD_WRITER_CLAIM_IDLE_MS"]
        self.linger_ms = cfg["HOLD_WRITER_LINGER_MS"]
        self._groups: set[int] = set()
        self._events: list[int] = []
        self._events_read = 0.0
        self._last_read = -1  # entries the last round read (-1: none yet); 0: look for new sales
        self._claimed = 0.0
        self.stopping = threading.Event()

    def _streams(self) -> list[int]:
        """The registered sales, read again every second, and at once after a round that found
        nothing: a sale whose first reserves come within a second of its first join would
        otherwise wait for the next look (p50 509 ms in a 500-buyer sale)."""
        if self._last_read == 0 or time.monotonic() - self._events_read > 1.0:
            client = redis_store.client
            self._events = sorted(int(e) for e in client.smembers(REGISTRY_KEY))
            for event_id in self._events:
                if event_id not in self._groups:
                    try:
                        client.xgroup_create(QueueKeys(event_id).reserve_stream(), GROUP, id="0", mkstream=True)
                    except redis.ResponseError as exc:
                        if "BUSYGROUP" not in str(exc):
                            raise
                    self._groups.add(event_id)
            self._events_read = time.monotonic()
        return self._events

    def forget_groups(self) -> None:
        self._groups.clear()
        self._events_read = 0.0

    def step(self, block_ms: int | None = None) -> int:
        """One round: claim entries of dead writers (every second), then read and write new ones."""
        client = redis_store.client
        events = self._streams()
        if not events:
            self.stopping.wait((block_ms if block_ms is not None else self.block_ms) / 1000)
            self._last_read = 0
            return 0
        done = 0
        if time.monotonic() - self._claimed > 1.0:
            for event_id in events:
                _next, claimed, *_ = client.xautoclaim(QueueKeys(event_id).reserve_stream(), GROUP, self.name,
                                                       self.claim_idle_ms, "0-0", count=self.batch)
                done += process(event_id, [(i, f) for i, f in claimed if f])
            self._claimed = time.monotonic()
        streams = {QueueKeys(e).reserve_stream(): ">" for e in events}
        replies = self._read(client, streams, self.batch, self.block_ms if block_ms is None else block_ms)
        by_stream = {stream: list(entries) for stream, entries in replies or []}
        read = sum(len(entries) for entries in by_stream.values())
        if 1 < read < self.batch // 4 and self.linger_ms:
            # a burst is arriving: wait a moment and take what came meanwhile, so one transaction
            # writes a few hundred holds, not a few dozen (each batch costs ~10 statements). Not
            # after a read of a quarter batch or more, which a burst's backlog gives: there a
            # linger per batch was a quarter of the writer's time, and reserve -> held p99 went
            # over 500 ms (no linger at all: more, smaller batches, whose statements took CPU
            # from the API)
            self.stopping.wait(self.linger_ms / 1000)
            for stream, entries in self._read(client, streams, self.batch - read, None):
                by_stream.setdefault(stream, []).extend(entries)
        for stream, entries in by_stream.items():
            event_id = int(stream.split("{", 1)[1].split("}", 1)[0])
            done += process(event_id, entries)
        self._last_read = read
        return done

    def _read(self, client: Any, streams: dict[str, str], count: int, block: int | None) -> list:
        """XREADGROUP over the sales' streams. In a Redis Cluster the streams of several sales sit
        in several slots, which one command cannot read: one non-blocking read per stream, and a
        short pause when all were empty (CLUSTER_POLL_MS bounds the added latency)."""
        if not redis_store.cluster or len(streams) == 1:
            return client.xreadgroup(GROUP, self.name, streams, count=count, block=block) or []
        replies: list = []
        for stream, cursor in streams.items():
            replies.extend(client.xreadgroup(GROUP, self.name, {stream: cursor}, count=count) or [])
        if not replies and block:
            self.stopping.wait(min(block, CLUSTER_POLL_MS) / 1000)
        return replies

    def drain(self, timeout: float = 10.0) -> int:
        """Process until nothing is waiting (tests and CLI)."""
        total, deadline = 0, time.monotonic() + timeout
        self._claimed = 0.0
        while time.monotonic() < deadline:
            n = self.step(block_ms=10)
            total += n
            if n == 0:
                return total
        return total

    def run(self) -> None:
        with self.app.app_context():
            self._open_connection()
            while not self.stopping.is_set():
                try:
                    self.step()
                except redis.ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        log.warning("hold writer: backing off after an error", exc_info=True)
                        self.stopping.wait(1.0)
                    self.forget_groups()  # a stream was deleted (or Redis restarted empty)
                except (redis.RedisError, OperationalError, WriterUnavailable):
                    # Redis or MySQL away: nothing was acknowledged, so nothing is lost; try again
                    log.warning("hold writer: backing off after an error", exc_info=True)
                    _discard_session()
                    self.stopping.wait(1.0)
                except Exception:  # noqa: BLE001 - a bug must not kill the writer thread
                    log.exception("hold writer: batch failed; its entries stay pending and will be claimed again")
                    _discard_session()
                    self.stopping.wait(1.0)
                finally:
                    db.remove()

    def _open_connection(self) -> None:
        """Open the writer's MySQL connection now, not in the first sale's first batch: there,
        under the burst's load, the connection cost 50-200 ms, and every request behind it
        waited as long. The pool keeps it for the later batches."""
        try:
            db.session.execute(select(1))
        except (OperationalError, PoolTimeout):  # MySQL away: the first batch will retry it
            log.warning("hold writer: MySQL is not reachable yet", exc_info=True)
        finally:
            db.remove()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="hold-writer", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stopping.set()


def main() -> None:
    """The hold writer as a process of its own (`python -m app.booking.writer`), for a deployment
    that runs its workers with HOLD_WRITER_ENABLED=0: SIGTERM finishes the batch in hand, then it
    stops. Several share the streams (consumer group), like the workers' threads do."""
    import os
    import signal
    import socket

    from app import create_app

    app = create_app()
    writer = HoldWriter(app, name=f"writer@{socket.gethostname()}-{os.getpid()}")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_args: writer.stop())
    log.info("hold writer running as its own process")
    writer.run()


if __name__ == "__main__":
    main()
