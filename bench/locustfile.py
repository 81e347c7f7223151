"""The whole fan journey as a Locust user, to point at your own deployment:

    pip install -r requirements-load.txt
    EVENT_ID=1 locust -f bench/locustfile.py --host https://tickets.example.com

Each simulated fan registers and logs in, joins the sale's waiting room, polls its status at the
pace the server asks for (`poll_after_ms`) until admitted, reserves one ticket in the event's first
section with an Idempotency-Key, waits for the hold, and confirms it with the payment token.

Settings (environment): EVENT_ID (required), SECTION_ID (default: the event's first section),
QUANTITY (1), PAYMENT_TOKEN (`tok_ok_visa`, which the built-in fake provider approves),
PASSWORD (`s3cret-Passw0rd`). This is for load-testing a deployment; the numbers in the README come
from `make bench` (wrk against a reference app in the same run).
"""

from __future__ import annotations

import os
import time
import uuid

from locust import HttpUser, between, task

EVENT_ID = int(os.environ.get("EVENT_ID", "1"))
QUANTITY = int(os.environ.get("QUANTITY", "1"))
PAYMENT_TOKEN = os.environ.get("PAYMENT_TOKEN", "tok_ok_visa")
PASSWORD = os.environ.get("PASSWORD", "s3cret-Passw0rd")
FINAL = {"held", "confirmed", "rejected", "expired", "cancelled"}


class Fan(HttpUser):
    wait_time = between(1, 3)

    def on_start(self) -> None:
        email = f"locust-{uuid.uuid4().hex[:12]}@example.com"
        self.client.post("/api/auth/register", json={"email": email, "password": PASSWORD, "name": "Locust fan"})
        token = self.client.post("/api/auth/login", json={"email": email, "password": PASSWORD}).json()
        self.client.headers["Authorization"] = f"Bearer {token['access_token']}"
        section = os.environ.get("SECTION_ID")
        if section is None:
            event = self.client.get(f"/api/events/{EVENT_ID}", name="/api/events/[id]").json()
            section = event["sections"][0]["id"]
        self.section_id = int(section)
        self.done = False

    @task
    def buy_a_ticket(self) -> None:
        if self.done:
            self.stop()  # one purchase per fan
            return
        status = self.client.post(f"/api/queue/{EVENT_ID}/join", name="/api/queue/[id]/join").json()
        while status.get("status") == "waiting":
            time.sleep(max(1.0, (status.get("poll_after_ms") or 1000) / 1000))
            status = self.client.get(f"/api/queue/{EVENT_ID}/status", name="/api/queue/[id]/status").json()
        if status.get("status") != "admitted":
            self.done = True
            return
        headers = {"X-Admission-Token": status["admission_token"], "Idempotency-Key": uuid.uuid4().hex}
        with self.client.post("/api/tickets/reserve", headers=headers, catch_response=True,
                              json={"event_id": EVENT_ID, "section_id": self.section_id,
                                    "quantity": QUANTITY}) as reply:
            if reply.status_code == 409:
                reply.success()  # sold out is an answer, not an error
                self.done = True
                return
        reservation = reply.json()
        while reservation.get("status") == "pending":
            time.sleep(0.5)
            reservation = self.client.get(reservation["status_url"], name="/api/tickets/status/[id]").json()
        if reservation.get("status") == "held":
            self.client.post(f"/api/tickets/{reservation['reservation_id']}/confirm",
                             json={"payment_token": PAYMENT_TOKEN}, name="/api/tickets/[id]/confirm")
        self.done = True
