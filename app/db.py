"""Database engine, declarative base and the request/task-scoped session.

One ``Database`` object per process; ``db.session`` is a scoped session (thread- or
greenlet-local) removed at the end of every request and every Celery task.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import DateTime, MetaData, Table, create_engine, make_url
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker
from sqlalchemy.types import TypeDecorator

T = TypeVar("T")
P = ParamSpec("P")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator):
    """Timestamps are stored as naive UTC (MySQL DATETIME has no zone) and returned tz-aware."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        # microseconds: event order, latencies and hold deadlines need sub-second precision
        return dialect.type_descriptor(mysql.DATETIME(fsp=6))

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def epoch_text(value: datetime | None) -> str:
    """A time as the sale's Redis hashes and scripts hold it: epoch seconds to the microsecond, or
    "" for none."""
    return "" if value is None else f"{value.timestamp():.6f}"


def new_uuid() -> str:
    return str(uuid.uuid4())


_TLS_CONTEXT: ssl.SSLContext | None = None


def _mysql_tls(tls: bool, tls_ca: str) -> dict[str, Any]:
    """TLS set explicitly (PyMySQL otherwise tries it on every new connection and builds a fresh
    SSLContext, CA bundle included, each time): off, or on with one context shared by every
    connection of the process (DATABASE_TLS, DATABASE_TLS_CA in app/settings.py)."""
    global _TLS_CONTEXT
    if not tls:
        return {"ssl_disabled": True}
    if _TLS_CONTEXT is None:
        _TLS_CONTEXT = ssl.create_default_context(cafile=tls_ca or None)
    return {"ssl": _TLS_CONTEXT}


class UnsupportedDatabase(ValueError):
    """The record is MySQL/MariaDB: row locks, READ COMMITTED and ON DUPLICATE KEY are the core."""


def make_engine(url: str, pool_size: int = 20, tls: bool = False, tls_ca: str = "") -> Engine:
    if not url.startswith(("mysql", "mariadb")):
        raise UnsupportedDatabase(f"DATABASE_URL must name a MySQL/MariaDB database (mysql+pymysql://...), "
                                  f"got {make_url(url).drivername}://...")
    connect_args = {"charset": "utf8mb4", "init_command": "SET SESSION innodb_lock_wait_timeout=5",
                    **_mysql_tls(tls, tls_ca)}
    return create_engine(
        url,
        # READ COMMITTED: conditional UPDATEs see the latest committed counts and InnoDB takes no
        # gap locks, so concurrent holds on different rows do not block each other
        isolation_level="READ COMMITTED",
        pool_pre_ping=True,
        pool_recycle=1800,
        # a fixed pool: under gevent, overflow connections were opened and closed per request
        # (connect + TLS set-up on the hot path); a request waits for a pooled connection instead
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=30,
        connect_args=connect_args,
    )


# MySQL/MariaDB: lock wait timeout, deadlock. Both mean "busy": roll back and try again.
BUSY_ERRORS = {1205, 1213}


def is_busy(exc: OperationalError) -> bool:
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    return code in BUSY_ERRORS


DUPLICATE_KEY = 1062  # ER_DUP_ENTRY


def is_duplicate_key(exc: Exception) -> bool:
    """An IntegrityError from a unique key (not a foreign key, not a NOT NULL)."""
    orig = getattr(exc, "orig", None)
    return bool(orig is not None and orig.args and orig.args[0] == DUPLICATE_KEY)


def retry_when_busy(session: Session, fn: Callable[[], T], *, attempts: int, first_delay: float,
                    max_delay: float = 2.0) -> T:
    """Run ``fn`` (a transaction that commits), rolling back and retrying with exponential backoff
    and jitter while MySQL answers "busy" (lock wait timeout, deadlock); other errors propagate."""
    for attempt in range(attempts):
        try:
            return fn()
        except OperationalError as exc:
            session.rollback()
            if not is_busy(exc) or attempt == attempts - 1:
                raise
            time.sleep(min(max_delay, first_delay * 2**attempt) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def upsert(session: Session, table: Table, rows: list[dict[str, Any]], conflict: list[str],
           update: list[str]) -> None:
    """INSERT ... ON DUPLICATE KEY UPDATE: one statement that touches exactly the row named by the
    unique key ``conflict`` (MySQL infers it from the table's unique keys; named for the reader)."""
    if not rows:
        return
    stmt = mysql.insert(table)
    stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in update})
    session.execute(stmt, rows)


def insert_ignore(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Multi-row INSERT that skips rows whose unique key exists already (re-runs add nothing)."""
    if not rows:
        return
    session.execute(mysql.insert(table).prefix_with("IGNORE"), rows)


def _driver_value(value: Any) -> Any:
    if isinstance(value, datetime):  # naive UTC, as UTCDateTime stores it, to the microsecond
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, (dict, list)):  # JSON columns
        return json.dumps(value, separators=(",", ":"))
    return value


def bulk_insert(session: Session, table: Table, rows: list[dict[str, Any]], *, ignore: bool = False) -> int:
    """Multi-row INSERT through the driver's ``executemany`` (PyMySQL sends one statement for all
    rows), without SQLAlchemy's per-row parameter processing: the hold writer's hot path.
    Values are plain: str/int/None, datetimes (stored as naive UTC) and JSON dicts/lists.
    ``ignore``: INSERT IGNORE, rows whose unique key exists already are skipped (re-runs add nothing).
    Returns the number of rows inserted."""
    if not rows:
        return 0
    columns = list(rows[0])
    connection = session.connection()
    mark = "%s"  # PyMySQL's paramstyle
    quote = connection.dialect.identifier_preparer.quote
    sql = (f"INSERT {'IGNORE ' if ignore else ''}INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
           f"VALUES ({', '.join([mark] * len(columns))})")
    return connection.exec_driver_sql(sql, [tuple(_driver_value(row[c]) for c in columns) for row in rows]).rowcount


def bulk_update(session: Session, table: Table, key: str, rows: list[dict[str, Any]],
                where: dict[str, Any] | None = None) -> int:
    """Many rows, each with its own values, in one UPDATE statement (``SET c = CASE key WHEN ...
    THEN ... END``) instead of one round trip per row (PyMySQL's ``executemany`` batches only
    INSERTs). Every row names ``key`` and the same columns; ``where`` adds equality conditions
    that every row must also meet (a claim token). Values as for ``bulk_insert``. Returns the
    number of rows matched."""
    if not rows:
        return 0
    connection = session.connection()
    quote = connection.dialect.identifier_preparer.quote
    columns = [c for c in rows[0] if c != key]
    params: list[Any] = []
    assignments = []
    for column in columns:
        assignments.append(f"{quote(column)} = CASE {quote(key)}{' WHEN %s THEN %s' * len(rows)} END")
        for row in rows:
            params += (row[key], _driver_value(row[column]))
    conditions = [f"{quote(key)} IN ({', '.join(['%s'] * len(rows))})"]
    params += (row[key] for row in rows)
    for column, value in (where or {}).items():
        conditions.append(f"{quote(column)} = %s")
        params.append(_driver_value(value))
    sql = f"UPDATE {quote(table.name)} SET {', '.join(assignments)} WHERE {' AND '.join(conditions)}"
    return connection.exec_driver_sql(sql, tuple(params)).rowcount


class Database:
    """Holds the engine and the scoped session of this process."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._factory: sessionmaker[Session] | None = None
        self.session: scoped_session[Session] = scoped_session(self._make_session)

    def _make_session(self) -> Session:
        if self._factory is None:
            raise RuntimeError("Database is not initialised: call db.init(url) or create_app()")
        return self._factory()

    def init(self, url: str, pool_size: int = 20, tls: bool = False, tls_ca: str = "") -> None:
        if self.engine is not None and str(self.engine.url) == url:
            return
        if self.engine is not None:
            self.session.remove()
            self.engine.dispose()
        self.engine = make_engine(url, pool_size=pool_size, tls=tls, tls_ca=tls_ca)
        self._factory = sessionmaker(bind=self.engine, expire_on_commit=False)

    @property
    def is_mysql(self) -> bool:
        return self.engine is not None and self.engine.dialect.name in {"mysql", "mariadb"}

    def new_session(self) -> Session:
        """A session outside the scoped registry (e.g. to record a failure after a rollback)."""
        return self._make_session()

    def remove(self) -> None:
        """End the request's or task's session. A connection that died under it (killed by the
        server, a failover) makes the closing rollback fail: that connection is discarded and the
        pool opens a fresh one next time; the answer has already been decided, so nothing
        propagates from here (teardown runs outside the error handlers: it would be an HTML 500)."""
        try:
            self.session.remove()
        except Exception:  # noqa: BLE001 - see above
            log.warning("discarding a session whose connection failed on close", exc_info=True)
            try:
                self.session.invalidate()
            except Exception:  # noqa: BLE001
                pass
            self.session.registry.clear()


db = Database()


# --- units of work ------------------------------------------------------------------------------
# One owner per unit of work: the view, task, CLI command or process loop (hold writer, outbox
# relay) opens it with ``transaction()``; services only add, flush and lock. A flow that calls a
# provider between two units (confirm, refund, notification delivery) opens one before the call and
# one after, so no row lock is ever held across the network (docs/architecture.md).

_DEPTH = "tickets.transaction_depth"
_LOCKED = "tickets.row_locks"
# After-commit work (app/tasking.call_after_commit) of a transaction() block runs once commit()
# has returned, so it may use the session again (inside SQLAlchemy's after_commit event it may not).
DEFER_AFTER_COMMIT = "tickets.defer_after_commit"
READY_AFTER_COMMIT = "tickets.ready_after_commit"


@contextmanager
def transaction(session: Session | None = None) -> Iterator[Session]:
    """Commit when the block ends, roll back when it raises (an AppError too: nothing half-written).
    Nested blocks join the outer one, which alone commits."""
    session = session or db.session()
    depth = session.info.get(_DEPTH, 0)
    session.info[_DEPTH] = depth + 1
    try:
        yield session
        if depth == 0:
            session.info[DEFER_AFTER_COMMIT] = True
            session.commit()
    except BaseException:
        if depth == 0:
            session.rollback()
        raise
    finally:
        session.info[_DEPTH] = depth
        if depth == 0:
            session.info.pop(_LOCKED, None)
            session.info.pop(DEFER_AFTER_COMMIT, None)
    if depth == 0:
        for fn in session.info.pop(READY_AFTER_COMMIT, []):
            try:
                fn()
            except Exception:  # noqa: BLE001 - the commit stands; reconcilers repair derived state
                log.exception("after-commit callback failed")


def transactional(fn: Callable[P, T]) -> Callable[P, T]:
    """``transaction()`` around a whole view or task."""
    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with transaction():
            return fn(*args, **kwargs)
    return wrapper


def in_transaction(session: Session | None = None) -> bool:
    return (session or db.session()).info.get(_DEPTH, 0) > 0


def lock_rows(session: Session, statement: Any) -> Any:
    """``statement`` (a SELECT ... FOR UPDATE) executed for a unit of work. Refuses outside one:
    a lock taken there would be held until some later, unrelated commit (pretix's locking rule)."""
    if not in_transaction(session):
        raise RuntimeError("row locks are taken inside a transaction() block (app/db.py)")
    session.info[_LOCKED] = True
    return session.execute(statement)


def holds_row_locks(session: Session | None = None) -> bool:
    """True while this thread's unit of work holds row locks taken through ``lock_rows``."""
    session = session or db.session()
    return bool(session.info.get(_LOCKED)) and session.in_transaction()


def assert_no_row_locks(what: str) -> None:
    """Called before every network call to a provider (payment, SNS, SMTP): a slow provider must
    never stretch a row lock. Raises instead of letting it happen."""
    if db._factory is not None and holds_row_locks():
        raise RuntimeError(f"{what} called while holding row locks: finish the unit of work first")
