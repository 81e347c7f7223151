"""Web Push and the account's e-mail as a channel (issue #27): a device may be a browser's push
subscription, whose payload is encrypted to its keys; and an account may turn off notices to its
own verified e-mail, a channel by default.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("push_keys", sa.JSON(), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("notify_by_email", sa.Boolean(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("notify_by_email")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("push_keys")
