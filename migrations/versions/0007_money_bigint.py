"""Money columns hold what the API accepts: BIGINT cents (issue #24). A section may cost
100,000,000 cents and an event allow 100 tickets per user, so one order can reach 10^10 cents,
past INT's 2,147,483,647: such a reservation was accepted (202) and then dead-lettered.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

MONEY = (("reservations", "amount_cents"), ("refunds", "amount_cents"), ("refunds", "fee_cents"),
         ("payments", "amount_cents"), ("sections", "price_cents"))


def upgrade() -> None:
    for table, column in MONEY:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=False)


def downgrade() -> None:
    for table, column in MONEY:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False)
