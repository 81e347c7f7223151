"""Refunds and the waitlist (issue #13): a refund policy and an offer window per event, and one
`refunds` row per refunded reservation (the intent is recorded before the provider is called, so
a crash between the two is finished by the sweeper).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("refund_deadline", app.db.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("refund_fee_percent", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("offer_window_seconds", sa.Integer(), nullable=False, server_default="600"))
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("reservation_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("fee_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("requested_by", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("provider_ref", sa.String(128), nullable=True),
        sa.Column("decline_reason", sa.String(64), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["reservation_id"], ["reservations.id"],
                                name=op.f("fk_refunds_reservation_id_reservations")),
        sa.UniqueConstraint("reservation_id", name="uq_refunds_reservation_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        # as every table (0001): the key it refers to must have the same collation
        mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_refunds_status_updated", "refunds", ["status", "updated_at"])
    op.create_index("ix_refunds_event_id", "refunds", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_refunds_event_id", table_name="refunds")
    op.drop_index("ix_refunds_status_updated", table_name="refunds")
    op.drop_table("refunds")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("offer_window_seconds")
        batch.drop_column("refund_fee_percent")
        batch.drop_column("refund_deadline")
