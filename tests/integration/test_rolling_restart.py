"""A rolling restart mid-sale fails no request: nginx (Debian's nginx-light, docker/nginx.conf with
local upstreams) in front of two REST servers and the stream server; fans join, poll, reserve and
pay throughout while every process is restarted in turn, the way k8s rolls a Deployment
(k8s/base/api.yaml, stream.yaml, workers.yaml):

- an API or stream server: its preStop creates the drain file, so /readyz answers 503; the load
  balancer takes it out (here: nginx's upstream rewritten and reloaded, as the ingress controller
  does when the endpoint turns unready); once nginx's old workers are gone nothing is in flight to
  it, and SIGTERM stops it; a new one starts and joins the upstream when /readyz answers 200;
- a worker: SIGTERM (Celery's warm shutdown) while the other worker serves the queues, then a new one;
- the hold writer and beat: SIGTERM, then a new one.

Every response is counted. Allowed: 2xx, 409 (sold out) and 429 (a rate limit). No 5xx, no other
4xx, no connection error, and every accepted reservation ends confirmed.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import select

from tests.support import ALL_QUEUES, ROOT, CeleryProcess, LiveApi, free_port, wait_for, wait_port

ALLOWED = {409, 429}  # besides 2xx


class Nginx:
    """nginx with docker/nginx.conf's routing, its upstreams pointed at local servers."""

    def __init__(self, api_ports: list[int], stream_port: int) -> None:
        binary = shutil.which("nginx")
        assert binary, "nginx is required: apt-get install nginx-light"
        self.dir = Path(tempfile.mkdtemp(prefix="nginx-"))
        self.dir.chmod(0o755)
        self.port = free_port()
        self.api_ports, self.stream_ports = list(api_ports), [stream_port]
        self._render()
        (self.dir / "nginx.conf").write_text(
            f"worker_processes 2;\npid {self.dir}/nginx.pid;\nerror_log {self.dir}/error.log warn;\n"
            "daemon off;\nevents { worker_connections 1024; }\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {self.dir}/body;\n"
            f"  proxy_temp_path {self.dir}/proxy;\n  include {self.dir}/site.conf;\n}}\n")
        self.proc = subprocess.Popen([binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def _render(self) -> None:
        site = (ROOT / "docker" / "nginx.conf").read_text()
        api = " ".join(f"server 127.0.0.1:{p};" for p in self.api_ports)
        stream = " ".join(f"server 127.0.0.1:{p};" for p in self.stream_ports) or "server 127.0.0.1:9 down;"
        site = site.replace("upstream tickets_api { server api:8000; keepalive 64; }",
                            f"upstream tickets_api {{ {api} keepalive 64; }}")
        site = site.replace("upstream tickets_stream { server stream:8000; }",
                            f"upstream tickets_stream {{ {stream} }}")
        site = site.replace("listen 8000;", f"listen 127.0.0.1:{self.port};")
        site = site.replace("/var/cache/nginx/serving", str(self.dir / "serving-cache"))
        assert "api:8000" not in site and "stream:8000" not in site
        (self.dir / "site.conf").write_text(site)

    def _workers(self) -> set[int]:
        # the workers only: the micro-cache (docker/nginx.conf) adds a cache manager and loader
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid), "-f", "worker process"], capture_output=True,
                             text=True).stdout
        return {int(p) for p in out.split()}

    def route(self, api_ports: list[int], stream_ports: list[int]) -> None:
        """Send traffic to these servers only, as an ingress controller does when endpoints change:
        returns once nginx's old workers (and whatever they had in flight) are gone."""
        self.api_ports, self.stream_ports = list(api_ports), list(stream_ports)
        self._render()
        old = self._workers()
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: not (old & self._workers()) and len(self._workers()) == 2, timeout=30,
                 message="nginx's old workers to finish their requests and exit")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)  # graceful
        self.proc.wait(15)
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    """One API server (granian REST or gunicorn stream) on a fixed port, restartable as k8s does."""

    def __init__(self, env: dict[str, str], kind: str) -> None:
        self.kind, self.port = kind, free_port()
        self.drain_file = Path(tempfile.mkdtemp(prefix="drain-")) / "draining"
        self.env = {**env, "DRAIN_FILE": str(self.drain_file)}
        self.live = self._start()

    def _start(self) -> LiveApi:
        return LiveApi(env=self.env, workers=1, server=self.kind, port=self.port)

    def ready(self) -> int:
        try:
            return requests.get(f"{self.live.url}/readyz", timeout=2).status_code
        except requests.RequestException:
            return 0

    def restart(self, nginx: Nginx, others: dict[str, list[int]]) -> None:
        self.drain_file.touch()  # the preStop hook
        wait_for(lambda: self.ready() == 503, timeout=10, message="/readyz draining")
        nginx.route(**others)  # out of the load balancer
        self.live.stop()  # SIGTERM: nothing is in flight to it any more
        self.drain_file.unlink()
        self.live = self._start()
        wait_for(lambda: self.ready() == 200, timeout=30, message="the new server ready")


class Load:
    """Fans buying one ticket each, again and again, through nginx, on ``threads`` threads. Every
    response is counted; a fan's next request waits for the previous one (bounded load)."""

    def __init__(self, base: str, event: dict, users: list[dict], threads: int) -> None:
        self.base, self.event, self.section = base, event["id"], event["sections"][0]["id"]
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.accepted: list[str] = []
        self.journeys = 0
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        share = len(users) // threads
        self.threads = [threading.Thread(target=self._run, args=(users[i * share:(i + 1) * share],), daemon=True)
                        for i in range(threads)]
        for thread in self.threads:
            thread.start()

    def call(self, step: str, method: str, path: str, user: dict, **kwargs: Any) -> requests.Response | None:
        headers = {**user["headers"], **kwargs.pop("headers", {})}
        try:  # a connection per request: no keep-alive of this client hides or adds a failure
            r = requests.request(method, self.base + path, headers=headers, timeout=30, **kwargs)
        except requests.RequestException as exc:
            with self.lock:
                self.failures.append(f"{step}: {exc!r}")
            return None
        with self.lock:
            self.statuses[r.status_code] += 1
            if not (200 <= r.status_code < 300 or r.status_code in ALLOWED):
                self.failures.append(f"{step}: {r.status_code} {r.text[:200]}")
        return r

    def _run(self, users: list[dict]) -> None:
        turn = 0
        while not self.stopping.is_set():
            self._journey(users[turn % len(users)], turn // len(users))
            turn += 1

    def _journey(self, user: dict, round_: int) -> None:
        event = self.event
        joined = self.call("join", "POST", f"/api/queue/{event}/join", user)
        if joined is None or not joined.ok:
            time.sleep(0.5)  # counted; the next fan tries
            return
        token, deadline = None, time.monotonic() + 60
        while token is None and time.monotonic() < deadline:
            status = self.call("status", "GET", f"/api/queue/{event}/status", user)
            if status is not None and status.status_code == 200:
                token = status.json().get("admission_token")
            if token is None:
                time.sleep(0.3)
        if token is None:
            with self.lock:
                self.failures.append(f"user {user['id']} round {round_}: never admitted")
            return
        reserve = self.call("reserve", "POST", "/api/tickets/reserve", user,
                            json={"event_id": event, "section_id": self.section, "quantity": 1},
                            headers={"X-Admission-Token": token, "Idempotency-Key": str(uuid.uuid4())})
        if reserve is None or reserve.status_code != 202:
            return
        rid = reserve.json()["reservation_id"]
        with self.lock:
            self.accepted.append(rid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            held = self.call("reservation", "GET", f"/api/tickets/status/{rid}", user)
            if held is not None and held.ok and held.json()["status"] == "held":
                break
            time.sleep(0.3)
        self.call("confirm", "POST", f"/api/tickets/{rid}/confirm", user, json={"payment_token": "tok_ok"})
        with self.lock:
            self.journeys += 1

    def progress(self, more: int) -> None:
        """Wait until ``more`` journeys finished (the sale moves between two restarts)."""
        target = self.journeys + more
        try:
            wait_for(lambda: self.journeys >= target, timeout=120, interval=0.2, message=f"{more} more journeys")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: responses {dict(self.statuses)}, failures {self.failures[:5]}") from None

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(120)


def test_every_process_restarts_in_turn_mid_sale_and_no_request_fails(app, make_event, make_user, private_redis):
    env = {"REDIS_URL": private_redis.url(0), "CELERY_BROKER_URL": private_redis.url(1),
           "CELERY_RESULT_BACKEND": private_redis.url(1), "REDBEAT_KEY_PREFIX": "redbeat-rolling:",
           "QUEUE_ADVANCE_INTERVAL_SECONDS": "1", "PROMETHEUS_MULTIPROC_DIR": "", "HOLD_WRITER_ENABLED": "0",
           "TRUSTED_PROXIES": "1"}
    apis = [Server(env, "granian"), Server(env, "granian")]
    stream = Server(env, "gunicorn")

    def worker(n: int) -> CeleryProcess:
        return CeleryProcess(["worker", "-l", "INFO", "-Q", ALL_QUEUES, "-P", "threads", "-c", "4",
                              "--without-mingle", "--without-gossip",
                              "-n", f"rolling{n}-{free_port()}@%h"], env=env, name=f"rolling-worker{n}")

    def writer() -> CeleryProcess:
        return CeleryProcess([], env={**env, "HOLD_WRITER_ENABLED": "1"}, name="rolling-writer",
                             module="app.booking.writer")

    def beat() -> CeleryProcess:
        return CeleryProcess(["beat", "-l", "INFO", "--pidfile="], env=env, name="rolling-beat")

    processes = {"worker0": worker(0), "worker1": worker(1), "writer": writer(), "beat": beat()}
    nginx = Nginx([s.port for s in apis], stream.port)
    event = make_event(sections=[{"name": "Floor", "capacity": 5000}], admit_per_minute=6000, max_active=5000,
                       max_per_user=10)
    users = [make_user() for _ in range(60)]
    load = Load(nginx.url, event, users[2:], threads=6)
    streams = StreamWatchers(nginx.url, event["id"], users[:2])  # fans' streams, opened again and again
    try:
        load.progress(10)
        both = [s.port for s in apis]
        for server in apis:
            others = [p for p in both if p != server.port]
            server.restart(nginx, {"api_ports": others, "stream_ports": [stream.port]})
            nginx.route(both, [stream.port])
            load.progress(5)
        # the stream server rolls with a surge (k8s maxSurge): the new one serves before the old drains
        surge = Server(env, "gunicorn")
        nginx.route(both, [stream.port, surge.port])
        stream.drain_file.touch()
        wait_for(lambda: stream.ready() == 503, timeout=10, message="/readyz draining")
        nginx.route(both, [surge.port])
        stream.live.stop()
        stream = surge
        streams.expect_more(3)
        load.progress(5)
        for name, start in (("worker0", lambda: worker(2)), ("worker1", lambda: worker(3)), ("writer", writer),
                            ("beat", beat)):
            processes[name].stop(signal.SIGTERM, timeout=60)  # warm shutdown: the task in hand finishes
            assert processes[name].proc.returncode == 0 or name == "beat", processes[name].output()[-2000:]
            processes[name] = start()
            load.progress(5)
    finally:
        load.stop()
        streams.stop()
        for process in processes.values():
            process.stop()
        for server in [*apis, stream]:
            server.live.stop()
        nginx.stop()

    served = sum(load.statuses.values()) + streams.served
    print(f"rolling restart: {served} responses ({dict(load.statuses)}; {streams.served} streams), "
          f"{load.journeys} journeys, {len(load.accepted)} reservations accepted, failed {len(load.failures)}")
    assert load.failures == [] and streams.failures == [], (load.failures[:10], streams.failures[:10])
    assert load.journeys >= 40 and served > 500
    from app.booking.models import Reservation
    from app.extensions import db

    with app.app_context():
        statuses = Counter(db.session.scalars(select(Reservation.status).where(Reservation.id.in_(load.accepted))))
        db.session.rollback()
    # every accepted request ended paid; the last journeys may still be between held and paid
    assert sum(statuses.values()) == len(load.accepted) and set(statuses) <= {"confirmed", "held"}, statuses


class StreamWatchers:
    """Fans opening their SSE stream through nginx again and again: each reads its first event."""

    def __init__(self, base: str, event_id: int, users: list[dict]) -> None:
        self.url = f"{base}/api/queue/{event_id}/stream"
        self.users, self.served, self.failures = users, 0, []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for user in self.users:  # in line: a stream has a place to report
            requests.post(self.url.replace("/stream", "/join"), headers=user["headers"], timeout=10)
        turn = 0
        while not self.stopping.is_set():
            self._open(self.users[turn % len(self.users)])
            turn += 1
            time.sleep(0.2)

    def _open(self, user: dict) -> None:
        try:
            with requests.get(self.url, headers=user["headers"], stream=True, timeout=10) as r:
                if r.status_code != 200:
                    if r.status_code not in ALLOWED:
                        self.failures.append(f"stream: {r.status_code} {r.text[:200]}")
                    return
                next(line for line in r.iter_lines() if line.startswith(b"data:"))
                self.served += 1
        except (requests.RequestException, StopIteration) as exc:
            self.failures.append(f"stream: {exc!r}")

    def expect_more(self, more: int) -> None:
        target = self.served + more
        wait_for(lambda: self.served >= target, timeout=30, message=f"{more} more streams")

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)
