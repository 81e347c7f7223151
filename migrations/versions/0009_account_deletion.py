"""users.deleted_at: an account deleted by its owner (issue #25). The row stays, anonymised, because
orders and payments refer to it; its sessions and tokens are revoked.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("deleted_at", app.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "deleted_at")
