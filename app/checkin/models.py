"""The door: who may scan tickets of an event, and every scan."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow

# the answers of a scan (docs/checkin.md)
ADMITTED = "admitted"
ALREADY_USED = "already_used"
REFUNDED = "refunded"
WRONG_EVENT = "wrong_event"
INVALID = "invalid"
RESULTS = (ADMITTED, ALREADY_USED, REFUNDED, WRONG_EVENT, INVALID)


class EventStaff(Base):
    """A user who may check tickets in at one event's doors (granted by an admin)."""

    __tablename__ = "event_staff"

    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    granted_by: Mapped[int] = mapped_column(Integer, nullable=False)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class Scan(Base):
    """One scan at a door, whatever its answer: who, when, which gate, what came of it."""

    __tablename__ = "checkin_scans"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True,
                                    autoincrement=True)
    event_id: Mapped[int] = mapped_column(Integer, nullable=False)
    ticket_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    staff_user_id: Mapped[int] = mapped_column(Integer, nullable=False)
    gate: Mapped[str] = mapped_column(String(64), nullable=False)
    result: Mapped[str] = mapped_column(String(16), nullable=False)
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    __table_args__ = (Index("ix_checkin_scans_event_scanned", "event_id", "scanned_at"),
                      Index("ix_checkin_scans_ticket", "ticket_id"))
