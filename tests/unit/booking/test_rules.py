"""Booking rules with no service behind them: the request fingerprint, the selection check, the
status a user sees, the waitlist's release rate."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.booking.intake import SectionFacts, request_hash, validate_selection
from app.booking.models import HELD, Reservation
from app.booking.services import effective_status
from app.booking.waitlist import release_rate
from app.db import utcnow
from app.errors import Unprocessable

GA = SectionFacts(id=1, event_id=1, kind="general", price_cents=5000, currency="EUR", seat_labels={})
SEATED = SectionFacts(id=2, event_id=1, kind="seated", price_cents=8000, currency="EUR",
                      seat_labels={10: "A1", 11: "A2", 12: "A3"})


def test_the_request_fingerprint_ignores_seat_order_and_tells_bodies_apart():
    assert request_hash(1, 2, None, [11, 10]) == request_hash(1, 2, None, [10, 11])
    assert request_hash(1, 2, 1, None) != request_hash(1, 2, 2, None)
    assert request_hash(1, 2, 1, None) != request_hash(1, 3, 1, None)


def test_general_admission_takes_a_quantity_and_no_seats():
    assert validate_selection(GA, 3, None) == 3
    for quantity, seats, field in ((None, None, "quantity"), (0, None, "quantity"), (1, [10], "seat_ids")):
        with pytest.raises(Unprocessable) as refused:
            validate_selection(GA, quantity, seats)
        assert field in refused.value.errors


def test_a_seated_section_takes_known_distinct_seats():
    assert validate_selection(SEATED, None, [10, 11]) == 2
    assert validate_selection(SEATED, 2, [10, 11]) == 2
    for quantity, seats in ((None, None), (None, [10, 10]), (3, [10, 11]), (None, [99])):
        with pytest.raises(Unprocessable):
            validate_selection(SEATED, quantity, seats)


def test_a_hold_past_its_deadline_reads_expired_before_the_sweeper_runs():
    now = utcnow()
    late = Reservation(status=HELD, hold_expires_at=now - timedelta(seconds=1))
    live = Reservation(status=HELD, hold_expires_at=now + timedelta(minutes=5))
    assert effective_status(late, now) == "expired"
    assert effective_status(live, now) == "held"
    assert effective_status(Reservation(status="confirmed"), now) == "confirmed"


def test_the_waitlist_release_rate_is_unknown_until_something_is_released():
    assert release_rate({}, 1000.0) is None
    assert release_rate({"released": "0", "first_release_at": "900"}, 1000.0) is None
    # six units since the first release 120 s ago: 0.05 a second
    assert release_rate({"released": "6", "first_release_at": "880"}, 1000.0) == pytest.approx(0.05)
    # never over less than a minute: one early release is not a rate of one a second
    assert release_rate({"released": "1", "first_release_at": "999"}, 1000.0) == pytest.approx(1 / 60)
