"""Small flows shared by tests: joining and being admitted, polling a reservation."""

from __future__ import annotations

from typing import Any

from tests.support import wait_for


def events_of(app, type_: str, aggregate_id: int | str | None = None) -> list[dict[str, Any]]:
    """The data of every outbox event of a type (of one aggregate, if given), oldest first."""
    from sqlalchemy import select

    from app.extensions import db
    from app.outbox.models import OutboxEvent

    query = select(OutboxEvent).where(OutboxEvent.type == type_).order_by(OutboxEvent.id)
    if aggregate_id is not None:
        query = query.where(OutboxEvent.aggregate_id == str(aggregate_id))
    with app.app_context():
        data = [row.data for row in db.session.scalars(query)]
        db.session.rollback()
        return data


def advance(app, event_id: int, force: int = 0):
    from app.queue.services import advance as run

    with app.app_context():
        return run(event_id, force=force)


def admitted_pass(client, app, event_id: int, user: dict[str, Any]) -> str:
    """Join the sale's queue, be admitted (operator-forced), return the admission pass."""
    r = client.post(f"/api/queue/{event_id}/join", headers=user["headers"])
    assert r.status_code == 202, r.json
    advance(app, event_id, force=1)
    status = client.get(f"/api/queue/{event_id}/status", headers=user["headers"]).json
    assert status["status"] == "admitted", status
    return status["admission_token"]


def wait_reservation(client, user: dict[str, Any], reservation_id: str, until: set[str] | None = None,
                     timeout: float = 20) -> dict[str, Any]:
    until = until or {"held", "confirmed", "rejected", "expired", "cancelled"}

    def done():
        body = client.get(f"/api/tickets/status/{reservation_id}", headers=user["headers"]).json
        return body if body["status"] in until else None

    return wait_for(done, timeout=timeout, interval=0.1, message=f"reservation {reservation_id} in {until}")


def code_sent_to(target: str, smtp_sink: Any = None) -> str | None:
    """The latest 6-digit verification code sent to a phone number (moto's SMS log) or an e-mail
    address (the SMTP sink), or None while none has arrived."""
    import re

    from tests.support import moto_sns_backend

    if target.startswith("+"):
        texts = [text for phone, text in moto_sns_backend().sms_messages.values() if phone == target]
    else:
        texts = [m["data"] for m in smtp_sink.messages if target in m["to"]]
    codes = [m.group(1) for text in texts if (m := re.search(r"(?:code is|코드는) (\d{6})", text))]
    return codes[-1] if codes else None
