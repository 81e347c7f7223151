"""Every Lua script of the application, and one registry that loads each once per client.

The scripts are files, one per script, under app/redis/lua/ (as Sentry keeps its own): a file
starts with its KEYS, ARGV and reply, then `--! include <helper>` lines naming the shared helpers
it is built on (prelude: the waiting room's, with lanes: its priority lanes'; put_back, take,
intake: the sold-out gate's), which
``load`` puts in front of it, each once.

Waiting room (JOIN, STATUS, LEAVE, SHUFFLE, ADVANCE), booking intake and sold-out gate (RESERVE,
GIVE, RELEASE_HOLD, RESET, SETTLE), waitlist (JOIN_WAITLIST ... CLAIM_OFFER), and the small ones:
OPEN_STREAM (app/queue/streams.py), SERVING (app/queue/services.py), FORGET_NOTICES
(app/notifications/flows.py), CHECK_CODE (app/verification.py), ROTATE_SESSION
(app/auth/sessions.py). Each hot-path state change is one script call: atomic, one round trip,
and every key passed explicitly and sharing the sale's hash tag (Redis Cluster safe).

Waiting room:

Key order shared by all scripts (see ``keys.QueueKeys.all``):
  1 meta  2 line  3 pre  4 joined  5 hb  6 active  7 notifiable  8 expired  9 seq  10 stats
  11 events  12 lanes  13 codes  14 laneof  15 rate-limit counter of the calling user (join/status only)
  16 the caller's access-token revocation key (join/status; a key in the sale's slot when none)
  17 the caller's failed access-code attempts (join only)
  18 the user's device cache, 19 the user's set of joined sales (join only)
Keys 16, 18 and 19 are the user's, not the sale's: join and status answer in one round trip on one Redis.
In Redis Cluster mode (REDIS_CLUSTER=true) they are read separately before the call
(app/redis/cluster.py) and every script touches the sale's slot only.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from app.redis import redis_store

LUA = Path(__file__).with_name("lua")
_INCLUDE = "--! include "


@cache
def load(name: str) -> str:
    """The source of app/redis/lua/<name>.lua with its includes expanded in front of it, each once."""
    text = (LUA / f"{name}.lua").read_text()
    included: list[str] = []
    for line in text.splitlines():
        if line.startswith(_INCLUDE):
            included.append(line[len(_INCLUDE):].strip())
    parts: list[str] = []
    seen: set[str] = set()
    for helper in included:
        for piece_name, piece in _expanded(helper):
            if piece_name not in seen:
                seen.add(piece_name)
                parts.append(piece)
    return "".join(parts) + text


def _expanded(name: str) -> list[tuple[str, str]]:
    """(helper, its own text) for a helper and what it includes, innermost first."""
    text = (LUA / f"{name}.lua").read_text()
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.startswith(_INCLUDE):
            out += _expanded(line[len(_INCLUDE):].strip())
    return [*out, (name, text)]


# the registry's names (app code calls ``script("RESERVE")``)
JOIN, STATUS, LEAVE, SHUFFLE, ADVANCE = (load(n) for n in ("join", "status", "leave", "shuffle", "advance"))
RESERVE, GIVE, SETTLE, RELEASE_HOLD, RESET = (load(n) for n in ("reserve", "give", "settle", "release_hold",
                                                                "reset"))
JOIN_WAITLIST, LEAVE_WAITLIST, MAKE_OFFERS, EXPIRE_OFFERS, DECLINE_OFFER, CLAIM_OFFER = (
    load(n) for n in ("join_waitlist", "leave_waitlist", "make_offers", "expire_offers", "decline_offer",
                      "claim_offer"))
OPEN_STREAM, SERVING, FORGET_NOTICES, CHECK_CODE, ROTATE_SESSION = (
    load(n) for n in ("open_stream", "serving", "forget_notices", "check_code", "rotate_session"))
SCRIPTS = {name: value for name, value in globals().items() if name.isupper() and not name.startswith("_")
           and isinstance(value, str)}

_registered: dict[tuple[int, str], Any] = {}


def script(name: str) -> Any:
    """The named script, registered once per Redis client (EVALSHA; reloaded after a flush)."""
    client = redis_store.client
    key = (id(client), name)
    if key not in _registered:
        _registered[key] = client.register_script(SCRIPTS[name])
    return _registered[key]
