"""Orders and tickets: what a fan bought and what gets them through the door.

An order is one paid reservation, written in the transaction that confirms it
(app/booking/services.finish_payment): its number, its lines as they were charged, and one
ticket per seat or general-admission unit. A ticket names its holder apart from the order's
buyer, so a transfer later changes the holder and never rewrites the order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, new_uuid, utcnow

TICKET_VALID = "valid"
TICKET_REFUNDED = "refunded"


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    # what a fan reads over the phone: Crockford base32 (no I, L, O, U), e.g. 7KQ-M4X2-9PZ
    number: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id"), nullable=False, unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    # integer minor units of the currency (KRW has none: 45000 is 45,000 won)
    subtotal_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    fee_cents: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    total_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # the lines as they were charged (a later price change does not rewrite a receipt)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    payment_id: Mapped[str] = mapped_column(String(36), nullable=False)
    payment_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    __table_args__ = (Index("ix_orders_user_created", "user_id", "created_at"),)


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), nullable=False)
    unit: Mapped[int] = mapped_column(Integer, nullable=False)  # 1..n within the order
    event_id: Mapped[int] = mapped_column(Integer, nullable=False)
    section_id: Mapped[int] = mapped_column(Integer, nullable=False)
    seat_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: general admission
    label: Mapped[str] = mapped_column(String(32), nullable=False)  # "A12", or "GA 2"
    price_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    holder_user_id: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=TICKET_VALID)
    # set once, by the one scan that admits it (a conditional UPDATE: app/checkin/services.py)
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    checked_in_gate: Mapped[str | None] = mapped_column(String(64), nullable=True)
    checked_in_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    __table_args__ = (
        UniqueConstraint("order_id", "unit", name="uq_tickets_order_unit"),
        Index("ix_tickets_event_section", "event_id", "section_id"),
        Index("ix_tickets_holder", "holder_user_id"),
    )
