"""Redis memory per waiting user and Redis CPU per waiting-room call, measured on a private
redis-server: one sale with N fans joined (JOIN, exactly as the API calls it, pipelined), then
``MEMORY USAGE`` (SAMPLES 0: exact) over every key of the sale and of its users, and INFO
commandstats for the server-side cost of JOIN and STATUS. docs/scale.md quotes the result;
bench/capacity_model.py reads it (var/bench/redis-memory.json).

    python -m bench.redis_memory [--fans 100000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.common import create_event, private_redis_app

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "var" / "bench" / "redis-memory.json"


def _usec_per_call(client, command: str = "evalsha") -> tuple[int, float]:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)), float(stats.get("usec_per_call", 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fans", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2_000)
    args = parser.parse_args()
    with private_redis_app() as app:
        from app.catalogue.models import Event
        from app.extensions import db, redis_store
        from app.queue.services import sync_meta
        from app.redis.keys import QueueKeys, user_devices_key, user_queues_key
        from app.redis.scripts import script

        event_id, _ = create_event(app, [{"name": "Floor", "capacity": 1000}], admit_per_minute=1,
                                   max_active=1, heartbeat_timeout_seconds=86_400)
        with app.app_context():
            sync_meta(db.session.get(Event, event_id))
            client = redis_store.client
            keys = QueueKeys(event_id)
            join, status = script("JOIN"), script("STATUS")
            base_memory = client.info("memory")["used_memory"]
            client.config_resetstat()
            started = time.monotonic()
            for first in range(1, args.fans + 1, args.batch):
                pipe = client.pipeline(transaction=False)
                for user in range(first, min(first + args.batch, args.fans + 1)):
                    # JOIN's keys and arguments as app/redis/calls.join passes them (pipelined here)
                    join(keys=[*keys.all(), keys.rate_limit(user), keys.no_token(), keys.code_failures(user),
                               user_devices_key(user), user_queues_key(user)],
                         args=[user, f"{time.time():.6f}", 0, event_id, "", "", ""], client=pipe)
                pipe.execute()
            fill_seconds = time.monotonic() - started
            join_calls, join_usec = _usec_per_call(client)
            client.config_resetstat()
            sample = range(1, min(args.fans, 20_000) + 1)
            pipe = client.pipeline(transaction=False)
            for user in sample:
                status(keys=[*keys.all(), keys.rate_limit(user), keys.no_token()], args=[user, f"{time.time():.6f}", 0],
                       client=pipe)
            replies = pipe.execute()
            waiting = sum(1 for r in replies if r[0] == "waiting")
            status_calls, status_usec = _usec_per_call(client)
            sale_keys = list(client.scan_iter(match=keys.prefix + "*", count=1000))
            sale_bytes = {k: client.memory_usage(k, samples=0) or 0 for k in sale_keys}
            user_bytes = sum(client.memory_usage(user_queues_key(u), samples=0) or 0 for u in range(1, args.fans + 1))
            client.set(keys.prefix + "rl:probe", 1, px=1000)
            rate_limit_key = client.memory_usage(keys.prefix + "rl:probe", samples=0)
            used = client.info("memory")["used_memory"] - base_memory
        result = {
            "fans": args.fans,
            "waiting_after_fill": waiting,
            "fill_seconds": round(fill_seconds, 2),
            "sale_keys": {k.removeprefix(keys.prefix): v for k, v in sorted(sale_bytes.items(), key=lambda i: -i[1])},
            "sale_bytes": sum(sale_bytes.values()),
            "user_keys_bytes": user_bytes,
            "bytes_per_waiting_user": round((sum(sale_bytes.values()) + user_bytes) / args.fans, 1),
            "used_memory_delta_bytes": used,
            "used_memory_per_user": round(used / args.fans, 1),
            "rate_limit_key_bytes": rate_limit_key,
            "redis_usec_per_call": {"join": round(join_usec, 2), "status": round(status_usec, 2)},
            "redis_calls_measured": {"join": join_calls, "status": status_calls},
            "redis_version": redis_store.client.info("server")["redis_version"],
        }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"\n{'figure':<44}{'value':>14}")
    print("-" * 58)
    for label, value in (("fans waiting in one sale", f"{args.fans:,}"),
                         ("sale keys (MEMORY USAGE, exact)", f"{result['sale_bytes'] / 1e6:.1f} MB"),
                         ("users' joined-sales sets", f"{user_bytes / 1e6:.1f} MB"),
                         ("bytes per waiting user (keys)", f"{result['bytes_per_waiting_user']:.0f} B"),
                         ("used_memory growth per user", f"{result['used_memory_per_user']:.0f} B"),
                         ("Redis CPU per JOIN", f"{join_usec:.1f} us"),
                         ("Redis CPU per STATUS", f"{status_usec:.1f} us")):
        print(f"{label:<44}{value:>14}")
    print(f"\nJSON: {OUT}")


if __name__ == "__main__":
    main()
