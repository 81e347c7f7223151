"""Catalogue CRUD and authorisation: admins write, anyone reads, unknown ids are 404."""

from __future__ import annotations

EVENT = {"name": "Concert", "venue": "Arena", "starts_at": "2027-06-01T19:00:00Z",
         "sale_opens_at": "2027-05-01T10:00:00Z", "admit_per_minute": 300, "max_active": 500}


def test_admin_creates_event_and_sections_anyone_reads(client, admin):
    r = client.post("/api/events", json=EVENT, headers=admin["headers"])
    assert r.status_code == 201, r.json
    event = r.json
    assert event["admission_window_seconds"] == 600 and event["prequeue_minutes"] == 15
    assert event["sale_opens_at"].startswith("2027-05-01T10:00:00")

    ga = client.post(f"/api/events/{event['id']}/sections", headers=admin["headers"],
                     json={"name": "Floor", "price_cents": 4500, "currency": "eur", "capacity": 300})
    assert ga.status_code == 201 and ga.json["kind"] == "general" and ga.json["capacity"] == 300
    assert ga.json["currency"] == "EUR"
    seated = client.post(f"/api/events/{event['id']}/sections", headers=admin["headers"],
                         json={"name": "Balcony", "price_cents": 9900, "currency": "EUR", "rows": 3,
                               "seats_per_row": 4})
    assert seated.status_code == 201 and seated.json["kind"] == "seated" and seated.json["capacity"] == 12

    detail = client.get(f"/api/events/{event['id']}")
    assert detail.status_code == 200
    assert [(s["name"], s["available"]) for s in detail.json["sections"]] == [("Floor", 300), ("Balcony", 12)]

    seats = client.get(f"/api/events/{event['id']}/sections/{seated.json['id']}/seats")
    assert seats.status_code == 200
    labels = [s["label"] for s in seats.json["seats"]]
    assert labels[:5] == ["A1", "A2", "A3", "A4", "B1"] and labels[-1] == "C4"
    assert {s["state"] for s in seats.json["seats"]} == {"available"}

    listing = client.get("/api/events?page=1&page_size=10")
    assert listing.status_code == 200 and listing.json["total"] == 1
    assert listing.json["items"][0]["name"] == "Concert"


def test_pagination(client, admin):
    for i in range(5):
        client.post("/api/events", json={**EVENT, "name": f"E{i}"}, headers=admin["headers"])
    page = client.get("/api/events?page=2&page_size=2").json
    assert page["total"] == 5 and len(page["items"]) == 2 and page["page"] == 2
    assert client.get("/api/events?page_size=1000").status_code == 422


def test_non_admin_writes_are_403_and_anonymous_401(client, make_user, admin):
    user = make_user()
    r = client.post("/api/events", json=EVENT, headers=user["headers"])
    assert r.status_code == 403 and r.json["reason"] == "not_admin"
    assert client.post("/api/events", json=EVENT).status_code == 401
    event = client.post("/api/events", json=EVENT, headers=admin["headers"]).json
    r = client.post(f"/api/events/{event['id']}/sections", headers=user["headers"],
                    json={"name": "X", "price_cents": 1, "currency": "EUR", "capacity": 1})
    assert r.status_code == 403


def test_unknown_ids_are_404(client, admin):
    assert client.get("/api/events/999999").status_code == 404
    r = client.post("/api/events/999999/sections", headers=admin["headers"],
                    json={"name": "X", "price_cents": 1, "currency": "EUR", "capacity": 1})
    assert r.status_code == 404 and r.json["reason"] == "event_not_found"
    event = client.post("/api/events", json=EVENT, headers=admin["headers"]).json
    assert client.get(f"/api/events/{event['id']}/sections/999999/seats").status_code == 404


def test_invalid_catalogue_input_is_422(client, admin):
    h = admin["headers"]
    assert client.post("/api/events", json={**EVENT, "admit_per_minute": 0}, headers=h).status_code == 422
    r = client.post("/api/events", json={**EVENT, "sale_opens_at": "2027-07-01T00:00:00Z"}, headers=h)
    assert r.status_code == 422 and "sale_opens_at" in r.json["errors"]
    event = client.post("/api/events", json=EVENT, headers=h).json
    url = f"/api/events/{event['id']}/sections"
    both = {"name": "X", "price_cents": 1, "currency": "EUR", "capacity": 5, "rows": 1, "seats_per_row": 2}
    assert client.post(url, json=both, headers=h).status_code == 422
    assert client.post(url, json={"name": "X", "price_cents": 1, "currency": "EUR"}, headers=h).status_code == 422
    assert client.post(url, json={"name": "X", "price_cents": 1, "currency": "EURO", "capacity": 1},
                       headers=h).status_code == 422
    assert client.post(url, json={"name": "X", "price_cents": -1, "currency": "EUR", "capacity": 1},
                       headers=h).status_code == 422
    ok = {"name": "Dup", "price_cents": 1, "currency": "EUR", "capacity": 1}
    assert client.post(url, json=ok, headers=h).status_code == 201
    assert client.post(url, json=ok, headers=h).status_code == 409
