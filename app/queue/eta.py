"""The honest wait estimate: how fast the line really moves, learned from what the advancer does.

The advancer (once a second per sale) reports a `Tick`: how long the line was open, non-empty and
not paused since the last tick (`dt`), and how many admissions in that time reflect the line's
speed (`served`). When `max_active` binds (capacity-bound), the line moves only as admitted users
leave, so `served` counts admissions that replaced departures; the burst that fills empty slots
at opening is not speed and is left out. Otherwise (rate-bound) every admission counts.

The speed is a blend of a prior and the measured rate, with weight shifting to the evidence:

    rate = (served over the window + prior * PRIOR_SECONDS) / (observed seconds + PRIOR_SECONDS)

over the last WINDOW_SECONDS of observed time. The prior is the configured rate while the line is
rate-bound; while it is capacity-bound it is what the last measurement implies for the current
`max_active` (throughput scales with the slots: Little's law), else the slowest plausible speed,
`max_active / admission window`, weighing one second only (it is a bound, not a guess). A
capacity-bound measurement starts at the first departure. A change of `admit_per_minute` or
`max_active` starts a new measurement from that prior; a pause keeps the measurement (paused time
is not counted).

The published rate moves at most MAX_STEP per second of wall time, so a fan's ETA never jumps
up and down from poll to poll, except right after a pause or a reconfiguration (when the line's
speed really did change) or while almost nothing has been measured. With the rate comes a relative
uncertainty (Poisson: 1 / sqrt(events behind the estimate)), shown as a range.

Everything here is arithmetic on plain numbers: the unit tests replay recorded admission series
through it, and `bench/eta_bench.py` compares it with the alternatives below on a live stack.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

WINDOW_SECONDS = 60.0  # observed seconds of history behind the rate
PRIOR_SECONDS = 4.0  # the prior weighs as much as this many seconds of measurement
MAX_STEP = 0.08  # published rate changes by at most 8 % per second once settled
SETTLED_EVENTS = 8  # below this many measured events, the rate follows the evidence freely
Z90 = 1.645  # the range is a 90 % interval


@dataclass(frozen=True)
class Tick:
    at: float  # wall time of the tick
    dt: float  # seconds since the last tick that the line was open, non-empty and not paused
    served: float  # admissions in that time that reflect the line's speed (fill excluded)
    capacity_bound: bool  # max_active, not the token rate, limited this tick's admissions
    per_minute: float  # configured admit_per_minute
    max_active: int
    window: float  # admission window (seconds): the longest anyone can hold a slot
    paused: bool = False
    admitted: float = 0  # every admission of the tick, fill included (for comparison only)


@dataclass
class EtaState:
    samples: list[list[float]] = field(default_factory=list)  # [dt, served], oldest first
    rate: float | None = None  # published, per second
    rel: float = 1.0  # relative uncertainty of the published rate
    config: list[float] = field(default_factory=list)  # [per_minute, max_active] the samples were taken at
    capacity_bound: bool = False
    free: bool = True  # the next publication may move freely (after a pause or reconfiguration)
    at: float = 0.0  # wall time of the last update
    prior: float | None = None  # the prior of the current measurement (per second)

    def dumps(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes | None) -> EtaState:
        if not raw:
            return cls()
        try:
            return cls(**json.loads(raw))
        except (TypeError, ValueError):
            return cls()  # an older format: start measuring again


def _totals(samples: Iterable[list[float]]) -> tuple[float, float]:
    observed = served = 0.0
    for dt, n in samples:
        observed += dt
        served += n
    return observed, served


def update(state: EtaState, tick: Tick) -> EtaState:
    """The state after one advancer tick (pure: the caller stores the result)."""
    config = [float(tick.per_minute), float(tick.max_active)]
    if tick.paused:
        state.free, state.at = True, tick.at  # no sample: waiting time while paused is not speed
        return state
    if state.config and state.config != config:
        # reconfigured: a new measurement, starting from what the old one implies for the new setting
        old_rate, old_max = state.rate, state.config[1]
        state.samples, state.free = [], True
        configured = tick.per_minute / 60
        if state.capacity_bound and old_rate:
            state.prior = min(configured, old_rate * tick.max_active / max(old_max, 1.0))
        else:
            state.prior = configured
    state.config = config
    state.capacity_bound = tick.capacity_bound
    waiting_for_first_departure = tick.capacity_bound and tick.served == 0 and not any(n for _, n in state.samples)
    if tick.dt > 0 and not waiting_for_first_departure:
        # (a capacity-bound measurement starts at the first departure: every slot was filled at
        # once, so the first stints end together, later than the line's steady pace)
        state.samples.append([round(tick.dt, 4), float(tick.served)])
        observed = _totals(state.samples)[0]
        while state.samples and observed - state.samples[0][0] >= WINDOW_SECONDS:
            observed -= state.samples.pop(0)[0]
    estimate, events = _estimate(state, tick)
    state.rel = min(1.0, 1 / math.sqrt(events)) if events > 0 else 1.0
    step_allowed = not state.free and events >= SETTLED_EVENTS and state.rate is not None
    if step_allowed:
        bound = MAX_STEP * max(0.0, tick.at - state.at)
        estimate = min(max(estimate, state.rate * (1 - bound)), state.rate * (1 + bound))
    state.rate = estimate
    state.free = False
    state.at = tick.at
    return state


def _prior(state: EtaState, tick: Tick) -> tuple[float, float]:
    """(prior rate per second, its weight in seconds)."""
    configured = tick.per_minute / 60
    if state.prior is not None:  # what the previous measurement implies for the new settings
        return state.prior, PRIOR_SECONDS
    if tick.capacity_bound:
        # nobody has left yet: only a bound is known (everyone keeps the slot for the whole window),
        # so it weighs one second, or it would drag the measured speed down for a long time
        return min(configured, tick.max_active / max(tick.window, 1.0)), 1.0
    return configured, PRIOR_SECONDS


def _estimate(state: EtaState, tick: Tick) -> tuple[float, float]:
    """(rate per second, events behind it): measurement and prior blended by their weights."""
    observed, served = _totals(state.samples)
    prior, weight = _prior(state, tick)
    rate = (served + prior * weight) / (observed + weight)
    return max(rate, 1e-6), served + prior * weight


def wait_seconds(ahead: int, rate: float, rel: float = 0.0) -> tuple[int, int, int]:
    """(eta, low, high) for someone with ``ahead`` people in front, at ``rate`` per second.

    They are admitted when ahead + 1 places have been served; admissions happen on the advancer's
    one-second tick, which on average is half a second away."""
    rate = max(rate, 1e-6)
    expected = (ahead + 0.5) / rate
    spread = min(0.75, Z90 * rel)  # at most 0.57x to 4x: a range that still says something
    low = expected / (1 + spread)
    high = expected / (1 - spread)
    return max(1, math.ceil(expected)), max(1, math.floor(low)), max(1, math.ceil(high))
