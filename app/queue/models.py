"""What the waiting room keeps in MySQL: each sale's verifiable draw, and the final figures of a
closed sale (its Redis keys are deleted when it closes; app/sales/lifecycle.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
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
