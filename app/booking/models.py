from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, new_uuid, utcnow
from app.inventory.units import HeldUnits

PENDING = "pending"
HELD = "held"
CONFIRMED = "confirmed"
REJECTED = "rejected"
EXPIRED = "expired"
CANCELLED = "cancelled"
REFUNDED = "refunded"
FINAL_STATES = {CONFIRMED, REJECTED, EXPIRED, CANCELLED, REFUNDED}


class Reservation(Base):
    __tablename__ = "reservations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), nullable=False)
    section_id: Mapped[int] = mapped_column(ForeignKey("sections.id"), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    seat_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=PENDING)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(128), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    payment_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        # the idempotency key is scoped per user and sale (as the intake checks it in the sale's slot)
        UniqueConstraint("user_id", "event_id", "idempotency_key", name="uq_reservations_user_event_key"),
        Index("ix_reservations_status_expiry", "status", "hold_expires_at"),
        Index("ix_reservations_user_event", "user_id", "event_id"),
        Index("ix_reservations_section_status", "section_id", "status"),
        # serves the section FK, so status changes never lock the section row (migration 0002)
        Index("ix_reservations_section_id", "section_id"),
    )

    def units(self) -> HeldUnits:
        """Its units, as inventory takes and returns them (app/inventory/units.py)."""
        return HeldUnits(self.event_id, self.section_id, self.id, self.quantity, self.seat_ids, self.user_id)


class Refund(Base):
    """A refund of one confirmed reservation. Recorded (``pending``) and committed before the
    provider is called, finished (``succeeded`` or ``declined``) after; the sweeper finishes one
    whose process died in between. The refund id is the provider's idempotency key."""

    __tablename__ = "refunds"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id"), nullable=False)
    user_id: Mapped[int] = mapped_column(Integer, nullable=False)
    event_id: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    amount_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    fee_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    requested_by: Mapped[int] = mapped_column(Integer, nullable=False)
    reason: Mapped[str] = mapped_column(String(64), nullable=False)
    provider_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decline_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("reservation_id", name="uq_refunds_reservation_id"),
        Index("ix_refunds_status_updated", "status", "updated_at"),
        Index("ix_refunds_event_id", "event_id"),
    )


class Payment(Base):
    """One attempt to pay for a hold: ``pending`` (recorded and committed before the provider is
    called), then ``approved``, ``declined`` or ``voided`` (approved for a hold that was gone by
    the time the answer came: the charge is refunded). The id is the provider's idempotency key."""

    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    amount_cents: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    provider_ref: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decline_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_payments_reservation_id", "reservation_id"),
        Index("ix_payments_status_updated", "status", "updated_at"),
    )


def reservation_event_data(r: Reservation | dict[str, Any], status: str | None = None,
                           **extra: Any) -> dict[str, Any]:
    """The payload of a reservation's domain events (SeatsHeld, ReservationConfirmed, ...), from a
    row or from the request record the hold writer writes it from."""
    get = r.get if isinstance(r, dict) else lambda name: getattr(r, name)
    data = {"reservation_id": get("id"), "user_id": get("user_id"), "event_id": get("event_id"),
            "section_id": get("section_id"), "quantity": get("quantity"), "seat_ids": get("seat_ids"),
            "amount_cents": get("amount_cents"), "currency": get("currency"), "status": status or get("status")}
    data.update(extra)
    return data


class ProviderEvent(Base):
    """A payment provider's webhook event, recorded once it was applied: a redelivery is a no-op."""

    __tablename__ = "provider_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), nullable=False)
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
