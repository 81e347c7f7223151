"""The draw's algorithm and the verifier's checks (app/queue/verify_draw.py), against the
algorithm as docs/waiting-room.md states it, worked out here with hashlib and hmac directly."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from app.queue import verify_draw as v

SEED = bytes(range(32)).hex()
ENTRANT_KEY = bytes(range(32, 64)).hex()


def _document(order: list[str]) -> dict:
    return {"algorithm": v.ALGORITHM, "seed": SEED, "commitment": hashlib.sha256(bytes.fromhex(SEED)).hexdigest(),
            "entrants": len(order), "entrants_digest": hashlib.sha256("\n".join(order).encode()).hexdigest()}


def _entrants() -> list[str]:
    ids = [hmac.new(bytes.fromhex(ENTRANT_KEY), str(user).encode(), hashlib.sha256).hexdigest()[:32]
           for user in range(1, 41)]
    seed = bytes.fromhex(SEED)
    return sorted(ids, key=lambda e: hmac.new(seed, e.encode(), hashlib.sha256).hexdigest())


def test_the_order_is_the_documented_function_of_the_seed_and_the_entrants():
    expected = _entrants()
    assert [v.entrant_id(ENTRANT_KEY, user) for user in range(1, 41)] != expected  # the draw reorders
    assert v.drawn_order(SEED, [v.entrant_id(ENTRANT_KEY, user) for user in range(1, 41)]) == expected
    assert v.drawn_order(SEED, reversed(expected)) == expected  # the set decides, not the order given
    assert v.commitment_of(SEED) == hashlib.sha256(bytes(range(32))).hexdigest()
    # one entrant more or less moves nobody else relative to the rest
    assert [e for e in v.drawn_order(SEED, expected[:-1] + ["f" * 32]) if e != "f" * 32] == expected[:-1]


def test_the_published_draw_verifies_and_every_tampering_is_named():
    order = _entrants()
    assert v.problems(_document(order), order) == []
    wrong_seed = {**_document(order), "seed": "ab" * 32}
    assert "the seed does not match the commitment published before the draw" in v.problems(wrong_seed, order)
    swapped = [order[1], order[0], *order[2:]]
    found = v.problems(_document(swapped), swapped)
    assert found == [f"the list is not in the seed's order (first difference at place 1: {order[1]} where the "
                     f"seed puts {order[0]})"]
    assert "the list does not match the announced digest" in v.problems(_document(order), swapped)
    assert "an entrant is listed twice" in v.problems(_document(order + order[:1]), order + order[:1])
    assert v.problems({**_document(order), "entrants": 39}, order) == ["40 entrants listed, 39 announced"]
    assert v.problems({**_document(order), "algorithm": "other"}, order)[0].startswith("unknown algorithm")
    assert v.problems({**_document(order), "seed": "xyz"}, order) == ["the seed is not 64 hex digits"]


def test_the_verifier_finds_the_draw_from_the_event_page_and_sees_a_late_commitment():
    assert v.draw_url("https://t.example/events/42") == "https://t.example/api/queue/42/draw"
    assert v.draw_url("https://t.example/events/42/queue?x=1") == "https://t.example/api/queue/42/draw"
    assert v.draw_url("http://h:8000/api/queue/7/draw/") == "http://h:8000/api/queue/7/draw"
    assert v.draw_url("https://t.example/events/42", lottery=True) == "https://t.example/api/events/42/lottery"
    assert v.draw_url("http://h:8000/api/events/7/lottery") == "http://h:8000/api/events/7/lottery"
    with pytest.raises(ValueError):
        v.draw_url("https://t.example/tickets")
    assert v.committed_in_time({"committed_at": "2026-12-01T10:00:00+00:00", "opens_at": "2026-12-06T10:00:00+00:00"})
    assert not v.committed_in_time({"committed_at": "2026-12-06T10:00:01+00:00",
                                    "opens_at": "2026-12-06T10:00:00+00:00"})
    assert not v.committed_in_time({})
