"""`make run` (devtools/devstack.py) as a new user meets it: the whole system on embedded defaults, the
README's fan flow against it, the operator's CLIs from a "second terminal" that sets no variable,
the dev inbox, one scrape target per series, Flower without the housekeeping ticks, and a clean
Ctrl-C. Everything runs on private ports and a private Redis; nothing here touches the suite's
Redis or database."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from tests.support import ROOT, free_port, wait_for

PORTS = ("PORT", "FLOWER_PORT", "EXPORTER_PORT", "DEV_INBOX_PORT", "DEV_REDIS_PORT", "DEV_KAFKA_PORT",
         "DEV_SMTP_PORT", "DEV_SNS_PORT", "DEV_MARIADB_PORT", "DEV_STRIPE_PORT")


def second_terminal(dev_env: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """A command run as from a fresh shell: no variable but where `make run` wrote dev.env (the
    default instance/dev.env is left alone so a developer's own `make run` is not disturbed)."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "TICKETS_DEV_ENV": str(dev_env)}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def series(text: str) -> set[str]:
    """Our own series (name and labels) of a Prometheus text page."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line.startswith("tickets_")}


@pytest.fixture()
def devstack(tmp_path):
    ports = {name: str(free_port()) for name in PORTS}
    dev_env = tmp_path / "dev.env"
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path)),
           "DEV_VAR_DIR": str(tmp_path / "var"),  # no DATABASE_URL: make run starts its own MariaDB
           "TICKETS_DEV_ENV": str(dev_env), **ports}
    log = open(tmp_path / "make-run.log", "w+")  # noqa: SIM115 - read back while the stack runs
    proc = subprocess.Popen([sys.executable, "-m", "devtools.devstack"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)

    def output() -> str:
        return (tmp_path / "make-run.log").read_text(errors="replace")

    try:
        wait_for(lambda: "Settings" in output() or proc.poll() is not None, timeout=180, interval=0.5,
                 message="make run banner")
        assert proc.poll() is None, output()[-4000:]
        yield {"proc": proc, "output": output, "ports": ports, "dev_env": dev_env,
               "api": f"http://127.0.0.1:{ports['PORT']}/api"}
    finally:
        if proc.poll() is None:
            # the ordered stop, so nothing it started outlives the test (its children run in
            # sessions of their own; a SIGKILL here would orphan them)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


def test_make_run_serves_the_readme_flow_to_the_operators_tools_and_stops_cleanly(devstack):
    banner = devstack["output"]()
    ports, api, dev_env = devstack["ports"], devstack["api"], devstack["dev_env"]
    for url in (f"http://127.0.0.1:{ports['PORT']}/api/docs", f"http://127.0.0.1:{ports['FLOWER_PORT']}",
                f"http://127.0.0.1:{ports['EXPORTER_PORT']}/metrics", f"http://127.0.0.1:{ports['DEV_INBOX_PORT']}/",
                f"127.0.0.1:{ports['DEV_KAFKA_PORT']}", f"redis://127.0.0.1:{ports['DEV_REDIS_PORT']}/0",
                f"mysql+pymysql://root@127.0.0.1:{ports['DEV_MARIADB_PORT']}/tickets",
                f"Stripe at http://127.0.0.1:{ports['DEV_STRIPE_PORT']}"):
        assert url in banner, (url, banner[-3000:])
    demo = re.search(r"Demo +event_id=(\d+) Floor: section_id=(\d+) Balcony: section_id=(\d+)", banner)
    assert demo, banner[-3000:]
    event_id, floor_id = int(demo.group(1)), int(demo.group(2))
    assert f"REDIS_URL=redis://127.0.0.1:{ports['DEV_REDIS_PORT']}/0" in dev_env.read_text()

    # the README's client flow
    email = f"fan-{uuid.uuid4().hex[:6]}@example.com"
    assert requests.post(f"{api}/auth/register", json={"email": email, "password": "fan-s3cret-2026", "name": "Fan"},
                         timeout=10).status_code == 201
    token = requests.post(f"{api}/auth/login", json={"email": email, "password": "fan-s3cret-2026"},
                          timeout=10).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    for channel in ({"channel": "email", "address": email}, {"channel": "sms", "phone": "+15555550123"},
                    {"channel": "push", "platform": "fcm", "token": f"fcm-{uuid.uuid4().hex}"}):
        assert requests.post(f"{api}/notifications/register", json=channel, headers=auth, timeout=10).status_code == 201
    assert requests.post(f"{api}/queue/{event_id}/join", headers=auth, timeout=10).status_code == 202
    status = wait_for(lambda: (s := requests.get(f"{api}/queue/{event_id}/status", headers=auth, timeout=10).json())
                      and s["status"] == "admitted" and s, timeout=30, message="admitted")
    reply = requests.post(f"{api}/tickets/reserve", json={"event_id": event_id, "section_id": floor_id, "quantity": 2},
                          headers={**auth, "X-Admission-Token": status["admission_token"],
                                   "Idempotency-Key": str(uuid.uuid4())}, timeout=10)
    assert reply.status_code == 202, reply.text
    rid = reply.json()["reservation_id"]
    wait_for(lambda: requests.get(f"{api}/tickets/status/{rid}", headers=auth, timeout=10).json()["status"] == "held",
             timeout=30, message="held")

    # the dev inbox shows what the fan was sent on every channel, with its text and link
    def inbox() -> list[dict]:
        return requests.get(f"http://127.0.0.1:{ports['DEV_INBOX_PORT']}/messages", timeout=5).json()["messages"]

    def notices() -> list[dict]:  # the admission's, not the sign-up code (also in the inbox)
        return [m for m in inbox() if m["title"] != "Confirm your e-mail"]

    signup = wait_for(lambda: [m for m in inbox() if m["title"] == "Confirm your e-mail"], timeout=30,
                      message="the sign-up code")
    assert email in signup[0]["to"] and re.search(r"\b\d{6}\b", signup[0]["text"])
    messages = wait_for(lambda: (m := notices()) and len(m) >= 3 and m, timeout=30, message="three notices")
    assert {m["channel"] for m in messages} == {"email", "sms", "push (fcm)"}
    for message in messages:
        # the web link opens this stack's waiting-room page (the web app resumes the place)
        assert f"http://127.0.0.1:{ports['PORT']}/events/{event_id}/queue" in message["links"], message
        assert "Demo Concert" in message["text"], message
    assert email in requests.get(f"http://127.0.0.1:{ports['DEV_INBOX_PORT']}/", timeout=5).text
    # really handed to SMTP and SNS: the worker records each outcome once its sends are done (the
    # inbox shows a message as soon as it is sent)
    wait_for(lambda: {n["status"] for n in requests.get(f"{api}/notifications", headers=auth,
                                                        timeout=10).json()["items"]} == {"sent"},
             timeout=30, message="every notice recorded as sent")

    # the fan pays through localstripe (the card as Stripe.js would send it) and gets a receipt
    import stripe

    card = stripe.StripeClient("sk_test_dev", base_addresses={"api": f"http://127.0.0.1:{ports['DEV_STRIPE_PORT']}"}
                               ).v1.payment_methods.create(params={"type": "card", "card": {
                                   "number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    paid = requests.post(f"{api}/tickets/{rid}/confirm", json={"payment_token": card.id}, headers=auth, timeout=30)
    assert paid.status_code == 200 and paid.json()["order_number"], paid.text
    number = paid.json()["order_number"]
    wait_for(lambda: any(number in m["text"] for m in inbox()), timeout=30, message="the receipt in the dev inbox")

    # a second terminal reaches this system with no variable set by hand
    stats = second_terminal(dev_env, "celery", "-A", "tasks", "queue", "stats", str(event_id))
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["admitted_total"] >= 1

    def tailed() -> list[dict]:
        out = second_terminal(dev_env, "flask", "--app", "wsgi", "events", "tail", "--from-beginning",
                              "--timeout", "4")
        assert out.returncode == 0, out.stderr
        return [json.loads(line)["event"]["type"] for line in out.stdout.splitlines() if line.startswith("{")]

    seen = wait_for(lambda: {"QueueJoined", "UserAdmitted", "SeatsHeld"} <= set(t := tailed()) and t, timeout=60,
                    interval=1, message="the sale's events in Kafka")
    assert "NotificationSent" in seen

    # each series in exactly one scrape target
    api_series = series(requests.get(f"http://127.0.0.1:{ports['PORT']}/metrics", timeout=10).text)
    exporter_series = series(requests.get(f"http://127.0.0.1:{ports['EXPORTER_PORT']}/metrics", timeout=10).text)
    assert 'tickets_reservations_total{outcome="requested"}' in api_series
    assert 'tickets_reservations_total{outcome="held"}' in exporter_series
    assert not api_series & exporter_series, sorted(api_series & exporter_series)

    # Flower shows the sale's work, not beat's once-a-second ticks
    flower = f"http://127.0.0.1:{ports['FLOWER_PORT']}/api/tasks"
    names = wait_for(lambda: (n := {t["name"] for t in requests.get(flower, timeout=10).json().values()})
                     and "notifications.notify_admissions" in n and n, timeout=30, message="Flower's task list")
    # (outbox.relay may show: a commit kicks it for this sale's events, debounced; beat's own
    # 5-second relay tick goes to the housekeeping worker like the others)
    assert not names & {"queue.advance_all", "queue.drain_events"}, names

    # Ctrl-C: everything stops, in order, without a traceback, and dev.env goes away
    proc = devstack["proc"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(90) == 0
    out = devstack["output"]()
    assert "make run: stopped" in out
    assert "Traceback" not in out and "Couldn't ack" not in out, out[-4000:]
    assert not dev_env.exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", int(ports["DEV_REDIS_PORT"]))) != 0, "Redis still running"


def test_make_run_refuses_a_taken_public_port_and_moves_off_a_taken_internal_one():
    from devtools.devstack import PortTaken, internal_port, public_ports

    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        taken = foreign.getsockname()[1]
        free = {name: str(free_port()) for name in ("PORT", "FLOWER_PORT", "EXPORTER_PORT", "DEV_INBOX_PORT")}
        with pytest.raises(PortTaken, match=f"port {taken} .*set FLOWER_PORT"):
            public_ports({**free, "FLOWER_PORT": str(taken)})
        assert public_ports(free) == {k: int(v) for k, v in free.items()}
        moved = internal_port({"DEV_REDIS_PORT": str(taken)}, "DEV_REDIS_PORT", 6390)
        assert moved != taken and moved > 0
        spare = free_port()
        assert internal_port({"DEV_REDIS_PORT": str(spare)}, "DEV_REDIS_PORT", 6390) == spare


def readme_client_blocks() -> str:
    """The README's client flow: every ```sh block of "A sale from the client's side" and its
    subsection, in order, as one script."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## A sale from the client's side")
    section = text[start:text.index("\n## ", start + 3)]
    return "\n".join(re.findall(r"```sh\n(.*?)```", section, re.S))


def test_the_readmes_client_flow_runs_as_pasted_against_make_run(devstack):
    ports = devstack["ports"]
    script = readme_client_blocks()
    assert script.count("curl") > 20
    # the README names make run's default ports; this stack runs on free ones
    script = (script.replace("127.0.0.1:8000", f"127.0.0.1:{ports['PORT']}")
              .replace("127.0.0.1:8420", f"127.0.0.1:{ports['DEV_STRIPE_PORT']}")
              .replace("127.0.0.1:8025", f"127.0.0.1:{ports['DEV_INBOX_PORT']}"))
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=240,
                         cwd=ROOT)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    out = run.stdout
    assert re.search(r'"result":\s*"admitted"', out), out[-3000:]  # the door
    assert re.search(r'"reason":\s*"sold_out"', out), out[-3000:]  # the second fan, refused
    assert re.search(r'"status":\s*"succeeded"', out), out[-3000:]  # the first fan's refund
    assert re.search(r'"lane":\s*"presale"', out), out[-3000:]  # the fan-club member, in the presale lane
    assert re.search(r'"redeemed":\s*1\b', out), out[-3000:]  # the console's figure of the lane
    last = out.strip().splitlines()[-1]  # the last block's last answer: the presale's Balcony seats, paid
    assert re.search(r'"status":\s*"confirmed"', last) and re.search(r'"order_number":\s*"\w', last), last
