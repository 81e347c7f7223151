"""devices: one row per push token (unique key); notifications: claim columns; reservations:
idempotency keys scoped per user and sale

A push token lives on one phone, so it belongs to one account. ``exclusive_key`` is
"push:<sha256 of the token>" for push devices and NULL for e-mail and SMS (which several accounts
may share). Its unique index lets registration upsert exactly one row instead of deleting by a
predicate that locked far more than that row (MariaDB deadlock 1213 under concurrent sign-ups).

Notifications are claimed before they are sent (status 'sending' with a claim token), so no row
lock is held across the SNS or SMTP call.

Idempotency keys are checked in the sale's Redis slot by the booking intake, so MySQL's unique key
becomes (user_id, event_id, idempotency_key) to match.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("exclusive_key", sa.String(length=72), nullable=True))
    conn = op.get_bind()
    # keep the newest registration of each push token (the phone's current owner)
    rows = conn.execute(sa.text("SELECT id, target_hash FROM devices WHERE channel = 'push' "
                                "ORDER BY updated_at DESC, id")).fetchall()
    seen: set[str] = set()
    for device_id, target_hash in rows:
        if target_hash in seen:
            conn.execute(sa.text("DELETE FROM devices WHERE id = :id"), {"id": device_id})
        else:
            seen.add(target_hash)
            conn.execute(sa.text("UPDATE devices SET exclusive_key = :key WHERE id = :id"),
                         {"key": f"push:{target_hash}", "id": device_id})
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_devices_exclusive_key", ["exclusive_key"])
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("claimed_at", app.db.UTCDateTime(), nullable=True))
        batch_op.create_index("ix_notifications_claim_token", ["claim_token"], unique=False)
        batch_op.create_index("ix_notifications_status_claimed", ["status", "claimed_at"], unique=False)
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_reservations_user_event_key", ["user_id", "event_id", "idempotency_key"])
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_constraint("uq_reservations_user_key", type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_reservations_user_key", ["user_id", "idempotency_key"])
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_constraint("uq_reservations_user_event_key", type_="unique")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_status_claimed")
        batch_op.drop_index("ix_notifications_claim_token")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("claim_token")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_constraint("uq_devices_exclusive_key", type_="unique")
        batch_op.drop_column("exclusive_key")
