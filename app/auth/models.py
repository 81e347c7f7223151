from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # BCP-47 language tag used for notification texts ("en", "ko")
    locale: Mapped[str] = mapped_column(String(8), nullable=False, default="en")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # buying needs a verified e-mail (REQUIRE_VERIFIED_EMAIL; app/auth/verification.py)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # deleted by its owner: anonymised (orders keep their buyer), every session and token revoked
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # the verified account e-mail is a notice channel by default (admissions, offers, refunds);
    # the owner may turn it off (PATCH /api/auth/me)
    notify_by_email: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, server_default="1")

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def roles(self) -> list[str]:
        return ["user", "admin"] if self.is_admin else ["user"]
