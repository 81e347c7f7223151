"""Confirm in three steps: no row lock is held while the payment provider answers, and an
attempt interrupted by a crash is finished by the sweeper (the fake provider keeps a ledger, as a
real one does, so the sweeper can ask it what came of a charge)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text

from app.booking.models import Payment, Reservation
from app.extensions import db
from tests.integration.test_after_sale import hold
from tests.support import wait_for


def payments_of(app, reservation_id: str) -> list[str]:
    with app.app_context():
        rows = db.session.scalars(select(Payment.status).where(Payment.reservation_id == reservation_id)
                                  .order_by(Payment.created_at)).all()
        db.session.rollback()
        return list(rows)


def test_a_slow_provider_holds_no_row_lock_a_concurrent_reader_goes_through(app, client, worker, make_event,
                                                                             make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    user = make_user()
    rid = hold(client, app, event["id"], event["sections"][0]["id"], user)
    answer: dict = {}

    def pay() -> None:
        answer["response"] = client.post(f"/api/tickets/{rid}/confirm", json={"payment_token": "tok_ok_slow"},
                                         headers=user["headers"])
        answer["at"] = time.monotonic()

    payer = threading.Thread(target=pay)
    payer.start()
    # the attempt is recorded: the provider is answering now (1.5 s)
    wait_for(lambda: payments_of(app, rid) == ["pending"], timeout=10, interval=0.05, message="the attempt")
    with app.app_context(), db.engine.connect() as conn:
        conn.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
        locked_at = time.monotonic()
        # the row lock a second confirm, a cancel or the sweeper would take: not held by the payer
        row = conn.execute(text("SELECT status FROM reservations WHERE id = :id FOR UPDATE"), {"id": rid}).one()
        got_it = time.monotonic()
        conn.rollback()
    assert row.status == "held" and got_it - locked_at < 0.5
    assert payments_of(app, rid) == ["pending"]
    payer.join(10)
    assert got_it < answer["at"]  # the reader went through while the provider was still answering
    assert answer["response"].status_code == 200 and answer["response"].json["status"] == "confirmed"
    assert payments_of(app, rid) == ["approved"]


def test_a_hold_cancelled_while_the_provider_answers_is_not_sold_and_the_charge_is_refunded(
        app, client, worker, make_event, make_user):
    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    user = make_user()
    rid = hold(client, app, event["id"], event["sections"][0]["id"], user)
    answer: dict = {}
    payer = threading.Thread(target=lambda: answer.setdefault("r", client.post(
        f"/api/tickets/{rid}/confirm", json={"payment_token": "tok_ok_slow"}, headers=user["headers"])))
    payer.start()
    wait_for(lambda: payments_of(app, rid) == ["pending"], timeout=10, interval=0.05, message="the attempt")
    assert client.post(f"/api/tickets/{rid}/cancel", headers=user["headers"]).status_code == 200
    payer.join(10)
    assert answer["r"].status_code == 409 and answer["r"].json["reason"] == "hold_expired"
    assert "refunded" in answer["r"].json["message"]
    assert payments_of(app, rid) == ["voided"]
    with app.app_context():
        assert db.session.get(Reservation, rid).status == "cancelled"
        db.session.rollback()


def test_the_sweeper_finishes_a_payment_whose_process_died(app, client, worker, make_event, make_user):
    from app.booking import flows, services
    from app.booking.payments import get_provider
    from app.db import transaction

    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    user, other = make_user(), make_user()
    charged = hold(client, app, event["id"], event["sections"][0]["id"], user)
    never = hold(client, app, event["id"], event["sections"][0]["id"], other)
    with app.app_context():
        # died after the provider charged, before the answer was recorded
        with transaction():
            attempt = services.start_payment(charged, user["id"])
        get_provider("fake").charge(amount_cents=attempt.amount_cents, currency=attempt.currency, token="tok_ok_visa",
                                    idempotency_key=attempt.id)
        # died before the provider was called
        with transaction():
            services.start_payment(never, other["id"])
        busy = client.post(f"/api/tickets/{never}/confirm", json={"payment_token": "tok_ok_visa"},
                           headers=other["headers"])
        assert busy.status_code == 409 and busy.json["reason"] == "payment_in_progress"
        assert flows.sweep_pending_payments(older_than_seconds=0) == 2
        assert flows.sweep_pending_payments(older_than_seconds=0) == 0
        assert db.session.get(Reservation, charged).status == "confirmed"
        assert db.session.get(Reservation, never).status == "held"
        db.session.rollback()
    assert payments_of(app, charged) == ["approved"]
    assert payments_of(app, never) == ["declined"]
    again = client.post(f"/api/tickets/{never}/confirm", json={"payment_token": "tok_ok_visa"},
                        headers=other["headers"])
    assert again.status_code == 200 and again.json["status"] == "confirmed"


def test_row_locks_need_a_unit_of_work_and_no_provider_call_runs_under_one(app, make_event):
    from app.booking.payments import get_provider
    from app.catalogue.models import Section
    from app.db import lock_rows, transaction

    event = make_event(sections=[{"name": "Floor", "capacity": 5}])
    section_id = event["sections"][0]["id"]
    locking = select(Section).where(Section.id == section_id).with_for_update()
    with app.app_context():
        with pytest.raises(RuntimeError, match="inside a transaction"):
            lock_rows(db.session, locking)
        db.session.rollback()
        with pytest.raises(RuntimeError, match="holding row locks"), transaction() as session:
            lock_rows(session, locking)
            get_provider("fake").charge(amount_cents=100, currency="EUR", token="tok_ok_visa",
                                        idempotency_key="under-a-lock")
        # after the unit ends, the same call goes through
        assert get_provider("fake").charge(amount_cents=100, currency="EUR", token="tok_ok_visa",
                                           idempotency_key="after-the-unit").approved
