"""The wait estimator's arithmetic (app/queue/eta.py) on recorded admission series: no Redis, no
API. How honest it is on a live stack is measured by `make bench-eta`, not here."""

from __future__ import annotations

import pytest

from app.queue import eta
from bench import eta_alternatives


def tick(at: float, dt: float = 1.0, served: float = 0, *, capacity_bound: bool = False, per_minute: float = 120,
         max_active: int = 100_000, window: float = 600, paused: bool = False) -> eta.Tick:
    return eta.Tick(at=at, dt=dt, served=served, capacity_bound=capacity_bound, per_minute=per_minute,
                    max_active=max_active, window=window, paused=paused, admitted=served)


def replay(ticks: list[eta.Tick], state: eta.EtaState | None = None) -> tuple[eta.EtaState, list[float]]:
    """Feed ticks one by one through a JSON round trip, as the advancer does with Redis."""
    state = state or eta.EtaState()
    rates = []
    for t in ticks:
        state = eta.update(eta.EtaState.loads(state.dumps()), t)
        rates.append(state.rate)
    return state, rates


def test_a_constant_rate_line_is_measured_at_its_rate():
    state, rates = replay([tick(i, served=2) for i in range(1, 31)])
    assert rates[-1] == pytest.approx(2.0, rel=1e-6)  # measurement and prior agree
    expected, low, high = eta.wait_seconds(ahead=9, rate=state.rate, rel=state.rel)
    assert expected == 5 and low <= expected <= high  # (9 + 0.5) / 2, up to the next second


def test_capacity_bound_line_learns_the_departure_rate_and_ignores_the_opening_fill():
    """max_active 4, configured 600/min (10/s): the first tick fills the four slots (served 0: it
    is not speed), then one fan leaves per second. The configured rate would be 10x too fast."""
    ticks = [tick(0, dt=0, served=0, capacity_bound=True, per_minute=600, max_active=4)]
    ticks += [tick(i, served=1, capacity_bound=True, per_minute=600, max_active=4) for i in range(1, 16)]
    state, rates = replay(ticks)
    assert rates[-1] == pytest.approx(1.0, rel=0.1)
    assert rates[0] < 10 / 60 * 10  # before any departure, no promise of the configured speed
    # the former estimator, an EWMA of all admissions, counted the fill as speed
    fill_included = eta_alternatives.window_rate([(1.0, 4.0)] + [(1.0, 1.0)] * 15)
    assert fill_included > 1.15


def test_the_published_rate_moves_boundedly_once_settled():
    state, _ = replay([tick(i, served=2) for i in range(1, 31)])
    before = state.rate
    state, rates = replay([tick(31, served=40)], state)  # one freak tick: 40 admitted at once
    assert rates[-1] <= before * (1 + eta.MAX_STEP) + 1e-9
    # a sustained change is followed, at most MAX_STEP per second
    after_freak = state.rate
    state, rates = replay([tick(32 + i, served=4) for i in range(60)], state)
    steps = [b / a for a, b in zip([after_freak, *rates], rates, strict=False)]
    assert max(steps) <= 1 + eta.MAX_STEP + 1e-9
    assert rates[-1] == pytest.approx(4.0, rel=0.15)


def test_paused_time_is_not_speed_and_the_first_estimate_after_resume_is_free():
    state, _ = replay([tick(i, served=2) for i in range(1, 21)])
    observed_before = sum(dt for dt, _ in state.samples)
    state, _ = replay([tick(21 + i, dt=0, paused=True) for i in range(10)], state)
    assert sum(dt for dt, _ in state.samples) == observed_before and state.free
    state, rates = replay([tick(31, served=2)], state)
    assert rates[-1] == pytest.approx(2.0, rel=0.01) and not state.free


def test_a_rate_change_starts_a_new_measurement_from_the_new_rate():
    state, _ = replay([tick(i, served=2) for i in range(1, 21)])  # 120/min
    state, rates = replay([tick(21, served=1, per_minute=60)], state)  # the operator halves it
    assert state.samples == [[1.0, 1.0]] and rates[-1] == pytest.approx(1.0, rel=0.01)


def test_a_max_active_change_scales_a_capacity_bound_measurement():
    ticks = [tick(i, served=1, capacity_bound=True, per_minute=600, max_active=4) for i in range(1, 31)]
    state, _ = replay(ticks)
    # twice the slots, the same shopping time: the line should move about twice as fast
    state, rates = replay([tick(31, dt=1, served=2, capacity_bound=True, per_minute=600, max_active=8)], state)
    assert state.prior == pytest.approx(2.0, rel=0.1) and rates[-1] == pytest.approx(2.0, rel=0.15)


def test_the_range_is_wide_with_little_evidence_and_narrows_with_more():
    early, _ = replay([tick(1, served=1, capacity_bound=True, per_minute=600, max_active=4)])
    late, _ = replay([tick(i, served=1, capacity_bound=True, per_minute=600, max_active=4) for i in range(1, 61)])
    _, low_early, high_early = eta.wait_seconds(30, early.rate, early.rel)
    expected, low_late, high_late = eta.wait_seconds(30, late.rate, late.rel)
    assert high_early / low_early > 3 * (high_late / low_late)
    assert low_late <= expected <= high_late and high_late / low_late < 1.8


def test_state_survives_its_storage_format_and_a_stranger_one():
    state, _ = replay([tick(i, served=2) for i in range(1, 5)])
    assert eta.EtaState.loads(state.dumps()) == state
    assert eta.EtaState.loads("{not json") == eta.EtaState()
    assert eta.EtaState.loads(None) == eta.EtaState()
    assert eta.EtaState.loads('{"unknown_field": 1}') == eta.EtaState()


def test_the_window_forgets_old_speed():
    state, _ = replay([tick(i, served=5) for i in range(1, 200)])
    assert sum(dt for dt, _ in state.samples) <= eta.WINDOW_SECONDS
