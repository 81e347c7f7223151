"""The waiting room and booking on a Redis Cluster (REDIS_CLUSTER=true): a local 3-master cluster
on loopback ports for the app's keys, Celery's broker and RedBeat on the standalone Redis, MySQL as
in the integration suite. A separate pytest run (`make test-cluster`, part of `make test`),
because the whole app is configured for the cluster through the environment."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests import support
from tests.integration.conftest import (  # noqa: F401 - fixtures shared with the integration suite
    TABLES_IN_DELETE_ORDER,
    _reset_database,
    admin,
    client,
    make_event,
    make_user,
)

_state: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    # like the integration suite: the configured servers, else private ones on free ports
    db_url = os.environ.get("TEST_DATABASE_URL")
    if not db_url:
        db_url, _state["mariadb_proc"], _state["mariadb_dir"] = support.start_private_mariadb()
    standalone = os.environ.get("TEST_REDIS_URL")
    if not standalone:
        standalone, _state["redis_proc"] = support.start_private_redis()
    cluster = support.LocalRedisCluster(masters=3).start()
    broker = support.redis_db_url(standalone, support.redis_db_number(standalone) + 1)
    support.flush_redis_dbs([broker])
    _state["cluster"], _state["broker"] = cluster, broker
    os.environ.update({
        "APP_ENV": "testing",
        "DATABASE_URL": db_url,
        "REDIS_URL": cluster.url,
        "REDIS_CLUSTER": "true",
        "CELERY_BROKER_URL": broker,
        "REDBEAT_KEY_PREFIX": f"redbeat-cluster-{uuid.uuid4().hex[:6]}:",
        "KAFKA_BOOTSTRAP_SERVERS": "",
        "LOG_LEVEL": "WARNING",
        "SMTP_HOST": "",
        "REQUIRE_VERIFIED_EMAIL": "0",
    })


def pytest_unconfigure(config: pytest.Config) -> None:
    for name in ("worker", "live_api"):
        if name in _state:
            _state[name].stop()
    if "cluster" in _state:
        _state["cluster"].stop()
    if "broker" in _state:
        support.flush_redis_dbs([_state["broker"]])
    if "mariadb_proc" in _state:
        support.stop_private_mariadb(_state["mariadb_proc"], _state["mariadb_dir"])
    if "redis_proc" in _state:
        _state["redis_proc"].terminate()


@pytest.fixture(scope="session")
def cluster() -> support.LocalRedisCluster:
    return _state["cluster"]


@pytest.fixture(scope="session")
def app():
    from app import create_app
    from app.cli import upgrade_database

    url = os.environ["DATABASE_URL"]
    _reset_database(url)
    upgrade_database(url)
    flask_app = create_app({"TESTING": True})
    from tasks.celery_app import set_flask_app

    set_flask_app(flask_app)
    return flask_app


def flush_cluster() -> None:
    from redis.cluster import RedisCluster

    from app.extensions import redis_store

    redis_store.client.flushdb(target_nodes=RedisCluster.PRIMARIES)


@pytest.fixture(autouse=True)
def clean_state(app) -> Iterator[None]:
    from sqlalchemy import text

    from app.booking.intake import catalogue
    from app.extensions import db

    with app.app_context():
        with db.engine.begin() as conn:
            for table in TABLES_IN_DELETE_ORDER:
                conn.execute(text(f"DELETE FROM {table}"))
        flush_cluster()
    catalogue.clear()
    yield


@pytest.fixture(scope="session")
def worker(app) -> support.CeleryProcess:
    if "worker" not in _state:
        _state["worker"] = support.start_worker(name="cluster-worker")
    return _state["worker"]


@pytest.fixture(scope="session")
def live_api(app) -> support.LiveApi:
    if "live_api" not in _state:
        _state["live_api"] = support.LiveApi()
    return _state["live_api"]
