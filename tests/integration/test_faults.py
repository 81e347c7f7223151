"""Faults (issue #11): every long-running process rides out a Redis outage and resumes by itself.

Runs against a private redis-server (AOF on, fsync always, as production runs it) on a free port,
never the shared one, so it can be stopped and started again mid-sale."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest
import redis
import requests

from tests.support import ROOT, CeleryProcess, LiveApi, free_port, redis_server_binary, wait_for, wait_port


class PrivateRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-fault-")
        self.proc: subprocess.Popen | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.proc = subprocess.Popen([redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--dir", self.dir, "--appendonly", "yes", "--appendfsync", "always",
                                      "--save", ""],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
            self.proc = None




def test_a_redis_restart_mid_sale_is_ridden_out_and_admissions_resume(app, make_event, make_user, private_redis):
    """Stop Redis mid-sale and start it again: the API answers JSON 503s meanwhile, and beat, the
    worker, the API and the metrics exporter all carry on by themselves; admissions resume within
    seconds. (The outbox relay is a task of the worker.)"""
    env = {"REDIS_URL": private_redis.url(0), "CELERY_BROKER_URL": private_redis.url(1),
           "CELERY_RESULT_BACKEND": private_redis.url(1), "REDBEAT_KEY_PREFIX": "redbeat-fault:",
           "QUEUE_ADVANCE_INTERVAL_SECONDS": "1", "PROMETHEUS_MULTIPROC_DIR": ""}
    api = LiveApi(env=env, workers=1)
    worker = CeleryProcess(["worker", "-l", "INFO", "-Q", "housekeeping,admission,notifications,outbox,default",
                            "-P", "threads", "-c", "4", "--without-mingle", "--without-gossip",
                            "-n", f"fault-{free_port()}@%h"], env=env, name="fault-worker")
    beat = CeleryProcess(["beat", "-l", "INFO", "--pidfile="], env=env, name="fault-beat")
    exporter_port = free_port()
    exporter = subprocess.Popen([sys.executable, "-m", "app.exporter", "--port", str(exporter_port),
                                 "--address", "127.0.0.1"], cwd=ROOT, env={**os.environ, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        assert exporter.poll() is None, "the metrics exporter exited during the outage"
        assert worker.proc.poll() is None, "the worker exited during the outage:\n" + worker.output()[-3000:]

        private_redis.start()  # same port, same AOF: the line is still there
        before = wait_for(lambda: (n := admitted()) >= 0 and n + 1, timeout=10) - 1
        wait_for(lambda: admitted() >= before + 3, timeout=30, interval=0.5,
                 message="admissions to resume after the restart, with no process restarted")
        assert beat.proc.poll() is None and worker.proc.poll() is None
        r = requests.get(f"{url}/status", headers=users[-1]["headers"], timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "waiting"
        assert "Redis unreachable" in beat.output()  # it noticed, logged, and carried on
        scrape = requests.get(f"http://127.0.0.1:{exporter_port}/metrics", timeout=10)
        assert scrape.status_code == 200 and "tickets_queue_waiting_users" in scrape.text
    finally:
        exporter.terminate()
        exporter.wait(10)
        beat.stop()
        worker.stop()
        api.stop()


class FlakySns:
    """A fake SNS endpoint in front of moto: the first `failures` Publish calls fail the way SNS
    fails under load (Throttling, or a 503), everything else is passed through to moto."""

    def __init__(self, moto_url: str, failures: int, status: int, code: str) -> None:
        import threading

        from werkzeug.serving import make_server

        self.moto_url, self.failures, self.status, self.code = moto_url, failures, status, code
        self.publishes: list[tuple[float, int]] = []  # (time, status answered)
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, self._wsgi, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wsgi(self, environ, start_response):
        from werkzeug.wrappers import Request, Response

        request = Request(environ)
        body = request.get_data()
        if b"Action=Publish" in body and sum(1 for _, s in self.publishes if s != 200) < self.failures:
            self.publishes.append((time.time(), self.status))
            xml = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{self.code}</Code><Message>slow down</Message>"
                   "</Error><RequestId>fake</RequestId></ErrorResponse>")
            return Response(xml, self.status, mimetype="text/xml")(environ, start_response)
        reply = requests.post(self.moto_url + request.path, data=body, headers=dict(request.headers), timeout=10)
        if b"Action=Publish" in body:
            self.publishes.append((time.time(), reply.status_code))
        return Response(reply.content, reply.status_code, mimetype="text/xml")(environ, start_response)

    def stop(self) -> None:
        self.server.shutdown()


@pytest.mark.parametrize(("status", "code"), [(400, "Throttling"), (503, "ServiceUnavailable")])
def test_sns_throttling_or_5xx_is_retried_with_backoff_and_never_duplicated(app, client, make_event, make_user,
                                                                           status, code):
    """SNS refuses the first three publishes. The notification is retried with backoff by a real
    worker (through the same flaky endpoint), ends `sent`, and the device gets exactly one push."""
    import os

    from celery import Celery
    from sqlalchemy import select

    from app.extensions import db
    from app.notifications.models import Notification
    from tests.support import moto_sns_backend

    user = make_user()
    push = client.post("/api/notifications/register", headers=user["headers"],
                       json={"channel": "push", "platform": "fcm", "token": f"fcm-flaky-{code}"}).json
    event = make_event()
    flaky = FlakySns(app.config["SNS_ENDPOINT_URL"], failures=3, status=status, code=code)
    # a worker of its own (its own broker db), whose SNS is the flaky endpoint
    broker = os.environ["TEST_SPARE_REDIS_URL"]
    env = {"SNS_ENDPOINT_URL": flaky.url, "CELERY_BROKER_URL": broker, "CELERY_RESULT_BACKEND": broker}
    worker = CeleryProcess(["worker", "-l", "INFO", "-Q", "notifications", "-P", "threads", "-c", "2",
                            "--without-mingle", "--without-gossip", "-n", f"flaky-{free_port()}@%h"],
                           env=env, name="flaky-worker")
    producer = Celery()
    producer.config_from_object("celeryconfig")  # the same queues and exchanges as the worker's
    try:
        now = time.time()
        # (an explicit connection: CELERY_BROKER_URL in this process's environment wins over conf)
        with producer.connection_for_write(broker) as connection:
            producer.send_task("notifications.notify_admitted", args=[user["id"], event["id"], now, now + 600],
                               queue="notifications", connection=connection)

        def sent() -> Notification | None:
            with app.app_context():
                n = db.session.scalar(select(Notification).where(Notification.user_id == user["id"]))
                db.session.rollback()
                return n if n is not None and n.status == "sent" else None

        n = wait_for(sent, timeout=60, interval=0.5, message="the notification to get through")
        assert n.attempts >= 2  # the first attempt was refused, a later one went through
        assert len(moto_sns_backend().platform_endpoints[push["endpoint_arn"]].messages) == 1  # exactly one push
        refused = [t for t, s in flaky.publishes if s != 200]
        delivered = [t for t, s in flaky.publishes if s == 200]
        assert len(refused) == 3 and len(delivered) == 1
        # backoff: the retry that got through came well after the last refusal, not in a hot loop
        assert delivered[0] - refused[0] >= 0.5
    finally:
        worker.stop()
        flaky.stop()
        producer.close()
