"""Orders, tickets and check-in (issue #26): one order per paid reservation with its lines, one
ticket per seat or unit, the staff of an event's doors and every scan; and the subject of a
notice sent straight to an account's e-mail (a receipt's order).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci"}


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("number", sa.String(16), nullable=False),
        sa.Column("reservation_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("subtotal_cents", sa.BigInteger(), nullable=False),
        sa.Column("fee_cents", sa.BigInteger(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("payment_id", sa.String(36), nullable=False),
        sa.Column("payment_ref", sa.String(128), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint("number", name="uq_orders_number"),
        sa.UniqueConstraint("reservation_id", name="uq_orders_reservation_id"),
        sa.ForeignKeyConstraint(["reservation_id"], ["reservations.id"], name="fk_orders_reservation_id_reservations"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_orders_user_id_users"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_orders_event_id_events"),
        **TABLE,
    )
    op.create_index("ix_orders_user_created", "orders", ["user_id", "created_at"])
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("unit", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("section_id", sa.Integer(), nullable=False),
        sa.Column("seat_id", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("holder_user_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("checked_in_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("checked_in_gate", sa.String(64), nullable=True),
        sa.Column("checked_in_by", sa.Integer(), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tickets"),
        sa.UniqueConstraint("order_id", "unit", name="uq_tickets_order_unit"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_tickets_order_id_orders"),
        **TABLE,
    )
    op.create_index("ix_tickets_event_section", "tickets", ["event_id", "section_id"])
    op.create_index("ix_tickets_holder", "tickets", ["holder_user_id"])
    op.create_table(
        "event_staff",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("granted_by", sa.Integer(), nullable=False),
        sa.Column("granted_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "user_id", name="pk_event_staff"),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name="fk_event_staff_event_id_events", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_event_staff_user_id_users", ondelete="CASCADE"),
        **TABLE,
    )
    op.create_table(
        "checkin_scans",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.String(36), nullable=True),
        sa.Column("staff_user_id", sa.Integer(), nullable=False),
        sa.Column("gate", sa.String(64), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("scanned_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_checkin_scans"),
        **TABLE,
    )
    op.create_index("ix_checkin_scans_event_scanned", "checkin_scans", ["event_id", "scanned_at"])
    op.create_index("ix_checkin_scans_ticket", "checkin_scans", ["ticket_id"])
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("subject_id", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("subject_id")
    op.drop_table("checkin_scans")
    op.drop_table("event_staff")
    op.drop_table("tickets")
    op.drop_table("orders")
