"""Check a sale's published draw: ``python -m app.queue.verify_draw EVENT_URL [--lottery] [--entrant ID]``.

EVENT_URL is the draw's document (``https://tickets.example/api/queue/42/draw``) or the event's
page (``https://tickets.example/events/42``); with ``--lottery`` (or a lottery document's URL,
``.../api/events/42/lottery``), the sale's registration lottery, drawn by the same algorithm.
This file uses Python's standard library only: anyone can download it alone and run
``python verify_draw.py EVENT_URL``. The platform draws with these same functions
(app/queue/draws.py, app/sales/lottery.py), and docs/waiting-room.md spells the algorithm out.

The algorithm (``ALGORITHM``):
- before the sale opens the platform publishes ``commitment`` = SHA-256(seed), the seed being 32
  secret random bytes;
- each fan of the pre-queue is an entrant id: the first 32 hex digits of HMAC-SHA256(a per-sale
  secret key, the user id in decimal). Only the fan is told theirs (``GET .../draw/me``);
- the order is the entrant ids sorted by HMAC-SHA256(key = seed, message = entrant id), ascending
  in hex (ties, which 256 bits make unheard of, by the entrant id);
- after the draw the platform publishes the seed, the ordered entrant ids and
  ``entrants_digest`` = SHA-256 of the ids joined by "\\n".

Exit status: 0 the draw verifies, 1 it does not, 2 nothing to verify yet (or unreachable).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import sys
import urllib.request
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

ALGORITHM = "sha256-commit+hmac-sha256-order/v1"
ENTRANT_ID_HEX = 32  # 128 bits of the HMAC: no two fans of a sale share one


def commitment_of(seed_hex: str) -> str:
    """SHA-256 of the seed's bytes, hex: what is published before the draw."""
    return hashlib.sha256(bytes.fromhex(seed_hex)).hexdigest()


def entrant_id(entrant_key_hex: str, user_id: int | str) -> str:
    """A fan's pseudonymous id in one sale's draw."""
    mac = hmac.new(bytes.fromhex(entrant_key_hex), str(user_id).encode("ascii"), hashlib.sha256)
    return mac.hexdigest()[:ENTRANT_ID_HEX]


def order_key(seed: bytes, entrant: str) -> str:
    return hmac.new(seed, entrant.encode("ascii"), hashlib.sha256).hexdigest()


def drawn_order(seed_hex: str, entrants: Iterable[str]) -> list[str]:
    """The order the seed gives the entrants: a function of the seed and the set alone."""
    seed = bytes.fromhex(seed_hex)
    return sorted(entrants, key=lambda entrant: (order_key(seed, entrant), entrant))


def digest(ordered: list[str]) -> str:
    return hashlib.sha256("\n".join(ordered).encode("ascii")).hexdigest()


def problems(document: dict[str, Any], entrants: list[str]) -> list[str]:
    """What is wrong with a drawn sale's published draw (empty: it verifies)."""
    found = []
    if document.get("algorithm") != ALGORITHM:
        return [f"unknown algorithm {document.get('algorithm')!r} (this verifier knows {ALGORITHM})"]
    seed = document.get("seed") or ""
    if not re.fullmatch(r"[0-9a-f]{64}", seed):
        return ["the seed is not 64 hex digits"]
    if commitment_of(seed) != document.get("commitment"):
        found.append("the seed does not match the commitment published before the draw")
    if len(entrants) != document.get("entrants"):
        found.append(f"{len(entrants)} entrants listed, {document.get('entrants')} announced")
    if len(set(entrants)) != len(entrants):
        found.append("an entrant is listed twice")
    if digest(entrants) != document.get("entrants_digest"):
        found.append("the list does not match the announced digest")
    expected = drawn_order(seed, entrants)
    if expected != entrants:
        place = next(i for i, (a, b) in enumerate(zip(expected, entrants, strict=True), start=1) if a != b)
        found.append(f"the list is not in the seed's order (first difference at place {place}: "
                     f"{entrants[place - 1]} where the seed puts {expected[place - 1]})")
    return found


def committed_in_time(document: dict[str, Any]) -> bool:
    """The commitment came before the sale opened, or the lottery's registration closed (its
    ``opens_at`` says when), else the seed could have been chosen knowing the entrants."""
    try:
        return datetime.fromisoformat(document["committed_at"]) < datetime.fromisoformat(document["opens_at"])
    except (KeyError, TypeError, ValueError):
        return False


def draw_url(event_url: str, lottery: bool = False) -> str:
    """The draw document's URL from itself or from the event's page (``lottery``: the sale's
    registration lottery's)."""
    if re.search(r"/api/(queue/\d+/draw|events/\d+/lottery)/?$", event_url):
        return event_url.rstrip("/")
    found = re.search(r"/events/(\d+)", event_url)
    if not found:
        raise ValueError(f"not an event or draw URL: {event_url}")
    parts = urlsplit(event_url)
    where = f"events/{found.group(1)}/lottery" if lottery else f"queue/{found.group(1)}/draw"
    return f"{parts.scheme}://{parts.netloc}/api/{where}"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - http(s) URLs given by the user
        return json.load(response)


def fetch(url: str) -> tuple[dict[str, Any], list[str]]:
    """The draw document and, once drawn, its whole ordered list (page after page)."""
    document = _get(url)
    entrants: list[str] = []
    if document.get("state") == "drawn":
        parts = urlsplit(url)
        next_url: str | None = document["entrants_url"]
        while next_url:
            page = _get(next_url if "://" in next_url else f"{parts.scheme}://{parts.netloc}{next_url}")
            entrants.extend(page["items"])
            next_url = page.get("next")
    return document, entrants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.queue.verify_draw", description=__doc__.split("\n")[0])
    parser.add_argument("event_url", help="the draw's URL (.../api/queue/ID/draw) or the event's page (.../events/ID)")
    parser.add_argument("--lottery", action="store_true", help="the sale's registration lottery, not its pre-queue")
    parser.add_argument("--entrant", help="your entrant id (the draw page shows it): print your place")
    args = parser.parse_args(argv)
    try:
        document, entrants = fetch(draw_url(args.event_url, args.lottery))
    except (OSError, ValueError, KeyError) as exc:
        print(f"cannot read the draw: {exc}", file=sys.stderr)
        return 2
    print(f"sale {document.get('event_id')}: commitment {document.get('commitment')} "
          f"made {document.get('committed_at')}, to precede {document.get('opens_at')}")
    if document.get("state") != "drawn":
        print("not drawn yet: keep the commitment, and check the seed against it after the draw")
        return 2
    found = problems(document, entrants)
    if entrants and not committed_in_time(document):  # an empty draw has no order to have chosen
        found.append("the commitment was not published before the sale opened (the lottery closed)")
    if args.entrant:
        place = entrants.index(args.entrant) + 1 if args.entrant in entrants else None
        print(f"entrant {args.entrant}: " + (f"place {place} of {len(entrants)}" if place else "not in this draw"))
    if found:
        print("DOES NOT VERIFY:\n- " + "\n- ".join(found))
        return 1
    print(f"verified: seed {document['seed']} matches the commitment and orders all {len(entrants)} entrants")
    return 0


if __name__ == "__main__":
    sys.exit(main())
