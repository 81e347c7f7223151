"""The proof-of-work puzzle at join (app/queue/pow.py): what a client must find."""

from __future__ import annotations

import hashlib

from app.queue.pow import PowSettings, adapted_difficulty, leading_zero_bits, solve


def test_leading_zero_bits_counts_bits_not_hex_digits():
    assert leading_zero_bits("ffff") == 0
    assert leading_zero_bits("7fff") == 1
    assert leading_zero_bits("0fff") == 4
    assert leading_zero_bits("01ff") == 7
    assert leading_zero_bits("0000") == 16


def test_a_solved_nonce_meets_the_difficulty_for_that_user_and_sale_only():
    nonce = solve(42, 7, 10)
    assert leading_zero_bits(hashlib.sha1(f"42:7:{nonce}".encode()).hexdigest()) >= 10
    assert solve(42, 7, 0) == "0"


def test_the_adaptive_difficulty_climbs_while_the_rate_is_over_the_threshold_and_falls_a_bit_per_tick():
    sale = PowSettings(base=2, threshold=100, maximum=12)
    assert adapted_difficulty(sale, 2, 100) == 2  # at the threshold: the sale's own
    assert adapted_difficulty(sale, 2, 150) == 3  # over it: a bit more each tick ...
    assert adapted_difficulty(sale, 3, 150) == 4
    assert adapted_difficulty(sale, 2, 400) == 4  # ... one per doubling of the rate past it
    assert adapted_difficulty(sale, 11, 10_000_000) == 12  # never above the bound
    assert adapted_difficulty(sale, 7, 80) == 7  # between half the threshold and it: holds
    falling = [12]
    while falling[-1] > 2:  # the flood stops: one bit a tick, down to the sale's own
        falling.append(adapted_difficulty(sale, falling[-1], 10))
    assert falling == list(range(12, 1, -1))
    assert adapted_difficulty(PowSettings(2, 0, 12), 9, 10_000) == 2  # not adaptive: the sale's own
    assert adapted_difficulty(PowSettings(8, 100, 4), 8, 10_000) == 8  # a bound below the base: the base
