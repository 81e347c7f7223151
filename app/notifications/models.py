from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, new_uuid, utcnow

CHANNEL_PUSH = "push"
CHANNEL_EMAIL = "email"
CHANNEL_SMS = "sms"
CHANNEL_WEBPUSH = "webpush"  # a browser's Push API subscription: target is its endpoint


class Device(Base):
    """A channel a user can be reached on: a push token, an e-mail address or a phone number."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    channel: Mapped[str] = mapped_column(String(8), nullable=False)
    platform: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # token, address or phone; unique per user and channel so re-registering returns the same device
    target: Mapped[str] = mapped_column(String(512), nullable=False)
    target_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    endpoint_arn: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # a web push subscription's keys {p256dh, auth}: the payload is encrypted to them (RFC 8291)
    push_keys: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    # "push:<target_hash>" for push (a token belongs to one account at a time), NULL otherwise
    exclusive_key: Mapped[str | None] = mapped_column(String(72), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # e-mail and SMS are used only once the owner entered the code sent there; a push token is
    # proof of itself (it comes from the device), so it is verified when registered
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)

    @property
    def verified(self) -> bool:
        return self.verified_at is not None

    __table_args__ = (UniqueConstraint("user_id", "channel", "target_hash", name="uq_devices_user_target"),
                      UniqueConstraint("exclusive_key", name="uq_devices_exclusive_key"))


class Notification(Base):
    """One message to one device for one admission: the dedupe key makes re-runs harmless."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    dedupe_key: Mapped[str] = mapped_column(String(191), nullable=False, unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    event_id: Mapped[int] = mapped_column(Integer, nullable=False)
    device_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    channel: Mapped[str] = mapped_column(String(8), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False, default="admitted")
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    admitted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    admitted_until: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # what a notice sent straight to the account's e-mail is about (a receipt: its order's id)
    subject_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # set when a sender claims the row (status 'sending'); the send runs after that commit
    claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_notifications_user_created", "user_id", "created_at"),
                      Index("ix_notifications_claim_token", "claim_token"),
                      Index("ix_notifications_status_claimed", "status", "claimed_at"))
