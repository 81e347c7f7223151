"""A flood of joins from one address pool against a sale with an adaptive proof of work: the
difficulty rises, honest fans still get in, and the flood pays more for each place it takes.

The API runs as deployed (granian, production's configuration with test secrets); the advance tick
runs once a second, as beat runs it. Bots join with fresh accounts from a few threads, as fast as
they can; on a 428 they solve the asked difficulty with hashlib and count the hashes spent. Honest
fans join one every half second the same way, and their wait is also converted to the browser
solver's measured speed (``--browser-hashes``, from a run of app.js's solver in chromium here:
docs/waiting-room.md). Three phases: quiet, flood, quiet again.

    python -m bench.pow_flood [--flood-seconds 20] [--threshold 50]

Exit 1 (checked in code) if the difficulty did not rise during the flood or fall back after it,
or if an honest fan failed to join.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from bench.common import configure, create_event, drop_database, fresh_database, make_users
from bench.flash_sale import Server

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "var" / "bench" / "pow-flood.json"


def solve(event_id: int, user_id: int, difficulty: int) -> tuple[str, int]:
    """The reference solver (app/queue/pow.py) and the hashes it took: it tries the nonces 0, 1,
    2, ... in hex, so the one it found says how many."""
    from app.queue.pow import solve as reference

    nonce = reference(event_id, user_id, difficulty)
    return nonce, int(nonce, 16) + 1


class Joiner:
    """Joins with one account after another; each join's outcome and work goes to ``log``."""

    def __init__(self, api: str, event_id: int, accounts: list[dict[str, Any]], log: list[dict[str, Any]],
                 kind: str) -> None:
        self.api, self.event_id, self.accounts, self.log, self.kind = api, event_id, accounts, log, kind
        self.session = requests.Session()

    def join(self, account: dict[str, Any]) -> None:
        url = f"{self.api}/api/queue/{self.event_id}/join"
        started, hashes, difficulty = time.time(), 0, 0
        r = self.session.post(url, headers=account["headers"], timeout=30)
        while r.status_code == 428:  # asked for work (again, if it rose meanwhile)
            difficulty = r.json()["errors"]["difficulty"]
            nonce, spent = solve(self.event_id, account["id"], difficulty)
            hashes += spent
            r = self.session.post(url, headers={**account["headers"], "X-Proof-Of-Work": nonce}, timeout=30)
        self.log.append({"kind": self.kind, "at": started, "seconds": time.time() - started, "hashes": hashes,
                         "difficulty": difficulty, "status": r.status_code})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=int, default=50, help="join attempts a second before it rises")
    parser.add_argument("--max-difficulty", type=int, default=17)
    parser.add_argument("--bots", type=int, default=4, help="flooding threads")
    parser.add_argument("--quiet-seconds", type=int, default=5)
    parser.add_argument("--flood-seconds", type=int, default=20)
    parser.add_argument("--browser-hashes", type=float, default=175_000,
                        help="hashes a second of app.js's solver in chromium on this machine")
    args = parser.parse_args()
    env = configure(production=True)
    fresh_database(env["DATABASE_URL"])
    from app import create_app
    from app.queue.services import advance

    app = create_app()
    event_id, _ = create_event(app, admit_per_minute=60, max_active=100, pow_adaptive_threshold=args.threshold,
                               pow_max_difficulty=args.max_difficulty)
    bots = make_users(app, 20_000)
    honest = make_users(app, 200)
    api = Server([sys.executable, "-m", "app.serve"], {"WEB_CONCURRENCY": "2"}, "api")
    log: list[dict[str, Any]] = []
    ticks: list[dict[str, Any]] = []
    stop_ticks, stop_flood = threading.Event(), threading.Event()

    def tick() -> None:  # beat's advance tick, once a second
        from app.extensions import redis_store
        from app.redis.keys import QueueKeys

        with app.app_context():
            while not stop_ticks.wait(1.0):
                advance(event_id)
                current = redis_store.client.hget(QueueKeys(event_id).meta, "pow_current")
                ticks.append({"at": time.time(), "difficulty": int(current or 0)})

    def flood(accounts: list[dict[str, Any]]) -> None:
        joiner = Joiner(api.url, event_id, accounts, log, "bot")
        for account in accounts:
            if stop_flood.is_set():
                return
            joiner.join(account)

    def fans(until: float) -> None:
        joiner = Joiner(api.url, event_id, honest, log, "fan")
        for account in honest:
            if time.time() >= until:
                return
            joiner.join(account)
            time.sleep(0.5)  # a fan arrives every half second: pacing of the load, not synchronisation

    try:
        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        started = time.time()
        flood_at = started + args.quiet_seconds
        calm_at = flood_at + args.flood_seconds
        end = calm_at + max(args.flood_seconds, args.max_difficulty + 5)  # it falls a bit a second
        honest_thread = threading.Thread(target=fans, args=(end,))
        honest_thread.start()
        time.sleep(max(0.0, flood_at - time.time()))  # the quiet phase's length
        share = len(bots) // args.bots
        flooders = [threading.Thread(target=flood, args=(bots[i * share:(i + 1) * share],)) for i in range(args.bots)]
        for t in flooders:
            t.start()
        time.sleep(max(0.0, calm_at - time.time()))  # the flood's length
        stop_flood.set()
        for t in flooders:
            t.join()
        honest_thread.join()
        stop_ticks.set()
        ticker.join()
    finally:
        api.stop()
        drop_database(env["DATABASE_URL"])

    def phase(first: float, last: float) -> dict[str, Any]:
        bot = [e for e in log if e["kind"] == "bot" and first <= e["at"] < last and e["status"] == 202]
        fan = [e for e in log if e["kind"] == "fan" and first <= e["at"] < last]
        asked = [t["difficulty"] for t in ticks if first <= t["at"] < last]
        seconds = last - first
        fan_hashes = sorted(e["hashes"] for e in fan) or [0]
        return {
            "seconds": round(seconds, 1), "difficulty_max": max(asked or [0]), "difficulty_last": (asked or [0])[-1],
            "bot_joins_per_second": round(len(bot) / seconds, 1),
            "bot_hashes_per_join": round(sum(e["hashes"] for e in bot) / len(bot)) if bot else None,
            "fans": len(fan), "fans_joined": sum(1 for e in fan if e["status"] == 202),
            "fan_seconds_p95": round(sorted(e["seconds"] for e in fan)[int(0.95 * (len(fan) - 1))], 2) if fan else None,
            "fan_browser_seconds_max": round(max(fan_hashes) / args.browser_hashes, 2),
        }

    quarter = args.flood_seconds / 4
    flood_first, flood_last = phase(flood_at, flood_at + quarter), phase(calm_at - quarter, calm_at)
    result = {"threshold": args.threshold, "max_difficulty": args.max_difficulty,
              "quiet": phase(started, flood_at), "flood": phase(flood_at, calm_at),
              "flood_first_quarter": flood_first, "flood_last_quarter": flood_last, "after": phase(calm_at, end),
              "ticks": [{"t": round(t["at"] - started, 1), "difficulty": t["difficulty"]} for t in ticks]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "ticks"}, indent=2))
    print("difficulty per second:", " ".join(str(t["difficulty"]) for t in ticks))
    print(f"\n{'phase':<22}{'difficulty':>11}{'bot joins/s':>12}{'hashes/bot join':>17}{'fans in':>9}"
          f"{'fan p95 s':>10}{'browser s':>10}")
    for name in ("quiet", "flood_first_quarter", "flood_last_quarter", "after"):
        p = result[name]
        print(f"{name:<22}{p['difficulty_max']:>11}{p['bot_joins_per_second']:>12}{str(p['bot_hashes_per_join']):>17}"
              f"{p['fans_joined']:>4}/{p['fans']:<4}{str(p['fan_seconds_p95']):>10}{p['fan_browser_seconds_max']:>10}")
    broken = []
    if result["flood"]["difficulty_max"] <= result["quiet"]["difficulty_max"]:
        broken.append("the difficulty did not rise during the flood")
    if result["after"]["difficulty_last"] != 0:
        broken.append(f"the difficulty stayed at {result['after']['difficulty_last']} after the flood")
    fans_total = sum(result[n]["fans"] for n in ("quiet", "flood", "after"))
    fans_in = sum(result[n]["fans_joined"] for n in ("quiet", "flood", "after"))
    if fans_in != fans_total:
        broken.append(f"{fans_total - fans_in} honest fans did not get in")
    if broken:
        print("\nFAILED: " + "; ".join(broken), file=sys.stderr)
        sys.exit(1)
    print(f"\nJSON: {OUT}")


if __name__ == "__main__":
    main()
