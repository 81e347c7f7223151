"""devices.verified_at: an e-mail address or phone number is used only once its owner proved it
with a code; users.email_verified_at: buying needs a verified e-mail; events.pow_difficulty: the
proof of work a sale asks at join (issue #11).

Rows that exist already were in use before verification existed: they count as verified (their
created_at), so an upgrade silences no one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("verified_at", app.db.UTCDateTime(), nullable=True))
    op.execute("UPDATE devices SET verified_at = created_at")
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email_verified_at", app.db.UTCDateTime(), nullable=True))
    op.execute("UPDATE users SET email_verified_at = created_at")
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("pow_difficulty", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("pow_difficulty")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email_verified_at")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("verified_at")
