"""Shared set-up for the benchmarks: configuration, a fresh schema, users with tokens, and the
JSON + table report. Benchmarks run real processes (gunicorn/gevent, Celery prefork) against the
database and Redis given by BENCH_DATABASE_URL / BENCH_REDIS_URL (defaults: a MariaDB database
with a unique name on this machine, and Redis db 10 plus 11 for the broker; make test uses 13-15)."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

# Production's configuration with secrets that are only good for a benchmark: production refuses
# the defaults (app/settings.py, PRODUCTION_RULES), and this must be what production runs
PRODUCTION_TEST_SECRETS = {
    "APP_ENV": "production",
    "JWT_SECRET_KEY": "bench-only-jwt-secret-0123456789abcdef0123",
    "ADMISSION_SECRET_KEY": "bench-only-admission-secret-0123456789abcdef",
    "PAYMENT_PROVIDER": "stripe", "STRIPE_SECRET_KEY": "sk_test_bench_only",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_bench_only",
    "STRIPE_WEBHOOK_SECRET": "whsec_bench_only",
}


def configure(production: bool = False, kafka: str = "") -> dict[str, str]:
    """Environment of the benchmark: its own MariaDB database (a unique name, dropped afterwards
    by the flash-sale benchmark) and the Redis db of BENCH_REDIS_URL plus the next one (broker).
    ``production``: production's configuration and limits with test secrets, and events published
    to the Kafka at ``kafka``; otherwise the testing configuration, Kafka off and a generous
    per-user rate limit."""
    db_url = os.environ.get("BENCH_DATABASE_URL") or \
        f"mysql+pymysql://root@127.0.0.1:3306/tickets_bench_{os.getpid()}_{int(time.time()) % 100000}"
    base = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10").rstrip("/")
    root, _, db = base.rpartition("/")
    if not db.isdigit():
        root, db = base, "10"
    env = {
        "APP_ENV": "testing", "DATABASE_URL": db_url, "REDIS_URL": f"{root}/{db}",
        "CELERY_BROKER_URL": f"{root}/{int(db) + 1}", "LOG_LEVEL": "WARNING", "KAFKA_BOOTSTRAP_SERVERS": "",
        "QUEUE_RATE_LIMIT_PER_SECOND": "1000", "REDBEAT_KEY_PREFIX": "redbeat-bench:",
    }
    if production:
        del env["QUEUE_RATE_LIMIT_PER_SECOND"]
        env.update(PRODUCTION_TEST_SECRETS, KAFKA_BOOTSTRAP_SERVERS=kafka, KAFKA_TOPIC_PREFIX="bench")
        os.environ.pop("QUEUE_RATE_LIMIT_PER_SECOND", None)
    os.environ.update(env)
    return env


def fresh_database(url: str) -> None:
    from sqlalchemy import create_engine, text

    if url.startswith("mysql"):
        server, name = url.rsplit("/", 1)
        engine = create_engine(server + "/")
        with engine.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
        engine.dispose()
    from app.cli import upgrade_database

    upgrade_database(url)
    import redis

    for key in ("REDIS_URL", "CELERY_BROKER_URL"):
        redis.Redis.from_url(os.environ[key]).flushdb()


def drop_database(url: str) -> None:
    if not url.startswith("mysql"):
        return
    from sqlalchemy import create_engine, text

    from app.extensions import db

    if db.engine is not None:
        db.engine.dispose()
    server, name = url.rsplit("/", 1)
    engine = create_engine(server + "/")
    with engine.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    engine.dispose()


@contextlib.contextmanager
def private_redis_app() -> Iterator[Any]:
    """The app on a private redis-server (the testing configuration) and a fresh database, both
    gone afterwards: the benchmarks that measure Redis itself (bench/redis_memory.py,
    bench/draw_bench.py)."""
    from tests.support import start_private_redis

    url, proc = start_private_redis()
    os.environ["BENCH_REDIS_URL"] = url
    env = configure()
    fresh_database(env["DATABASE_URL"])
    try:
        from app import create_app

        yield create_app()
    finally:
        drop_database(env["DATABASE_URL"])
        proc.terminate()


def create_event(app, sections: list[dict[str, Any]] = (), **overrides: Any) -> tuple[int, list[int]]:
    """An open sale with generous waiting-room settings; returns (event id, section ids)."""
    from datetime import timedelta

    from app.catalogue.services import create_event as create
    from app.catalogue.services import create_section
    from app.db import transaction, utcnow

    now = utcnow()
    data = {"name": "Bench", "venue": "Bench", "starts_at": now + timedelta(days=1),
            "sale_opens_at": now - timedelta(minutes=1), "sale_closes_at": None, "admit_per_minute": 600,
            "max_active": 100_000, "admission_window_seconds": 3600, "prequeue_minutes": 0,
            "heartbeat_timeout_seconds": 3600, "max_per_user": 4, "hold_seconds": 600, **overrides}
    with app.app_context(), transaction():
        event = create(data)
        ids = [create_section(event.id, {"price_cents": 5000, "currency": "EUR", **spec}).id for spec in sections]
        return event.id, ids


def make_users(app, count: int) -> list[dict[str, Any]]:
    """``count`` new users in one INSERT, with access tokens minted (password hashing is not what
    a benchmark measures). Each call makes a fresh batch."""
    import datetime
    import uuid

    from flask_jwt_extended import create_access_token
    from sqlalchemy import select
    from werkzeug.security import generate_password_hash

    from app.auth.models import User
    from app.db import utcnow
    from app.extensions import db

    password_hash = generate_password_hash("bench-Passw0rd")
    tag = uuid.uuid4().hex[:8]
    with app.app_context():
        db.session.execute(User.__table__.insert(), [
            {"email": f"bench-{tag}-{i}@example.com", "name": f"Bench {i}", "password_hash": password_hash,
             "is_admin": False, "locale": "en", "created_at": utcnow(), "email_verified_at": utcnow()}
            for i in range(count)])
        db.session.commit()
        ids = db.session.scalars(select(User.id).where(User.email.like(f"bench-{tag}-%")).order_by(User.id))
        return [{"id": uid, "headers": {"Authorization": "Bearer " + create_access_token(
            identity=str(uid), additional_claims={"ev": True}, expires_delta=datetime.timedelta(hours=2))}}
            for uid in ids]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(name: str, latencies: list[float], elapsed: float, errors: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "requests": len(latencies), "errors": errors, "seconds": round(elapsed, 3),
        "throughput_per_s": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2), "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else 0.0, **extra,
    }


def report(title: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    print(json.dumps({"benchmark": title, "meta": meta, "results": rows}, indent=2))
    print()
    print(f"{title}  ({', '.join(f'{k}={v}' for k, v in meta.items())})")
    header = f"{'scenario':<28}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<28}{r['requests']:>10}{r['errors']:>8}{r['throughput_per_s']:>10}{r['p50_ms']:>10}"
              f"{r['p95_ms']:>10}{r['p99_ms']:>10}")


def run_load(items: list[Any], call: Callable[[requests.Session, Any], bool], concurrency: int,
             duration: float | None = None) -> tuple[list[float], int, float]:
    """Run ``call`` over ``items`` (once each, or round-robin until ``duration``) from ``concurrency``
    threads with keep-alive sessions; returns (latencies of successes, errors, elapsed)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    cursor = iter(range(10**12))
    started = time.monotonic()
    deadline = started + duration if duration else None

    def worker() -> None:
        nonlocal errors
        session = requests.Session()
        while True:
            with lock:
                i = next(cursor)
            if deadline is None and i >= len(items):
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            item = items[i % len(items)]
            t0 = time.perf_counter()
            try:
                ok = call(session, item)
            except requests.RequestException:
                ok = False
            dt = time.perf_counter() - t0
            with lock:
                if ok:
                    latencies.append(dt)
                else:
                    errors += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.monotonic() - started
