"""The proof-of-work puzzle at join (app/queue/pow.py): what a client must find."""

from __future__ import annotations

import hashlib

from app.queue.pow import leading_zero_bits, solve


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
