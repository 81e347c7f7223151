"""Alembic environment: the models' metadata, the URL from the Flask config or the settings."""

from __future__ import annotations

from alembic import context

from app.db import Base, make_engine
from app.models import import_all_models
from app.settings import process_settings

import_all_models()
config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or process_settings().DATABASE_URL


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    settings = process_settings()
    engine = make_engine(_url(), tls=settings.database_tls, tls_ca=settings.DATABASE_TLS_CA)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
