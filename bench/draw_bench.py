"""How long the verifiable draw takes for a large pre-queue, and how long checking it takes: one
sale with N fans in its pre-queue (SADD, as JOIN leaves them), then ``draw_prequeue`` as the
advancer calls it at the opening (entrant ids, the HMAC order, the record and its events in MySQL,
then the SHUFFLE script), then the verifier's checks over the published list. The draw runs
under the sale's advance lock (10 s): docs/waiting-room.md quotes the result.

    python -m bench.draw_bench [--entrants 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

from bench.common import create_event, private_redis_app

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "var" / "bench" / "draw.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entrants", type=int, default=100_000)
    args = parser.parse_args()
    with private_redis_app() as app:
        from sqlalchemy import select

        from app.catalogue.models import Event
        from app.db import transaction, utcnow
        from app.extensions import db, redis_store
        from app.queue import draws, verify_draw
        from app.queue.models import DrawEntrant
        from app.queue.services import sync_meta
        from app.redis.keys import QueueKeys

        event_id, _ = create_event(app, sale_opens_at=utcnow() + timedelta(minutes=5), prequeue_minutes=60)
        with app.app_context():
            with transaction():
                draws.make_commitment(event_id)
            sync_meta(db.session.get(Event, event_id))
            client = redis_store.client
            keys = QueueKeys(event_id)
            for first in range(1, args.entrants + 1, 10_000):
                client.sadd(keys.pre, *range(first, min(first + 10_000, args.entrants + 1)))
            client.hset(keys.meta, "opens_at", f"{time.time():.6f}")
            started = time.monotonic()
            placed = draws.draw_prequeue(event_id)
            draw_seconds = time.monotonic() - started
            document = draws.document(event_id)
            listed = list(db.session.scalars(select(DrawEntrant.entrant_id).where(DrawEntrant.event_id == event_id)
                                             .order_by(DrawEntrant.place)))
            in_line = client.zcard(keys.line)
            started = time.monotonic()
            found = verify_draw.problems(document, listed)
            verify_seconds = time.monotonic() - started
        result = {"entrants": args.entrants, "placed": placed, "in_line": in_line,
                  "draw_seconds": round(draw_seconds, 2), "verify_seconds": round(verify_seconds, 2),
                  "verifies": not found}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    broken = [] if placed == in_line == args.entrants else [f"{placed} placed, {in_line} in line of {args.entrants}"]
    broken += [] if not found else found
    if broken:  # checked in code: every entrant placed once, and the published draw verifies
        print("FAILED: " + "; ".join(broken), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
