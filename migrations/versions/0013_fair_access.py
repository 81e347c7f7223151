"""Fair access (issue #31): a draw anyone can verify (each sale's committed seed and, once drawn,
the published order of its pre-queue's pseudonymous entrants), and a proof of work that rises with
the join rate (the rate above which it rises, and its bound).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.create_table(
        "sale_draws",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("seed", sa.String(64), nullable=False),
        sa.Column("entrant_key", sa.String(64), nullable=False),
        sa.Column("commitment", sa.String(64), nullable=False),
        sa.Column("committed_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("drawn_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("entrants", sa.Integer(), nullable=True),
        sa.Column("entrants_digest", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_sale_draws"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_sale_draws_event_id_events",
                                ondelete="CASCADE"),
        **TABLE,
    )
    op.create_table(
        "draw_entrants",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("place", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("entrant_id", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "place", name="pk_draw_entrants"),
        sa.ForeignKeyConstraint(["event_id"], ["sale_draws.event_id"], name="fk_draw_entrants_event_id_sale_draws",
                                ondelete="CASCADE"),
        **TABLE,
    )
    op.create_index("ix_draw_entrants_entrant", "draw_entrants", ["event_id", "entrant_id"])
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("pow_adaptive_threshold", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("pow_max_difficulty", sa.Integer(), nullable=False, server_default="17"))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("pow_max_difficulty")
        batch.drop_column("pow_adaptive_threshold")
    op.drop_table("draw_entrants")
    op.drop_table("sale_draws")
