"""The alerts, proven on a real Prometheus (Debian's `prometheus`): the project's scrape config and
rule files, pointed at a running stack, see real faults fire the alerts an operator is paged by,
and see each resolve when the fault ends.

The stack is private (its own Redis on a free port, its own Kafka, API, worker, hold writer, beat
and exporter) so that its faults touch nothing else. Prometheus scrapes and evaluates every second
instead of every 15 s, and each rule's `for:` is cut by FOR_SCALE so that a wait of minutes takes
seconds; every expression and threshold is the file's own (docs/slo.md).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.integration.test_faults import PrivateRedis
from tests.support import ROOT, CeleryProcess, LiveApi, Tansu, free_port, wait_for, wait_port

RULES = ROOT / "docker" / "prometheus"
FOR_SCALE = 10
METRICS_TOKEN = "compose-only-metrics-token"  # the one docker/prometheus/prometheus.yml sends


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", duration))


def scaled_rules(into: Path) -> list[str]:
    """The rule files with every `for:` cut by FOR_SCALE (at least 1 s)."""
    paths = []
    for name in ("alerts.yml", "slo.yml"):
        doc = yaml.safe_load((RULES / name).read_text())
        for group in doc["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = f"{max(1, _seconds(rule['for']) // FOR_SCALE)}s"
        (into / name).write_text(yaml.safe_dump(doc))
        paths.append(str(into / name))
    return paths


class Prometheus:
    def __init__(self, api: str, exporter: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="prometheus-"))
        config = yaml.safe_load((RULES / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"}
        config["rule_files"] = scaled_rules(self.dir)
        targets = {"tickets-api": [api], "tickets-workers": [exporter]}
        config["scrape_configs"] = [dict(job, static_configs=[{"targets": targets[job["job_name"]]}])
                                    for job in config["scrape_configs"] if job["job_name"] in targets]
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        binary = shutil.which("prometheus")
        assert binary, "prometheus is required: apt-get install prometheus"
        self.log = open(self.dir / "prometheus.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([binary, f"--config.file={self.dir / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={self.dir / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, timeout=30)
        # the port opens before the storage does: until then the API answers 503
        wait_for(self.ready, timeout=30, message="prometheus ready")

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def get(self, path: str, **params: Any) -> Any:
        r = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        r.raise_for_status()
        return r.json()["data"]

    def value(self, query: str) -> float:
        """The query's one value now (0 when it has no series yet)."""
        result = self.get("query", query=query)["result"]
        return float(result[0]["value"][1]) if result else 0.0

    def firing(self) -> dict[str, list[dict]]:
        alerts: dict[str, list[dict]] = {}
        for alert in self.get("alerts")["alerts"]:
            if alert["state"] == "firing":
                alerts.setdefault(alert["labels"]["alertname"], []).append(alert["labels"])
        return alerts

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture()
def stack(app):
    redis_server, kafka = PrivateRedis(), Tansu()
    redis_server.start()
    kafka.start()
    env = {"REDIS_URL": redis_server.url(0), "CELERY_BROKER_URL": redis_server.url(1),
           "CELERY_RESULT_BACKEND": redis_server.url(1), "REDBEAT_KEY_PREFIX": "redbeat-alerts:",
           "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "QUEUE_ADVANCE_INTERVAL_SECONDS": "1",
           "METRICS_TOKEN": METRICS_TOKEN, "HOLD_WRITER_ENABLED": "0",
           # as deployed: the workers' metrics summed by the exporter, the API's by itself
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="alerts-workers-")}
    processes: dict[str, Any] = {"redis": redis_server, "kafka": kafka, "env": env}
    processes["api"] = LiveApi(env={**env, "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="alerts-api-")},
                               workers=1)
    processes["worker"] = _worker(env)
    processes["writer"] = CeleryProcess([], env={**env, "HOLD_WRITER_ENABLED": "1"}, name="alerts-writer",
                                        module="app.booking.writer")
    processes["beat"] = CeleryProcess(["beat", "-l", "INFO", "--pidfile="], env=env, name="alerts-beat")
    exporter_port = free_port()
    processes["exporter"] = subprocess.Popen(
        [sys.executable, "-m", "app.exporter", "--port", str(exporter_port), "--address", "127.0.0.1"],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(exporter_port, timeout=30)
    processes["prometheus"] = Prometheus(processes["api"].url.split("//")[1], f"127.0.0.1:{exporter_port}")
    yield processes
    processes["prometheus"].stop()
    processes["exporter"].terminate()
    processes["exporter"].wait(10)
    for name in ("beat", "writer", "worker"):
        if processes[name].proc.poll() is None:
            os.killpg(processes[name].proc.pid, signal.SIGCONT)  # a stopped writer cannot hear SIGTERM
        processes[name].stop()
    processes["api"].stop()
    kafka.stop()
    redis_server.stop()
    shutil.rmtree(redis_server.dir, ignore_errors=True)


def _worker(env: dict[str, str]) -> CeleryProcess:
    return CeleryProcess(["worker", "-l", "INFO", "-Q", "housekeeping,admission,booking,notifications,outbox,default",
                          "-P", "threads", "-c", "4", "--without-mingle", "--without-gossip",
                          "-n", f"alerts-{free_port()}@%h"], env=env, name="alerts-worker")


def test_alerts_fire_on_real_faults_and_resolve_when_they_end(stack, make_event, make_user):
    prometheus, api = stack["prometheus"], stack["api"]
    base = f"{api.url}/api"
    # the targets are up and the recording rules produce series
    def targets() -> dict[str, str]:
        return {t["labels"]["job"]: t["health"] + t["lastError"] for t in prometheus.get("targets")["activeTargets"]}

    wait_for(lambda: targets() == {"tickets-api": "up", "tickets-workers": "up"}, timeout=30,
             message="both targets up")
    for _ in range(5):
        assert requests.get(f"{base}/events", timeout=10).status_code == 200
    wait_for(lambda: prometheus.get("query", query="slo:api_availability:error_ratio_rate5m")["result"],
             timeout=30, message="the SLO recording rules' series")
    wait_for(lambda: prometheus.value("min(tickets_celery_queue_workers)") >= 1, timeout=30,
             message="the worker's heartbeat counted on every queue")
    wait_for(lambda: prometheus.firing() == {}, timeout=30, message="no alert firing on the healthy stack")

    # three faults at once: Kafka stopped, the hold writer frozen, the only worker SIGKILLed
    stack["kafka"].stop()
    os.killpg(stack["writer"].proc.pid, signal.SIGSTOP)
    event = make_event(sections=[{"name": "Floor", "capacity": 5}], admit_per_minute=6000)  # an outbox row
    user = make_user()
    assert requests.post(f"{base}/queue/{event['id']}/join", headers=user["headers"], timeout=10).ok
    token = wait_for(lambda: requests.get(f"{base}/queue/{event['id']}/status", headers=user["headers"],
                                          timeout=10).json().get("admission_token"), timeout=30,
                     message="admission by the private beat and worker")
    r = requests.post(f"{base}/tickets/reserve", timeout=10,
                      json={"event_id": event["id"], "section_id": event["sections"][0]["id"], "quantity": 1},
                      headers={**user["headers"], "X-Admission-Token": token, "Idempotency-Key": "alerts"})
    assert r.status_code == 202  # accepted, and pending while the writer is frozen
    wait_for(lambda: prometheus.value("tickets_outbox_unpublished") > 0, timeout=30,
             message="events waiting in the outbox for the stopped Kafka")
    stack["worker"].stop(signal.SIGKILL)
    faults = {"OutboxLagging", "HoldWriterBehind", "CeleryQueueUnserved"}
    # OutboxLagging waits for the oldest unpublished event to be a minute old, plus its `for:`
    fired = wait_for(lambda: (f := prometheus.firing()) and faults <= set(f) and f, timeout=150, interval=1,
                     message=f"{faults} firing")
    assert {labels["event_id"] for labels in fired["HoldWriterBehind"]} == {str(event["id"])}
    assert {labels["queue"] for labels in fired["CeleryQueueUnserved"]} >= {"booking", "outbox", "admission"}

    # each fault ends: every alert resolves
    stack["kafka"].start()
    os.killpg(stack["writer"].proc.pid, signal.SIGCONT)
    stack["worker"] = _worker(stack["env"])
    wait_for(lambda: not (faults & set(prometheus.firing())), timeout=90, interval=1,
             message=f"{faults} resolved")
    status_url = f"{base}/tickets/status/{r.json()['reservation_id']}"
    wait_for(lambda: requests.get(status_url, headers=user["headers"], timeout=10).json()["status"] == "held",
             timeout=30, message="the request that waited held, not lost")

    # Redis stops: RedisDown pages; Redis is back: it resolves
    stack["redis"].stop()
    wait_for(lambda: "RedisDown" in prometheus.firing(), timeout=60, interval=1, message="RedisDown firing")
    stack["redis"].start()
    wait_for(lambda: "RedisDown" not in prometheus.firing(), timeout=60, interval=1, message="RedisDown resolved")
