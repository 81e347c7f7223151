"""The estimators bench/eta_bench.py measures the service's (app/queue/eta.py) against: the former
EWMA of all admissions, and a plain window with the fill included. Not used by the service."""

from __future__ import annotations

import math

from app.queue.eta import WINDOW_SECONDS


def ewma_rate(previous: float | None, admitted: float, dt: float, time_constant: float = 30.0) -> float | None:
    """The former estimator: an EWMA of all admissions per observed second (30 s time constant)."""
    if dt <= 0:
        return previous
    sample = admitted / dt
    return sample if previous is None else previous + (1 - math.exp(-dt / time_constant)) * (sample - previous)


def window_rate(samples: list[tuple[float, float]], window: float = WINDOW_SECONDS) -> float | None:
    """Admissions per second over the last ``window`` observed seconds (no prior, fill included)."""
    observed = served = 0.0
    for dt, n in reversed(samples):
        if observed >= window:
            break
        observed += dt
        served += n
    return served / observed if observed > 0 else None
