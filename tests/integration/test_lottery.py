"""The registration lottery of a presale (issue #31): fans with a verified e-mail register once,
the draw at the deadline is committed in advance and verifiable, each winner is told their code
exactly once and joins the presale lane with it, the standby list is promoted in draw order."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import select

from app.db import utcnow
from tests.helpers import events_of
from tests.support import ROOT, wait_for


def _mails_to(smtp_sink, address: str) -> list[email.message.EmailMessage]:
    return [email.message_from_string(m["data"], policy=email.policy.default) for m in smtp_sink.messages
            if address in m["to"]]


def _text(message: email.message.EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def test_a_lottery_draws_tells_each_winner_once_and_the_winners_join_the_presale_lane(
        app, client, admin, make_user, worker, smtp_sink, live_api):
    opens = utcnow() + timedelta(hours=2)
    event_id = client.post("/api/events", headers=admin["headers"], json={
        "name": "Lottery Live", "venue": "Dome", "starts_at": (opens + timedelta(days=9)).isoformat(),
        "sale_opens_at": opens.isoformat(), "admit_per_minute": 600, "max_active": 1000,
        "prequeue_minutes": 180}).json["id"]
    assert client.post(f"/api/events/{event_id}/lanes", headers=admin["headers"], json={
        "name": "presale", "share_percent": 40, "opens_at": (utcnow() + timedelta(hours=1)).isoformat()
    }).status_code == 201
    created = client.post(f"/api/events/{event_id}/lottery", headers=admin["headers"], json={
        "lane": "presale", "winners": 3, "closes_at": (utcnow() + timedelta(minutes=30)).isoformat(),
        "losers": "waitlist", "ticket_limit": 2})
    assert created.status_code == 201, created.json
    assert created.json["state"] == "open" and created.json["seed"] is None
    commitment = created.json["commitment"]
    assert [e["commitment"] for e in events_of(app, "LotteryCommitted", event_id)] == [commitment]
    again = client.post(f"/api/events/{event_id}/lottery", headers=admin["headers"], json={
        "lane": "presale", "winners": 1, "closes_at": (utcnow() + timedelta(minutes=5)).isoformat()})
    assert again.status_code == 409 and again.json["reason"] == "lottery_exists"

    fans = [make_user(notify_by_email=True) for _ in range(8)]
    for fan in fans:
        entered = client.post(f"/api/events/{event_id}/lottery/entries", headers=fan["headers"])
        assert entered.status_code == 201 and entered.json["state"] == "registered", entered.json
    twice = client.post(f"/api/events/{event_id}/lottery/entries", headers=fans[0]["headers"])
    assert twice.status_code == 200  # one entry per account
    unverified = client.post(f"/api/events/{event_id}/lottery/entries", headers=make_user(verified=False)["headers"])
    assert unverified.status_code == 403 and unverified.json["reason"] == "email_unverified"
    assert client.get(f"/api/events/{event_id}/lottery").json["registered"] == 8

    drawn = client.post(f"/api/events/{event_id}/lottery/draw", headers=admin["headers"])
    assert drawn.status_code == 200 and drawn.json["state"] == "drawn" and drawn.json["entrants"] == 8
    late = client.post(f"/api/events/{event_id}/lottery/entries", headers=make_user()["headers"])
    assert late.status_code == 409 and late.json["reason"] == "lottery_closed"
    entries = {fan["id"]: client.get(f"/api/events/{event_id}/lottery/me", headers=fan["headers"]).json
               for fan in fans}
    winners = [fan for fan in fans if entries[fan["id"]]["state"] == "won"]
    standby = sorted((fan for fan in fans if entries[fan["id"]]["state"] == "standby"),
                     key=lambda fan: entries[fan["id"]]["place"])
    assert len(winners) == 3 and len(standby) == 5
    assert sorted(entries[f["id"]]["place"] for f in winners) == [1, 2, 3]
    assert [entries[f["id"]]["standby_place"] for f in standby] == [1, 2, 3, 4, 5]

    # every winner is told their code once, every other fan their standby place once
    def all_told():
        return all(len(_mails_to(smtp_sink, fan["email"])) >= 1 for fan in fans)

    wait_for(all_told, timeout=30, message="a notice to every entrant")
    from app.sales import lottery_flows

    with app.app_context():
        assert lottery_flows.draw_due() == 0  # a second run draws nothing and records no notice
    for fan in winners:
        mails = _mails_to(smtp_sink, fan["email"])
        assert len(mails) == 1 and mails[0]["Subject"] == "You won the presale draw!"
        assert entries[fan["id"]]["code"] in _text(mails[0])
    for fan in standby:
        mails = _mails_to(smtp_sink, fan["email"])
        assert len(mails) == 1 and f"number {entries[fan['id']]['standby_place']} on its standby" in _text(mails[0])
    with app.app_context():
        from app.extensions import db
        from app.notifications.models import Notification

        kinds = db.session.scalars(select(Notification.kind).where(Notification.event_id == event_id)).all()
        assert sorted(kinds) == ["lottery_standby"] * 5 + ["lottery_won"] * 3
        db.session.rollback()

    # the winners join the presale lane with their codes, nobody else can use them
    winner = winners[0]
    code = entries[winner["id"]]["code"]
    stolen = client.post(f"/api/queue/{event_id}/join", headers=standby[0]["headers"], json={"code": code})
    assert stolen.status_code == 403 and stolen.json["reason"] == "access_code_other_email"
    joined = client.post(f"/api/queue/{event_id}/join", headers=winner["headers"], json={"code": code})
    assert joined.status_code == 202 and joined.json["lane"] == "presale" and joined.json["ticket_limit"] == 2

    # a winner's code went unused: the first of the standby list is promoted, and told once
    promoted = client.post(f"/api/events/{event_id}/lottery/promote", headers=admin["headers"], json={"count": 1})
    assert promoted.status_code == 200 and promoted.json["promoted"] == 1
    first = standby[0]
    mine = client.get(f"/api/events/{event_id}/lottery/me", headers=first["headers"]).json
    assert mine["state"] == "won"
    wait_for(lambda: len(_mails_to(smtp_sink, first["email"])) == 2, timeout=30, message="the promotion's notice")
    assert mine["code"] in _text(_mails_to(smtp_sink, first["email"])[-1])
    assert client.post(f"/api/queue/{event_id}/join", headers=first["headers"],
                       json={"code": mine["code"]}).json["lane"] == "presale"

    # anyone can check the draw: the seed matches the commitment and orders every entrant
    published = events_of(app, "LotteryDrawn", event_id)
    assert len(published) == 1 and published[0]["commitment"] == commitment
    verdict = subprocess.run([sys.executable, "-m", "app.queue.verify_draw", f"{live_api.url}/events/{event_id}",
                              "--lottery", "--entrant", entries[winner["id"]]["entrant_id"]],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert f"place {entries[winner['id']]['place']} of 8" in verdict.stdout


def test_a_draw_whose_codes_never_reached_redis_is_copied_by_the_next_run(app, client, admin, make_user):
    """The worker dies between the draw's commit and the copy of its codes to Redis: the winner's
    code is refused until the next beat run copies them, once, and then it works."""
    event_id = client.post("/api/events", headers=admin["headers"], json={
        "name": "Crash Draw", "venue": "Dome", "starts_at": (utcnow() + timedelta(days=9)).isoformat(),
        "sale_opens_at": (utcnow() + timedelta(hours=2)).isoformat(), "admit_per_minute": 60, "max_active": 10,
        "prequeue_minutes": 180}).json["id"]
    assert client.post(f"/api/events/{event_id}/lanes", headers=admin["headers"],
                       json={"name": "presale", "share_percent": 30}).status_code == 201
    assert client.post(f"/api/events/{event_id}/lottery", headers=admin["headers"], json={
        "lane": "presale", "winners": 1, "closes_at": (utcnow() + timedelta(minutes=5)).isoformat()}).status_code == 201
    fan = make_user()
    assert client.post(f"/api/events/{event_id}/lottery/entries", headers=fan["headers"]).status_code == 201
    from app.db import transaction
    from app.sales import lottery, lottery_flows

    with app.app_context():
        with transaction():
            lottery.close_now(event_id)
        with transaction():  # the draw commits; the process dies before anything after it
            assert lottery.draw(event_id) is not None
    code = client.get(f"/api/events/{event_id}/lottery/me", headers=fan["headers"]).json["code"]
    refused = client.post(f"/api/queue/{event_id}/join", headers=fan["headers"], json={"code": code})
    assert refused.status_code == 422 and refused.json["reason"] == "access_code_invalid"
    with app.app_context():
        assert lottery_flows.draw_due() == 0  # nothing to draw again: only the copy is made
    joined = client.post(f"/api/queue/{event_id}/join", headers=fan["headers"], json={"code": code})
    assert joined.status_code == 202 and joined.json["lane"] == "presale"
