from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, UTCDateTime, utcnow

SECTION_GENERAL = "general"
SECTION_SEATED = "seated"

SEAT_AVAILABLE = "available"
SEAT_HELD = "held"
SEAT_SOLD = "sold"


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    venue: Mapped[str] = mapped_column(String(200), nullable=False)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    sale_opens_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    sale_closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # waiting-room settings
    admit_per_minute: Mapped[int] = mapped_column(Integer, nullable=False, default=600)
    max_active: Mapped[int] = mapped_column(Integer, nullable=False, default=1000)
    admission_window_seconds: Mapped[int] = mapped_column(Integer, nullable=False, default=600)
    prequeue_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=15)
    heartbeat_timeout_seconds: Mapped[int] = mapped_column(Integer, nullable=False, default=60)
    # proof of work asked at join: leading zero bits of SHA-1 (0: none; docs/security.md)
    pow_difficulty: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # adaptive: joins a second above which the difficulty rises (0: fixed), and how far it may rise
    # (app/queue/pow.py; 17 bits: about 3 s on a phone)
    pow_adaptive_threshold: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    pow_max_difficulty: Mapped[int] = mapped_column(Integer, nullable=False, default=17, server_default="17")
    # booking settings
    max_per_user: Mapped[int] = mapped_column(Integer, nullable=False, default=4)
    hold_seconds: Mapped[int] = mapped_column(Integer, nullable=False, default=300)
    # after the sell-out: refund policy (no deadline: refundable until the admin stops it) and
    # how long a waitlist offer stays open (docs/booking.md)
    refund_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    refund_fee_percent: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    offer_window_seconds: Mapped[int] = mapped_column(Integer, nullable=False, default=600, server_default="600")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # the sale is over and its Redis keys are gone (app/sales/lifecycle.py); nothing joins again
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    sections: Mapped[list[Section]] = relationship(back_populates="event", order_by="Section.id")


class Section(Base):
    __tablename__ = "sections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    price_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    capacity: Mapped[int] = mapped_column(Integer, nullable=False)
    # General admission inventory counters, changed only by conditional UPDATEs (booking.services).
    # `held` may include holds past their expiry until the sweeper (or a failing hold) releases them.
    sold: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    held: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # a section a priority lane reserves (VIP): its fans' alone until the lane's release time
    lane_id: Mapped[int | None] = mapped_column(ForeignKey("sale_lanes.id", ondelete="SET NULL"), nullable=True)

    event: Mapped[Event] = relationship(back_populates="sections")

    __table_args__ = (UniqueConstraint("event_id", "name", name="uq_sections_event_name"),)


class Seat(Base):
    __tablename__ = "seats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    section_id: Mapped[int] = mapped_column(ForeignKey("sections.id", ondelete="CASCADE"), nullable=False)
    row_label: Mapped[str] = mapped_column(String(8), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=SEAT_AVAILABLE)
    reservation_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (UniqueConstraint("section_id", "row_label", "number", name="uq_seats_position"),)

    @property
    def label(self) -> str:
        return f"{self.row_label}{self.number}"
