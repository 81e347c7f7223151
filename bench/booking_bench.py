"""Booking benchmark: reserve requests accepted per second through gunicorn, and reserve -> held
latency through Celery prefork workers, MariaDB and Redis.

    make bench-booking BENCH_ARGS="--buyers 1000 --capacity 600 --concurrency 48 --worker-concurrency 4"
"""

from __future__ import annotations

import argparse
import time
import uuid

from bench.common import (
    configure,
    create_event,
    fresh_database,
    make_users,
    percentile,
    report,
    run_load,
    summarize,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--buyers", type=int, default=1000)
    parser.add_argument("--capacity", type=int, default=600, help="general admission units (the rest sell out)")
    parser.add_argument("--seats", type=int, default=200, help="seats in a seated section (rows of 20)")
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    args = parser.parse_args()
    env = configure()
    fresh_database(env["DATABASE_URL"])
    from sqlalchemy import select

    from app import create_app
    from app.booking.models import Reservation
    from app.catalogue.models import Seat
    from app.extensions import db
    from app.queue.services import admit_now, join, status
    from tests.support import LiveApi, start_worker, wait_for

    app = create_app()
    event_id, (ga_id, seated_id) = create_event(app, [
        {"name": "Floor", "capacity": args.capacity},
        {"name": "Seats", "rows": max(1, args.seats // 20), "seats_per_row": 20}])
    with app.app_context():
        seat_ids = list(db.session.scalars(select(Seat.id).where(Seat.section_id == seated_id).order_by(Seat.id)))
    buyers = make_users(app, args.buyers)
    with app.test_request_context():
        for b in buyers:
            join(event_id, b["id"])
        admit_now(event_id, len(buyers))
        for b in buyers:
            b["pass"] = status(event_id, b["id"]).admission_token
    worker = start_worker(concurrency=args.worker_concurrency, name="bench",
                          env={"PROMETHEUS_MULTIPROC_DIR": ""})
    api = LiveApi(env={"PROMETHEUS_MULTIPROC_DIR": ""})
    outcomes = {"accepted": 0, "sold_out": 0}
    bodies = []
    for i in range(len(buyers)):
        if i % 4 == 3:  # a quarter of buyers want two neighbouring seats, overlapping with others
            start = (i * 7) % max(1, len(seat_ids) - 1)
            bodies.append({"event_id": event_id, "section_id": seated_id, "seat_ids": seat_ids[start:start + 2]})
        else:
            bodies.append({"event_id": event_id, "section_id": ga_id, "quantity": 1})

    def reserve(session, i: int) -> bool:
        b = buyers[i]
        r = session.post(f"{api.url}/api/tickets/reserve", json=bodies[i], timeout=30,
                         headers={**b["headers"], "X-Admission-Token": b["pass"], "Idempotency-Key": uuid.uuid4().hex})
        if r.status_code == 202:
            outcomes["accepted"] += 1
        elif r.status_code == 409:
            outcomes["sold_out"] += 1
        return r.status_code in (202, 409)

    try:
        started = time.monotonic()
        lat, errors, elapsed = run_load(list(range(len(buyers))), reserve, args.concurrency)

        def settled() -> bool:
            with app.app_context():
                pending = db.session.query(Reservation).filter_by(status="pending").count()
                db.session.rollback()
                return pending == 0

        wait_for(settled, timeout=600, interval=0.5, message="all holds processed")
        drained = time.monotonic() - started
        with app.app_context():
            rows = db.session.query(Reservation).all()
            hold_lat = [(r.updated_at - r.created_at).total_seconds() for r in rows if r.status == "held"]
            held_units = sum(r.quantity for r in rows if r.status == "held")
            rejected = sum(1 for r in rows if r.status == "rejected")
            db.session.rollback()
    finally:
        api.stop()
        worker.stop()
    hold_row = {"name": "reserve -> held (async)", "requests": len(hold_lat), "errors": rejected,
                "seconds": round(drained, 3), "throughput_per_s": round(len(hold_lat) / drained, 1),
                **{f"p{int(q * 100)}_ms": round(percentile(hold_lat, q) * 1000, 2) for q in (0.5, 0.95, 0.99)}}
    report("booking", [summarize("reserve (POST, 202/409)", lat, elapsed, errors, **outcomes), hold_row],
           {"buyers": args.buyers, "ga_capacity": args.capacity, "seats": len(seat_ids),
            "held_units": held_units, "rejected_in_worker": rejected, "api_concurrency": args.concurrency,
            "worker_concurrency": args.worker_concurrency, "db": env["DATABASE_URL"].split(":")[0],
            "at": time.strftime("%Y-%m-%d %H:%M")})


if __name__ == "__main__":
    main()
