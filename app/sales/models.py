"""What a sale's organiser runs beside the waiting room: the registration lottery of a presale
(app/sales/lottery.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class SaleLottery(Base):
    """A registration lottery (docs/waiting-room.md, "The registration lottery"): fans register
    until ``closes_at``; the draw, verifiable like the pre-queue's (the same algorithm, with its
    own committed seed), gives the first ``winners`` a single-use code of ``lane``. ``losers``:
    `waitlist` (a standby place, promoted in draw order) or `notice` ("not this time").
    ``code_key`` derives each winner's code, so only the code's SHA-256 is stored."""
    __tablename__ = "sale_lotteries"

    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    lane_id: Mapped[int] = mapped_column(ForeignKey("sale_lanes.id", ondelete="CASCADE"), nullable=False)
    winners: Mapped[int] = mapped_column(Integer, nullable=False)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    losers: Mapped[str] = mapped_column(String(16), nullable=False)
    codes_valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ticket_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seed: Mapped[str] = mapped_column(String(64), nullable=False)
    entrant_key: Mapped[str] = mapped_column(String(64), nullable=False)
    code_key: Mapped[str] = mapped_column(String(64), nullable=False)
    commitment: Mapped[str] = mapped_column(String(64), nullable=False)
    committed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    drawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    entrants: Mapped[int | None] = mapped_column(Integer, nullable=True)
    entrants_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    promoted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # standby places given codes
    codes_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LotteryEntry(Base):
    """One account's registration; ``place`` and ``outcome`` (won, standby, lost) once drawn."""
    __tablename__ = "lottery_entries"
    __table_args__ = (Index("ix_lottery_entries_place", "event_id", "place"),)

    event_id: Mapped[int] = mapped_column(ForeignKey("sale_lotteries.event_id", ondelete="CASCADE"),
                                          primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
                                         autoincrement=False)
    entrant_id: Mapped[str] = mapped_column(String(32), nullable=False)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    place: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    code_id: Mapped[int | None] = mapped_column(ForeignKey("access_codes.id", ondelete="SET NULL"), nullable=True)
