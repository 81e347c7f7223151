"""Operator commands on the Celery CLI (`celery -A tasks queue|outbox|holds ...`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from sqlalchemy import select

from app.booking.models import Reservation
from app.extensions import db
from tests.support import ROOT


def celery_cli(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "celery", "-A", "tasks", *args], cwd=ROOT, env={**os.environ},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout[out.stdout.index("{"):])


def test_queue_commands(app, client, make_event, make_user):
    event = make_event(admit_per_minute=60)
    users = [make_user() for _ in range(4)]
    for u in users:
        client.post(f"/api/queue/{event['id']}/join", headers=u["headers"])
    stats = celery_cli("queue", "stats", str(event["id"]))
    assert stats["waiting"] == 4 and stats["paused"] is False
    assert celery_cli("queue", "pause", str(event["id"]))["paused"] is True
    assert celery_cli("queue", "advance", str(event["id"]))["status"] == "paused"
    assert celery_cli("queue", "resume", str(event["id"]))["paused"] is False
    advanced = celery_cli("queue", "advance", str(event["id"]), "--count", "3")
    assert advanced["admitted"] == [u["id"] for u in users[:3]]
    assert celery_cli("queue", "stats", str(event["id"]))["active"] == 3


def test_outbox_and_holds_commands(app, client, worker, make_event, make_user):
    from tests.helpers import admitted_pass, wait_reservation

    event = make_event(sections=[{"name": "Floor", "capacity": 3}], hold_seconds=1)
    user = make_user()
    token = admitted_pass(client, app, event["id"], user)
    r = client.post("/api/tickets/reserve", json={"event_id": event["id"], "section_id": event["sections"][0]["id"],
                                                  "quantity": 2},
                    headers={**user["headers"], "X-Admission-Token": token, "Idempotency-Key": "cli"})
    wait_reservation(client, user, r.json["reservation_id"])
    status = celery_cli("outbox", "status")
    assert set(status) == {"unpublished", "oldest_age_seconds"}
    assert "published" in celery_cli("outbox", "relay")
    time.sleep(1.2)
    assert celery_cli("holds", "sweep")["expired"] == 1
    with app.app_context():
        assert db.session.scalar(select(Reservation.status)) == "expired"
        db.session.rollback()
