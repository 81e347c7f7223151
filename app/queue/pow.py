"""Proof of work at join: the reference client (what docs/security.md describes to client authors).

A sale with `pow_difficulty` d > 0 admits a join only with a header `X-Proof-Of-Work: <nonce>` such
that SHA-1("<event_id>:<user_id>:<nonce>") begins with d zero bits. The check is one hash inside
the join script; finding a nonce takes about 2^d hashes (d = 16: ~65,000, a fraction of a second
in a browser; d = 20: about a second). A nonce stays valid for that user and sale, so a page reload
costs nothing more. SHA-1 because it is the hash Redis offers to scripts; collision resistance is
not what a work puzzle needs.
"""

from __future__ import annotations

import hashlib
import itertools


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
