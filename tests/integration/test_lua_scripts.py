"""Every Lua script, through its typed call (app/redis/calls.py), against a real Redis: each
outcome of its reply, and what it leaves in the keys it names."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.redis import calls
from app.redis.keys import QueueKeys, auth_session_key, verification_keys

SALE, SECTION = 9001, 7


@pytest.fixture()
def r(app) -> Iterator[Any]:
    from app.extensions import redis_store

    with app.app_context():
        yield redis_store.client


def open_sale(r: Any, sale: QueueKeys, **meta: Any) -> None:
    now = time.time()
    r.hset(sale.meta, mapping={"admit_per_minute": 60, "max_active": 10, "window": 600, "heartbeat_timeout": 60,
                               "opens_at": now - 60, "prequeue_opens_at": now - 120, "closes_at": "",
                               "starts_at": "", "pow_difficulty": 0, "paused": "0", "shuffled": "1", **meta})


def caller(sale: QueueKeys, user: int) -> calls.CallerKeys:
    return calls.CallerKeys.of(sale, user, sale.no_token())


def join(r: Any, sale: QueueKeys, user: int, *, per_second: int = 10, pow_nonce: str = "") -> Any:
    return calls.join(sale, caller(sale, user), [f"n:user:{{{user}}}:devices", f"u:{{{user}}}:queues"],
                      user_id=user, now=time.time(), per_second=per_second, event_id=SALE, proof_of_work=pow_nonce,
                      user_args=[])


# --- waiting room ------------------------------------------------------------------------------------

def test_join_takes_a_place_once_and_refuses_each_way_it_can(r):
    sale = QueueKeys(SALE)
    assert join(r, sale, 1) == calls.Refusal("no_meta", None)
    open_sale(r, sale)
    first = join(r, sale, 1)
    assert isinstance(first, calls.PlaceReply) and (first.state, first.rank, first.created) == ("waiting", 0, 1)
    again = join(r, sale, 1)
    assert (again.state, again.created) == ("waiting", 0)  # the same place, not a second one
    assert join(r, sale, 2).rank == 1 and r.hget(sale.stats, "joined_total") == "2"

    r.set(sale.no_token(), 1)
    assert join(r, sale, 3).outcome == "token_revoked"
    r.delete(sale.no_token())
    assert join(r, sale, 4, per_second=1).state == "waiting"
    limited = join(r, sale, 4, per_second=1)
    assert limited.outcome == "rate_limited" and 0 < int(limited.detail) <= 1000

    r.hset(sale.meta, "pow_difficulty", 8)
    assert join(r, sale, 5) == calls.Refusal("pow_required", "8")
    nonce = next(str(n) for n in range(100_000)
                 if hashlib.sha1(f"{SALE}:5:{n}".encode()).hexdigest().startswith("00"))
    assert join(r, sale, 5, pow_nonce=nonce).state == "waiting"
    r.hset(sale.meta, mapping={"pow_difficulty": 0, "prequeue_opens_at": time.time() + 60})
    assert join(r, sale, 6).outcome == "not_open"
    r.hset(sale.meta, mapping={"prequeue_opens_at": time.time() - 60, "closes_at": time.time() - 1})
    assert join(r, sale, 6).outcome == "closed"


def test_join_before_the_opening_is_the_pre_queue_and_shuffle_places_it_once(r):
    sale = QueueKeys(SALE)
    open_sale(r, sale, opens_at=time.time() + 60, shuffled="0")
    for user in (1, 2, 3):
        assert join(r, sale, user).state == "pre_queue"
    # 2 reached the pre-queue after the order was drawn: nothing is placed, the caller draws again
    assert calls.shuffle(sale, now=time.time(), order=["3", "1"]) == calls.Shuffled("grown")
    assert r.zcard(sale.line) == 0 and r.scard(sale.pre) == 3 and r.hget(sale.meta, "shuffled") == "0"
    r.srem(sale.pre, "1")  # 1 left after the order was read: a gap, not a reason to draw again
    assert calls.shuffle(sale, now=time.time(), order=["3", "1", "2"]) == calls.Shuffled("placed", 2)
    assert r.zrange(sale.line, 0, -1) == ["3", "2"] and r.scard(sale.pre) == 0
    # consecutive line numbers, the drawn block just before the first later arrival's 1, and the
    # served figure just before the block: nobody is further ahead than number - served_up_to
    assert r.zrange(sale.line, 0, -1, withscores=True) == [("3", -2.0), ("2", -1.0)]
    assert r.hget(sale.stats, "served_up_to") == "-3"
    assert calls.shuffle(sale, now=time.time(), order=["1"]) == calls.Shuffled("drawn_before")  # once per sale
    late = join(r, sale, 4)
    assert (late.state, late.rank, late.line_number, late.served_up_to) == ("waiting", 2, "1", "-3")


def test_status_reads_a_place_and_meters_only_when_asked(r):
    sale = QueueKeys(SALE)
    open_sale(r, sale)
    now = time.time()
    assert calls.status(sale, caller(sale, 1), user_id=1, now=now, per_second=1).state == "not_in_queue"
    assert calls.status(sale, caller(sale, 1), user_id=1, now=now, per_second=1).outcome == "rate_limited"
    for _ in range(3):  # unmetered: the SSE stream paces itself
        assert calls.status(sale, caller(sale, 1), user_id=1, now=now, per_second=0).state == "not_in_queue"
    join(r, sale, 2)
    place = calls.status(sale, caller(sale, 2), user_id=2, now=time.time(), per_second=0)
    assert (place.state, place.rank, place.admit_per_minute, place.heartbeat_timeout) == ("waiting", 0, "60", "60")


def test_advance_admits_at_the_rate_reports_its_sample_and_lapses_windows(r):
    sale = QueueKeys(SALE)
    assert calls.advance(sale, now=time.time(), max_batch=10).status == "no_meta"
    open_sale(r, sale, shuffled="0")
    assert calls.advance(sale, now=time.time(), max_batch=10).status == "needs_shuffle"
    r.hset(sale.meta, "shuffled", "1")
    for user in (1, 2, 3):
        join(r, sale, user)
    r.sadd(sale.notifiable, 1)
    now = time.time()
    step = calls.advance(sale, now=now, max_batch=10, force=2)
    assert step.status == "ok" and [a.user_id for a in step.admitted] == [1, 2]
    assert r.hget(sale.stats, "served_up_to") == "2"  # the line number of the last place taken off the front
    third = calls.status(sale, caller(sale, 3), user_id=3, now=now, per_second=0)
    assert (third.rank, third.line_number, third.served_up_to) == (0, "3", "2") and float(third.joined_at) > 0
    first = step.admitted[0]
    assert first.notifiable and not step.admitted[1].notifiable and first.until == pytest.approx(now + 600)
    assert (step.admit_per_minute, step.max_active, step.window) == (60.0, 10, 600.0)
    assert r.hexists(sale.notices_due(), 1) and not r.hexists(sale.notices_due(), 2)  # owed a notice
    r.hset(sale.meta, "paused", "1")
    assert calls.advance(sale, now=now, max_batch=10).status == "paused"
    r.hset(sale.meta, "paused", "0")
    lapsed = calls.advance(sale, now=now + 601, max_batch=0)
    assert lapsed.lapsed == 2 and r.hget(sale.expired, 1) == "window_lapsed"
    r.hset(sale.meta, "starts_at", now - 1)
    r.delete(sale.line)
    assert calls.advance(sale, now=now + 602, max_batch=10).status == "ended"


def test_leave_frees_a_place_or_a_slot_once(r):
    sale = QueueKeys(SALE)
    open_sale(r, sale)
    join(r, sale, 1)
    assert calls.leave(sale, user_id=1, now=time.time(), kind="QueueLeft") is True
    assert calls.leave(sale, user_id=1, now=time.time(), kind="QueueLeft") is False
    events = [fields["type"] for _, fields in r.xrange(sale.events)]
    assert events == ["QueueJoined", "QueueLeft"]


# --- the gate -----------------------------------------------------------------------------------------

def gate_keys(sale: QueueKeys) -> tuple[str, calls.ReleaseKeys]:
    return sale.gate(SECTION), calls.ReleaseKeys.of(SALE, SECTION)


def test_give_puts_units_back_to_the_gate_the_waitlist_first_or_nowhere(r):
    sale = QueueKeys(SALE)
    gate, release = gate_keys(sale)
    assert calls.give(gate, sale.user_units(), release, quantity=2, user_id=None) == calls.NO_GATE
    r.set(gate, 1)
    r.hset(sale.user_units(), "5", 3)
    assert calls.give(gate, sale.user_units(), release, quantity=2, user_id=5) == 3
    assert r.hget(sale.user_units(), "5") == "1"
    r.zadd(release.waitlist, {"8": 1})
    assert calls.give(gate, sale.user_units(), release, quantity=2, user_id=None) == calls.TO_WAITLIST
    assert r.get(release.pool) == "2" and r.get(gate) == "3" and r.hget(release.stats, "released") == "2"


def test_release_hold_gives_a_holds_units_back_at_most_once(r):
    sale = QueueKeys(SALE)
    gate, release = gate_keys(sale)
    keys = calls.HoldKeys(gate, sale.holds(SECTION), sale.user_units())
    r.set(gate, 0)
    r.zadd(keys.holds, {"res-1:2": time.time() + 300, "res-2:1": time.time() + 300})
    r.hset(keys.user_units, "5", 3)
    assert calls.release_hold(keys, release, member="res-1:2", give_back=True, user_id=5) == 2
    assert calls.release_hold(keys, release, member="res-1:2", give_back=True, user_id=None) is None  # once
    assert calls.release_hold(keys, release, member="res-2:1", give_back=False, user_id=None) is None  # sold
    assert r.get(gate) == "2" and r.zcard(keys.holds) == 0 and r.hget(keys.user_units, "5") == "1"


def test_reset_sets_the_gate_from_mysqls_count_only_when_nothing_is_in_flight(r):
    sale = QueueKeys(SALE)
    keys = calls.ResetKeys(sale.gate(SECTION), sale.holds(SECTION), sale.pending(), sale.writes(),
                           sale.waitlist(SECTION, "pool"), sale.waitlist(SECTION, "offered"))
    now = time.time()
    assert calls.reset(keys, expected=10, now=now, writes="0") == calls.ResetReply(True, None, 10)
    r.set(keys.pool, 2)
    r.set(keys.offered, 1)
    assert calls.reset(keys, expected=10, now=now, writes="0") == calls.ResetReply(True, 10, 7)
    r.hset(keys.pending, "res-9", "{}")
    assert calls.reset(keys, expected=10, now=now, writes="0").reset is False  # a request between API and MySQL
    r.delete(keys.pending)
    r.incr(keys.writes)
    assert calls.reset(keys, expected=10, now=now, writes="0").reset is False  # a writer committed meanwhile


def test_settle_follows_a_batch_all_at_once(r):
    sale = QueueKeys(SALE)
    keys = calls.SettleKeys(sale.pending(), sale.writes(), sale.reserve_stream(), sale.user_units(),
                            sale.dead_letters(), sale.pending_of(), sale.pending_units())
    section = calls.SettledSection.of(SALE, SECTION)
    r.xgroup_create(keys.reserve_stream, "writers", id="0", mkstream=True)
    held = r.xadd(keys.reserve_stream, {"r": "{}"})
    rejected = r.xadd(keys.reserve_stream, {"r": "{}"})
    r.xreadgroup("writers", "w1", {keys.reserve_stream: ">"})
    r.hset(keys.pending, mapping={"res-1": "{}", "res-2": "{}"})
    r.hset(keys.pending_of_user, mapping={"5": "res-1 res-2"})
    r.hset(keys.pending_units, str(SECTION), 3)
    r.hset(keys.user_units, "5", 3)
    r.set(section.gate, 0)
    plan = {"ack": [held, rejected], "done": [["res-1", 5, SECTION, 2], ["res-2", 5, SECTION, 1]],
            "holds": [[1, "res-1:2", f"{time.time() + 300:.6f}"]], "give": [[1, 1, "5"]],
            "dead": [["reservation_id", "res-2", "reason", "test"]]}
    assert calls.settle(keys, [section], group="writers", plan=plan) == 2
    assert r.xlen(keys.reserve_stream) == 0 and r.hlen(keys.pending) == 0 and not r.hexists(keys.pending_of_user, "5")
    assert r.zrange(section.holds, 0, -1) == ["res-1:2"] and r.get(section.gate) == "1"
    assert r.hget(keys.user_units, "5") == "2" and r.get(keys.writes) == "1" and r.xlen(keys.dead_letters) == 1


# --- the waitlist -------------------------------------------------------------------------------------

def test_join_waitlist_answers_each_case(r):
    sale = QueueKeys(SALE)
    keys = calls.WaitlistKeys.of(SALE, SECTION)

    def join_wl(user: int, quantity: int = 1) -> calls.WaitlistJoin:
        return calls.join_waitlist(keys, sale.active, sale.user_units(), user_id=user, now=time.time(),
                                   quantity=quantity, max_per_user=4)

    assert join_wl(1) == calls.WaitlistJoin("admission_inactive", None)
    r.zadd(sale.active, {"1": time.time() + 600, "2": time.time() + 600, "3": time.time() + 600})
    r.set(keys.gate, 1)
    assert join_wl(1).outcome == "not_sold_out"
    r.set(keys.gate, 0)
    r.hset(sale.user_units(), "3", 4)
    assert join_wl(3) == calls.WaitlistJoin("limit_exceeded", 4)
    assert join_wl(1, 2) == calls.WaitlistJoin("joined", 1)
    assert join_wl(2) == calls.WaitlistJoin("joined", 2)
    assert join_wl(2) == calls.WaitlistJoin("already", 2)
    r.hset(keys.user_offer, "2", "o1")
    assert join_wl(2).outcome == "offered"
    assert calls.leave_waitlist(keys, user_id=1) is True and calls.leave_waitlist(keys, user_id=1) is False


def test_offers_are_made_in_order_expire_back_to_the_pool_and_decline_on(r):
    keys = calls.WaitlistKeys.of(SALE, SECTION)
    r.set(keys.gate, 0)
    for seq, (user, quantity) in enumerate(((1, 3), (2, 1), (3, 1)), start=1):
        r.zadd(keys.waitlist, {str(user): seq})
        r.hset(keys.quantities, str(user), quantity)
    r.set(keys.pool, 2)
    now = time.time()
    made = calls.make_offers(keys, now=now, window_seconds=60, scan=10)
    # fan 1 wants more than the pool holds and keeps the place; the two behind are served
    assert [(o.user_id, o.quantity) for o in made] == [(2, 1), (3, 1)]
    assert made[0].expires == pytest.approx(now + 60) and r.get(keys.offered) == "2"
    assert calls.decline_offer(keys, user_id=2) == 1 and calls.decline_offer(keys, user_id=2) == 0
    assert r.get(keys.pool) == "1"  # fan 1 still waits: the declined unit is kept for the line
    gone = calls.expire_offers(keys, now=now + 61)
    assert [(o.user_id, o.offer_id, o.quantity) for o in gone] == [(3, made[1].offer_id, 1)]
    assert r.get(keys.pool) == "2" and r.get(keys.offered) == "0" and not r.hexists(keys.user_offer, "3")
    r.delete(keys.waitlist)
    assert calls.make_offers(keys, now=now, window_seconds=60, scan=10) == []
    assert r.get(keys.gate) == "2" and r.get(keys.pool) == "0"  # nobody waits: open to everyone


# --- the small ones -----------------------------------------------------------------------------------

def test_open_stream_caps_per_user_and_per_sale_and_lapses_with_its_process(r):
    sale = QueueKeys(SALE)
    now = time.time()

    def lease(user: int, stream: str, process: str = "p1", at: float = now) -> str:
        return calls.open_stream(calls.StreamKeys(sale.user_streams(user), sale.stream_processes()), process=process,
                                 stream_id=stream, now=at, until=at + 30, user_cap=2, sale_cap=3, user_ttl=3630,
                                 processes_ttl=60)

    assert [lease(1, "a"), lease(1, "b", "p2"), lease(1, "c")] == ["ok", "ok", "user"]
    assert [lease(2, "d"), lease(3, "e", "p2")] == ["ok", "event"]
    assert r.hgetall(sale.stream_processes()) == {"p1": f"{now + 30:.3f}", "p1#n": "2", "p2": f"{now + 30:.3f}",
                                                  "p2#n": "1"}
    # 31 s later only p2 renewed its lease (SERVING): p1's streams are gone with it
    later = now + 31
    serving_keys = calls.ServingKeys.of(sale)
    r.hset(sale.meta, "paused", "0")
    calls.serving(serving_keys, calls.ProcessLease.of(sale, "p2", later + 30, 60),
                  now=later)
    assert lease(3, "f", "p3", later) == "ok"
    assert lease(1, "g", "p3", later) == "ok"  # user 1 holds only "b" now
    assert r.zrange(sale.user_streams(1), 0, -1) == ["p2:b", "p3:g"]
    assert "p1" not in r.hgetall(sale.stream_processes())


def test_serving_answers_the_public_figures_and_heartbeats_a_stream_process_fans(r):
    sale = QueueKeys(SALE)
    keys = calls.ServingKeys.of(sale)
    assert calls.serving(keys) is None  # not in Redis
    r.hset(sale.meta, mapping={"paused": "0", "admit_per_minute": "120", "heartbeat_timeout": "60",
                               "opens_at": "100", "closes_at": "", "shuffled": "1"})
    r.hset(sale.stats, mapping={"served_up_to": "41", "eta_rate": "2.5", "eta_rel": "0.1", "admitted_total": "7"})
    r.zadd(sale.line, {"5": 42, "6": 43})
    r.hset(sale.joined, mapping={"5": "90", "6": "91"})
    figures = calls.serving(keys)
    assert figures == calls.ServingReply(41.0, 2.5, 0.1, False, 120.0, 60.0, 100.0, None, True, 2, 0, 7)
    lease = calls.ProcessLease.of(sale, "p1", 130.0, 60)
    calls.serving(keys, lease, now=120.0, heartbeats=[5, 9])  # 9 holds no place: no heartbeat of its own
    assert r.hgetall(sale.hb) == {"5": "120.000000"}
    assert r.hget(sale.stream_processes(), "p1") == "130.000"


def test_forget_notices_forgets_only_the_admission_it_names(r):
    due = QueueKeys(SALE).notices_due()
    r.hset(due, mapping={"1": "100.5|90", "2": "200|190"})
    assert calls.forget_notices(due, [("1", "100.5"), ("2", "150")]) == 1  # 2 was admitted again since
    assert r.hgetall(due) == {"2": "200|190"}


def test_check_code_spends_a_right_code_and_burns_after_too_many(r):
    keys = calls.CodeKeys(*verification_keys("email:5"))
    assert calls.check_code(keys, given="h", max_attempts=2) == "expired"
    r.set(keys.code, "right", ex=60)
    assert calls.check_code(keys, given="wrong", max_attempts=2) == "wrong"
    assert calls.check_code(keys, given="right", max_attempts=2) == "ok"
    assert calls.check_code(keys, given="right", max_attempts=2) == "expired"  # spent
    r.set(keys.code, "right", ex=60)
    assert [calls.check_code(keys, given="x", max_attempts=2) for _ in range(3)] == ["wrong", "wrong", "too_many"]
    assert not r.exists(keys.code)


def test_rotate_session_spends_a_refresh_token_once(r):
    session = auth_session_key("s1")
    assert calls.rotate_session(session, presented="a", next_jti="b", ttl=60) == "revoked"
    r.hset(session, "refresh", "a")
    assert calls.rotate_session(session, presented="a", next_jti="b", ttl=60) == "ok"
    assert calls.rotate_session(session, presented="a", next_jti="c", ttl=60) == "reused"
    assert not r.exists(session)  # a replayed token ends the session
