"""A live sale's figures for its organiser (the API's stats, the console, the CLI): the waiting
room's, each section's, the waitlists', the holds about to end and the outbox lag."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from app.booking.models import HELD, Reservation
from app.booking.waitlist import stats as waitlist_stats
from app.catalogue.models import Section
from app.extensions import db
from app.inventory.gate import figures as section_figures
from app.outbox.relay import lag
from app.queue.services import line_figures


def stats(event_id: int) -> dict[str, Any]:
    figures = line_figures(event_id)
    now = time.time()
    sections = db.session.scalars(select(Section).where(Section.event_id == event_id).order_by(Section.id)).all()
    soon = datetime.fromtimestamp(now + 60, UTC)
    expiring = db.session.scalar(select(func.count()).select_from(Reservation).where(
        Reservation.event_id == event_id, Reservation.status == HELD, Reservation.hold_expires_at <= soon))
    shown = section_figures(list(sections))
    return {**figures,
            "waitlists": waitlist_stats(event_id),
            "sections": [{"id": s.id, "name": s.name, **shown[s.id]} for s in sections],
            "holds_expiring_60s": int(expiring or 0),
            "outbox_lag_seconds": round(lag()["oldest_age_seconds"], 1)}
