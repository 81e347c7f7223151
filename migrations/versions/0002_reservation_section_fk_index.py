"""reservations: a section_id index of its own for the foreign key

InnoDB enforces a foreign key through the first index that starts with its column. That was
(section_id, status), so every status change of a reservation re-checked the FK and took a shared
lock on the section row, the hottest row of a sale. With a plain (section_id) index serving the
FK, status changes no longer touch the section row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index("ix_reservations_section_id", ["section_id"], unique=False)
    # re-create the composite index so InnoDB moves the FK to the new single-column one
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_reservations_section_status")
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.create_index("ix_reservations_section_status", ["section_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_reservations_section_id")
