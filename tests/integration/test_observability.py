"""Metrics from the API (gunicorn multiprocess) and workers (exporter), dashboards and alert rules
that cannot drift from the code, JSON logs with the request id carried into tasks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest
import requests
import yaml

from tests.support import ROOT, free_port, wait_for

DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "tickets-overview.json"
ALERTS = ROOT / "docker" / "prometheus" / "alerts.yml"
METRIC_NAME = re.compile(r"\b((?:tickets|flask)_[a-z0-9_]+)\b")


def dashboard_metric_names() -> set[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    return {m for e in exprs for m in METRIC_NAME.findall(e)}


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def scrape(url: str) -> dict[str, list[str]]:
    series: dict[str, list[str]] = {}
    for line in requests.get(url, timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            series.setdefault(name, []).append(line)
    return series


def exercise_a_sale(app, live_api, make_event, make_user) -> str:
    from tasks.celery_app import celery
    from tests.helpers import wait_reservation

    event = make_event(sections=[{"name": "Floor", "capacity": 5}], admit_per_minute=6000)
    user = make_user()
    base = f"{live_api.url}/api"
    requests.post(f"{base}/notifications/register", json={"channel": "email", "address": "obs@example.com"},
                  headers=user["headers"], timeout=10).raise_for_status()
    requests.post(f"{base}/queue/{event['id']}/join", headers=user["headers"], timeout=10).raise_for_status()
    assert celery.send_task("queue.advance", args=[event["id"]]).get(timeout=20)["admitted"] == [user["id"]]
    token = requests.get(f"{base}/queue/{event['id']}/status", headers=user["headers"],
                         timeout=10).json()["admission_token"]
    request_id = f"obs-{uuid.uuid4().hex[:12]}"
    r = requests.post(f"{base}/tickets/reserve",
                      json={"event_id": event["id"], "section_id": event["sections"][0]["id"], "quantity": 1},
                      headers={**user["headers"], "X-Admission-Token": token, "Idempotency-Key": "k1",
                               "X-Request-ID": request_id}, timeout=10)
    assert r.status_code == 202 and r.headers["X-Request-ID"] == request_id
    rid = r.json()["reservation_id"]
    with app.test_client() as client:
        wait_reservation(client, user, rid)
    requests.post(f"{base}/tickets/{rid}/confirm", json={"payment_token": "tok_ok"}, headers=user["headers"],
                  timeout=10).raise_for_status()
    requests.get(f"{base}/tickets/status/{rid}", headers=user["headers"], timeout=10)
    requests.get(f"{base}/events/{event['id']}", timeout=10)
    requests.get(f"{base}/queue/{event['id']}/status", headers=user["headers"], timeout=10)
    for task in ("booking.sweep_holds", "booking.reconcile_gates", "outbox.relay", "queue.drain_events"):
        celery.send_task(task)
    return request_id


@pytest.fixture()
def exporter(app, worker_metrics_dir):
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": worker_metrics_dir}
    proc = subprocess.Popen([sys.executable, "-m", "app.exporter", "--port", str(port),
                             "--address", "127.0.0.1"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def up() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, timeout=20, message="exporter")
    yield f"http://127.0.0.1:{port}/metrics"
    proc.terminate()
    proc.wait(10)


def a_waitlist(app, make_event, make_user) -> None:
    """A sold-out section with one fan on its waitlist (the waitlist gauges have a series)."""
    from tests.integration.test_after_sale import hold, waitlisted

    client = app.test_client()
    event = make_event(sections=[{"name": "Floor", "capacity": 1}])
    hold(client, app, event["id"], event["sections"][0]["id"], make_user())
    waitlisted(client, app, event["id"], event["sections"][0]["id"], make_user())


def test_every_metric_in_dashboards_and_alerts_exists(app, live_api, worker, exporter, make_event, make_user):
    exercise_a_sale(app, live_api, make_event, make_user)
    a_waitlist(app, make_event, make_user)

    def scraped() -> dict[str, list[str]]:
        merged = scrape(f"{live_api.url}/metrics")
        for name, lines in scrape(exporter).items():
            merged.setdefault(name, []).extend(lines)
        return merged

    series = wait_for(lambda: (s := scraped()) and "tickets_reservation_hold_latency_seconds_count" in s and s,
                      timeout=20, message="worker metrics")
    used = dashboard_metric_names() | {m for r in alert_rules() for m in METRIC_NAME.findall(r["expr"])}
    missing = sorted(name for name in used if name not in series)
    assert not missing, f"dashboards/alerts use metrics the code does not export: {missing}"

    # API metrics are grouped by URL rule and summed over gunicorn workers: no per-id series
    rules = {re.search(r'url_rule="([^"]*)"', line).group(1)
             for line in series["flask_http_request_duration_seconds_count"] if "url_rule" in line}
    assert "/api/tickets/status/<reservation_id>" in rules and "/api/queue/<int:event_id>/status" in rules
    assert not any(re.search(r"[0-9a-f]{8}-[0-9a-f]{4}", r) for r in rules)
    # worker-side numbers reflect the flow
    def value(name: str, **labels: str) -> float:  # summed over both endpoints
        return sum(float(line.rsplit(" ", 1)[1]) for line in series.get(name, [])
                   if all(f'{k}="{v}"' in line for k, v in labels.items()))

    assert value("tickets_reservations_total", outcome="held") >= 1
    assert value("tickets_celery_tasks_total", outcome="success") >= 1
    assert value("tickets_queue_admissions_total") >= 1
    assert {f'queue="{q}"' for q in ("admission", "booking", "notifications", "outbox", "default")} <= {
        re.search(r'queue="[a-z]+"', line).group(0) for line in series["tickets_celery_queue_length"]}


def test_metric_names_are_documented():
    doc = (ROOT / "docs" / "metrics.md").read_text()
    from app.observability import metrics

    exported = {m._name for m in vars(metrics).values() if hasattr(m, "_name") and hasattr(m, "_type")}
    gauges = {"tickets_queue_waiting_users", "tickets_queue_active_users", "tickets_queue_paused",
              "tickets_queue_admit_rate_per_minute", "tickets_celery_queue_length", "tickets_outbox_unpublished",
              "tickets_outbox_oldest_unpublished_age_seconds"}
    undocumented = sorted(n for n in exported | gauges if f"`{n}" not in doc)
    assert not undocumented, undocumented


def test_alert_rules_are_valid():
    rules = alert_rules()
    assert len(rules) >= 8
    for rule in rules:
        assert rule["alert"] and rule["expr"] and rule["labels"]["severity"] and rule["annotations"]["summary"]
        assert rule["expr"].count("(") == rule["expr"].count(")")
    names = {r["alert"] for r in rules}
    assert {"ApiErrorRateHigh", "ApiLatencyP99High", "QueueEndpointsLatencyP99High", "WaitingRoomStalled",
            "NotificationSuccessRateLow", "NotificationLatencyP95High", "OutboxLagging",
            "CeleryQueueGrowing"} <= names


def test_every_alert_and_slo_rule_fires_on_its_fault_under_promtool():
    """`promtool test rules`: each alert of alerts.yml fires on its fault within its `for:` (and
    not without it), each SLO's burn-rate alerts fire in order, and the recording rules compute
    the error ratios (docker/prometheus/rules.test.yml). promtool is Debian's `prometheus`
    package (.ci/system-deps installs it)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required: apt-get install prometheus"
    rules = ROOT / "docker" / "prometheus"
    checked = subprocess.run([promtool, "check", "rules", "alerts.yml", "slo.yml"], cwd=rules, capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "rules.test.yml"], cwd=rules, capture_output=True, text=True)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    alerts = {r["alert"] for f in ("alerts.yml", "slo.yml") for g in yaml.safe_load((rules / f).read_text())["groups"]
              for r in g["rules"] if "alert" in r}
    covered = {t["alertname"] for case in yaml.safe_load((rules / "rules.test.yml").read_text())["tests"]
               for t in case.get("alert_rule_test", []) if t["exp_alerts"]}
    assert alerts == covered, alerts ^ covered  # every alert is seen firing in a test


def test_request_id_travels_into_worker_logs_as_json(app, live_api, worker, make_event, make_user):
    request_id = exercise_a_sale(app, live_api, make_event, make_user)

    def logged() -> dict | None:
        for line in worker.output().splitlines():
            if line.startswith("{") and request_id in line:
                record = json.loads(line)
                if record.get("message") == "seats held":
                    return record
        return None

    record = wait_for(logged, timeout=20, message="JSON log line with the request id")
    # the hold writer logs each hold with the id of the API request that asked for it (ECS fields)
    assert record["http"]["request"]["id"] == request_id and record["labels"]["reservation_id"]
    assert record["log.level"] == "info" and record["event"]["dataset"] == "tickets.worker"
    assert record["service"]["name"] == "tickets"


# the ECS fields these logs use (ECS 1.6 names and types); labels.* are ECS's free keywords
ECS_FIELDS = {"@timestamp": str, "log.level": str, "message": str, "ecs.version": str, "log.logger": str,
              "log.origin.file.line": int, "log.origin.file.name": str, "log.origin.function": str,
              "process.name": str, "process.pid": int, "process.thread.id": int, "process.thread.name": str,
              "error.message": str, "error.stack_trace": str, "error.type": str, "service.name": str,
              "event.dataset": str, "http.request.id": str, "user.id": str}
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def flatten(record: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def test_every_log_line_of_a_sale_is_ecs_with_no_personal_data(app, live_api, worker, make_event, make_user):
    """The worker's and the API's lines while a sale runs (join, admission, reserve, hold, pay,
    notices): each is one ECS object whose fields are ECS's, typed as ECS says, with the service
    and the process's dataset, and no e-mail address anywhere."""
    exercise_a_sale(app, live_api, make_event, make_user)
    lines = [line for line in worker.output().splitlines() + live_api.log_path.read_text().splitlines()
             if line.startswith("{")]
    assert len(lines) > 20
    datasets = set()
    for line in lines:
        record = json.loads(line)
        for name, value in flatten(record).items():
            if name.startswith("labels."):
                assert isinstance(value, str) and "." not in name[7:], (name, line)
                continue
            assert name in ECS_FIELDS, (name, line)
            assert isinstance(value, ECS_FIELDS[name]), (name, value, line)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["@timestamp"]), line
        assert record["log.level"] in {"debug", "info", "warning", "error", "critical"}, line
        assert record["service"]["name"] == "tickets" and record["ecs.version"], line
        datasets.add(record["event"]["dataset"])
        assert not EMAIL.search(line), line
    assert "tickets.worker" in datasets


def test_api_metrics_are_summed_over_gunicorn_workers(live_api):
    def served() -> float:
        return sum(float(line.rsplit(" ", 1)[1])
                   for line in scrape(f"{live_api.url}/metrics").get("flask_http_request_duration_seconds_count", [])
                   if 'url_rule="/healthz"' not in line and 'url_rule="/api/events"' in line)

    before = served()
    for _ in range(40):  # new connections: the kernel spreads them over both workers
        assert requests.get(f"{live_api.url}/api/events", timeout=5).status_code == 200
    # whichever worker answers /metrics reports every worker's requests: several scrapes (new
    # connections, so different workers) all see the same total
    assert {served() - before for _ in range(6)} == {40}
