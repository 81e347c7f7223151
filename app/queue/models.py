"""What the waiting room keeps in MySQL: the final figures of a closed sale (its Redis keys are
deleted when it closes; app/sales/lifecycle.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer
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
