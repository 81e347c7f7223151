"""Proof of work at join: the reference client (what docs/security.md describes to client authors).

A sale with `pow_difficulty` d > 0 admits a join only with a header `X-Proof-Of-Work: <nonce>` such
that SHA-1("<event_id>:<user_id>:<nonce>") begins with d zero bits. The check is one hash inside
the join script; finding a nonce takes about 2^d hashes (d = 16: ~65,000, a fraction of a second
in a browser; d = 20: about a second). A nonce stays valid for that user and sale, so a page reload
costs nothing more. SHA-1 because it is the hash Redis offers to scripts; collision resistance is
not what a work puzzle needs.

With ``pow_adaptive_threshold`` set, the difficulty also rises with the sale's join rate
(``adapted_difficulty``, once per advance tick) and falls back when the flood stops, never above
``pow_max_difficulty``. A fan who already has a place is never asked again.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass


def leading_zero_bits(hexdigest: str) -> int:
    bits = 0
    for char in hexdigest:
        value = int(char, 16)
        if value == 0:
            bits += 4
            continue
        return bits + (4 - value.bit_length())
    return bits


def solve(event_id: int, user_id: int, difficulty: int) -> str:
    """The first nonce that meets ``difficulty`` (a client does this once per sale)."""
    prefix = f"{event_id}:{user_id}:"
    for n in itertools.count():
        nonce = format(n, "x")
        if leading_zero_bits(hashlib.sha1((prefix + nonce).encode()).hexdigest()) >= difficulty:
            return nonce
    raise AssertionError("unreachable")


# --- adaptive difficulty --------------------------------------------------------------------------

@dataclass(frozen=True)
class PowSettings:
    """A sale's proof-of-work settings (its meta in Redis): ``base`` is always asked; above
    ``threshold`` join attempts a second (0: never) the difficulty rises, to ``maximum`` at most."""
    base: int
    threshold: int
    maximum: int


def asked_difficulty(sale: int | str | None, adaptive: int | str | None) -> int:
    """What a new join is asked: the sale's own difficulty or the adaptive one, whichever is higher
    (join.lua applies the same rule)."""
    return max(int(sale or 0), int(adaptive or 0))


def adapted_difficulty(settings: PowSettings, current: int, attempts_per_second: float) -> int:
    """The difficulty for the next tick (a second). While the join attempts exceed the threshold
    it rises, by one bit per doubling of the rate past it: a flood that keeps its rate pays twice
    the work per join each second, until its rate falls to the threshold, which is all the places
    its hashing can buy. Between half the threshold and the threshold it holds; below, it falls a
    bit per tick: a flood that pauses for a moment finds the door still narrow. A fan's work stays
    bounded by ``maximum``."""
    if settings.threshold <= 0:
        return settings.base
    ceiling = max(settings.maximum, settings.base)
    current = min(max(current, settings.base), ceiling)
    if attempts_per_second > settings.threshold:
        return min(current + math.ceil(math.log2(attempts_per_second / settings.threshold)), ceiling)
    if attempts_per_second < settings.threshold / 2:
        return max(current - 1, settings.base)
    return current
