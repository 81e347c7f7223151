"""`flask --app wsgi ...` commands: db, users, seed (events commands live in app.outbox.cli)."""

from __future__ import annotations

import os
from datetime import timedelta

import click
from alembic.config import Config
from flask import Flask, current_app
from flask.cli import AppGroup

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations")

db_cli = AppGroup("db", help="Database schema (Alembic migrations).")
users_cli = AppGroup("users", help="Manage user accounts.")
seed_cli = AppGroup("seed", help="Demo data.")


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(os.path.join(MIGRATIONS_DIR, "alembic.ini"))
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    cfg.set_main_option("sqlalchemy.url", (url or current_app.config["DATABASE_URL"]).replace("%", "%%"))
    return cfg


def upgrade_database(url: str | None = None, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Create or upgrade the schema to REVISION (default: head)."""
    upgrade_database(revision=revision)
    click.echo(f"database upgraded to {revision}")


@db_cli.command("downgrade")
@click.argument("revision", default="-1")
def db_downgrade(revision: str) -> None:
    """Downgrade the schema to REVISION (default: one step)."""
    from alembic import command

    command.downgrade(alembic_config(), revision)
    click.echo(f"database downgraded to {revision}")


@db_cli.command("current")
def db_current() -> None:
    """Show the schema revision of the database."""
    from alembic import command

    command.current(alembic_config())


@users_cli.command("create-admin")
@click.argument("email")
@click.option("--password", default=None, help="Required when the user does not exist yet.")
@click.option("--name", default=None)
def create_admin(email: str, password: str | None, name: str | None) -> None:
    """Create an admin user, or promote an existing user to admin."""
    from app.auth.services import create_or_promote_admin
    from app.db import transaction

    try:
        with transaction():
            user, created = create_or_promote_admin(email, password, name)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"{'created' if created else 'promoted'} admin {user.email} (id {user.id})")


@seed_cli.command("demo")
def seed_demo() -> None:
    """A demo event (idempotent): a general admission floor and a seated balcony, on sale now."""
    from sqlalchemy import select

    from app.catalogue.models import Event
    from app.catalogue.services import create_event, create_section
    from app.db import transaction, utcnow
    from app.extensions import db
    from app.queue.draws import make_commitment

    existing = db.session.scalar(select(Event).where(Event.name == "Demo Concert"))
    if existing is not None:
        click.echo(f"demo event already exists (id {existing.id})")
        return
    now = utcnow()
    with transaction():  # the event and both sections, or nothing
        event = create_event({
            "name": "Demo Concert", "venue": "Main Hall", "starts_at": now + timedelta(days=30),
            "sale_opens_at": now, "sale_closes_at": None, "admit_per_minute": 120, "max_active": 50,
            "admission_window_seconds": 600, "prequeue_minutes": 15, "heartbeat_timeout_seconds": 60,
            "max_per_user": 4, "hold_seconds": 300,
        })
        create_section(event.id, {"name": "Floor", "price_cents": 8900, "currency": "EUR", "capacity": 500})
        create_section(event.id, {"name": "Balcony", "price_cents": 12900, "currency": "EUR", "rows": 10,
                                  "seats_per_row": 20})
        make_commitment(event.id)  # its pre-queue draw's seed, as POST /api/events commits one
    click.echo(f"demo event created (id {event.id})")


def register_cli(app: Flask) -> None:
    from app.notifications.cli import notifications_cli
    from app.outbox.cli import events_cli

    for group in (db_cli, users_cli, seed_cli, events_cli, notifications_cli):
        app.cli.add_command(group)
