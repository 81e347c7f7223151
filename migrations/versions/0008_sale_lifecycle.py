"""The sale lifecycle (issue #24): events.closed_at marks a sale closed (its Redis keys deleted),
and sale_summaries keeps the final figures that lived in Redis while the sale ran.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("closed_at", app.db.UTCDateTime(), nullable=True))
    op.create_table(
        "sale_summaries",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("closed_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("joined_total", sa.Integer(), nullable=False),
        sa.Column("admitted_total", sa.Integer(), nullable=False),
        sa.Column("expired_total", sa.Integer(), nullable=False),
        sa.Column("sections", sa.JSON(), nullable=False),
        sa.Column("waitlists", sa.JSON(), nullable=False),
        sa.Column("dead_letters", sa.JSON(), nullable=False),
        sa.Column("keys_deleted", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_sale_summaries_event_id_events",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id", name="pk_sale_summaries"),
        mysql_engine="InnoDB", mysql_charset="utf8mb4", mysql_collate="utf8mb4_unicode_ci",
    )


def downgrade() -> None:
    op.drop_table("sale_summaries")
    op.drop_column("events", "closed_at")
