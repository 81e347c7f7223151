"""payments: one row per attempt to pay for a hold. The attempt is recorded before the provider is
called and finished after, so confirm holds no row lock across the call; the sweeper finishes an
attempt whose process died in between (issue #16).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("reservation_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("provider_ref", sa.String(128), nullable=True),
        sa.Column("decline_reason", sa.String(64), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["reservation_id"], ["reservations.id"],
                                name=op.f("fk_payments_reservation_id_reservations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci",
    )
    op.create_index("ix_payments_reservation_id", "payments", ["reservation_id"])
    op.create_index("ix_payments_status_updated", "payments", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_payments_status_updated", table_name="payments")
    op.drop_index("ix_payments_reservation_id", table_name="payments")
    op.drop_table("payments")
