"""Waiting-room benchmark: joins and status polls against gunicorn (gevent) + real Redis.

    make bench-queue BENCH_ARGS="--users 3000 --concurrency 64 --poll-seconds 15"
"""

from __future__ import annotations

import argparse
import random
import threading
import time

from bench.common import configure, create_event, fresh_database, make_users, report, run_load, summarize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--poll-seconds", type=float, default=10.0)
    parser.add_argument("--api-workers", type=int, default=2)
    args = parser.parse_args()
    env = configure()
    fresh_database(env["DATABASE_URL"])
    from app import create_app
    from app.queue.services import advance
    from tests.support import LiveApi

    app = create_app()
    event_id, _ = create_event(app, admission_window_seconds=600, heartbeat_timeout_seconds=600)
    users = make_users(app, args.users)
    api = LiveApi(env={"PROMETHEUS_MULTIPROC_DIR": ""}, workers=args.api_workers)
    stop = threading.Event()

    def advancer() -> None:  # what beat does once a second
        while not stop.is_set():
            with app.app_context():
                advance(event_id)
            stop.wait(1.0)

    try:
        base = f"{api.url}/api/queue/{event_id}"
        join_lat, join_err, join_s = run_load(
            users, lambda s, u: s.post(f"{base}/join", headers=u["headers"], timeout=10).status_code == 202,
            args.concurrency)
        thread = threading.Thread(target=advancer, daemon=True)
        thread.start()
        rng = random.Random(1)
        sample = users[:]
        rng.shuffle(sample)
        poll_lat, poll_err, poll_s = run_load(
            sample, lambda s, u: s.get(f"{base}/status", headers=u["headers"], timeout=10).status_code == 200,
            args.concurrency, duration=args.poll_seconds)
        stop.set()
        thread.join()
        with app.app_context():
            from app.sales.services import stats

            final = stats(event_id)
    finally:
        stop.set()
        api.stop()
    report("waiting room", [summarize("join (POST)", join_lat, join_s, join_err),
                            summarize("status poll (GET)", poll_lat, poll_s, poll_err)],
           {"users": args.users, "concurrency": args.concurrency, "api_workers": args.api_workers,
            "gunicorn": "gevent", "admitted_during_run": final["admitted_total"],
            "measured_admit_rate_per_min": final["admit_rate_per_minute"], "at": time.strftime("%Y-%m-%d %H:%M")})


if __name__ == "__main__":
    main()
