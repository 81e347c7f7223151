"""What the waiting room keeps in MySQL: each sale's verifiable draw, and the final figures of a
closed sale (its Redis keys are deleted when it closes; app/sales/lifecycle.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class SaleSummary(Base):
    __tablename__ = "sale_summaries"

    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    joined_total: Mapped[int] = mapped_column(Integer, nullable=False)
    admitted_total: Mapped[int] = mapped_column(Integer, nullable=False)
    expired_total: Mapped[int] = mapped_column(Integer, nullable=False)
    sections: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)  # gate.figures at close
    waitlists: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)  # each section's waitlist stats
    dead_letters: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)  # the parked requests
    keys_deleted: Mapped[int] = mapped_column(Integer, nullable=False)


class SaleDraw(Base):
    """The pre-queue's draw of one sale (docs/waiting-room.md, "A draw anyone can verify").

    ``seed`` is secret until the draw: only its SHA-256, ``commitment``, is public before. The
    ``entrant_key`` is never published: it turns a user id into the pseudonymous entrant id
    HMAC-SHA256(entrant_key, user id), which only the fan themself is told."""
    __tablename__ = "sale_draws"

    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    seed: Mapped[str] = mapped_column(String(64), nullable=False)  # hex of 32 random bytes
    entrant_key: Mapped[str] = mapped_column(String(64), nullable=False)  # hex of 32 random bytes
    commitment: Mapped[str] = mapped_column(String(64), nullable=False)  # SHA-256 of the seed's bytes, hex
    committed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    drawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # the seed is public from then
    entrants: Mapped[int | None] = mapped_column(Integer, nullable=True)
    entrants_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)  # SHA-256 of the ordered list


class DrawEntrant(Base):
    """One place of a published draw: the order is ``place`` 1, 2, ... (no user id is kept here)."""
    __tablename__ = "draw_entrants"
    __table_args__ = (Index("ix_draw_entrants_entrant", "event_id", "entrant_id"),)

    event_id: Mapped[int] = mapped_column(ForeignKey("sale_draws.event_id", ondelete="CASCADE"), primary_key=True)
    place: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    entrant_id: Mapped[str] = mapped_column(String(32), nullable=False)


class SaleLane(Base):
    """A priority lane of a sale (docs/waiting-room.md, "Presale codes and lanes"): fans who redeem
    one of its access codes wait in it, from ``opens_at`` (a presale opens before the sale), and
    are served at ``share_percent`` of the admissions while it holds anyone. The sections it
    reserves (``Section.lane_id``) are its fans' alone until ``sections_released_at``."""
    __tablename__ = "sale_lanes"
    __table_args__ = (UniqueConstraint("event_id", "name", name="uq_sale_lanes_event_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(32), nullable=False)
    share_percent: Mapped[int] = mapped_column(Integer, nullable=False)
    opens_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # None: with the sale
    sections_released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class AccessCode(Base):
    """One access code of a batch: only its SHA-256 is kept (the plain code is shown once, when the
    batch is made). ``email``: the one account's e-mail that may redeem it."""
    __tablename__ = "access_codes"
    __table_args__ = (Index("ix_access_codes_event_batch", "event_id", "batch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), nullable=False)
    lane_id: Mapped[int] = mapped_column(ForeignKey("sale_lanes.id", ondelete="CASCADE"), nullable=False)
    batch: Mapped[str] = mapped_column(String(64), nullable=False)
    digest: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    max_uses: Mapped[int] = mapped_column(Integer, nullable=False)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ticket_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class CodeRedemption(Base):
    """A redeemed code: the record of a CodeRedeemed event (the JOIN script spends the use in Redis;
    the queue-event drain writes this row in the same unit of work as the event's outbox row)."""
    __tablename__ = "code_redemptions"

    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    code_id: Mapped[int] = mapped_column(ForeignKey("access_codes.id", ondelete="CASCADE"), nullable=False, index=True)
    redeemed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
