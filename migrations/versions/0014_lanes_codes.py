"""Presale codes, priority lanes and the registration lottery (issue #31): a sale's lanes, their
access codes (hashed) and the codes redeemed; a section a lane reserves until its release; a
sale's lottery and its entries.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.create_table(
        "sale_lanes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("share_percent", sa.Integer(), nullable=False),
        sa.Column("opens_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("sections_released_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sale_lanes"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_sale_lanes_event_id_events", ondelete="CASCADE"),
        sa.UniqueConstraint("event_id", "name", name="uq_sale_lanes_event_name"),
        **TABLE,
    )
    op.create_table(
        "access_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("lane_id", sa.Integer(), nullable=False),
        sa.Column("batch", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("valid_from", app.db.UTCDateTime(), nullable=True),
        sa.Column("valid_until", app.db.UTCDateTime(), nullable=True),
        sa.Column("ticket_limit", sa.Integer(), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_codes"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_access_codes_event_id_events",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["lane_id"], ["sale_lanes.id"], name="fk_access_codes_lane_id_sale_lanes",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("digest", name="uq_access_codes_digest"),
        **TABLE,
    )
    op.create_index("ix_access_codes_event_batch", "access_codes", ["event_id", "batch"])
    op.create_table(
        "code_redemptions",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("code_id", sa.Integer(), nullable=False),
        sa.Column("redeemed_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "user_id", name="pk_code_redemptions"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_code_redemptions_event_id_events",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["code_id"], ["access_codes.id"], name="fk_code_redemptions_code_id_access_codes",
                                ondelete="CASCADE"),
        **TABLE,
    )
    op.create_index("ix_code_redemptions_code_id", "code_redemptions", ["code_id"])
    op.create_table(
        "sale_lotteries",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("lane_id", sa.Integer(), nullable=False),
        sa.Column("winners", sa.Integer(), nullable=False),
        sa.Column("closes_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("losers", sa.String(16), nullable=False),
        sa.Column("codes_valid_until", app.db.UTCDateTime(), nullable=True),
        sa.Column("ticket_limit", sa.Integer(), nullable=True),
        sa.Column("seed", sa.String(64), nullable=False),
        sa.Column("entrant_key", sa.String(64), nullable=False),
        sa.Column("code_key", sa.String(64), nullable=False),
        sa.Column("commitment", sa.String(64), nullable=False),
        sa.Column("committed_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("drawn_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("entrants", sa.Integer(), nullable=True),
        sa.Column("entrants_digest", sa.String(64), nullable=True),
        sa.Column("promoted", sa.Integer(), nullable=False),
        sa.Column("codes_synced_at", app.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_sale_lotteries"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_sale_lotteries_event_id_events",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["lane_id"], ["sale_lanes.id"], name="fk_sale_lotteries_lane_id_sale_lanes",
                                ondelete="CASCADE"),
        **TABLE,
    )
    op.create_table(
        "lottery_entries",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("entrant_id", sa.String(32), nullable=False),
        sa.Column("registered_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("place", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("code_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", "user_id", name="pk_lottery_entries"),
        sa.ForeignKeyConstraint(["event_id"], ["sale_lotteries.event_id"],
                                name="fk_lottery_entries_event_id_sale_lotteries", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_lottery_entries_user_id_users",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["code_id"], ["access_codes.id"], name="fk_lottery_entries_code_id_access_codes",
                                ondelete="SET NULL"),
        **TABLE,
    )
    op.create_index("ix_lottery_entries_place", "lottery_entries", ["event_id", "place"])
    with op.batch_alter_table("sections") as batch:
        batch.add_column(sa.Column("lane_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_sections_lane_id_sale_lanes", "sale_lanes", ["lane_id"], ["id"],
                                 ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("sections") as batch:
        batch.drop_constraint("fk_sections_lane_id_sale_lanes", type_="foreignkey")
        batch.drop_column("lane_id")
    op.drop_table("lottery_entries")
    op.drop_table("sale_lotteries")
    op.drop_table("code_redemptions")
    op.drop_table("access_codes")
    op.drop_table("sale_lanes")
