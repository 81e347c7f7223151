"""Every Redis key the application uses, in one place.

A sale's keys share the hash tag ``{event_id}`` (``q:{42}:...``), so each Lua script of the
waiting room, the gate and the waitlist touches one slot of a Redis Cluster. A user's keys share
``{user_id}``. The few global keys (registries, the relay lock) are read outside the sale scripts.
"""

from __future__ import annotations

from dataclasses import dataclass

REGISTRY_KEY = "queues:registry"  # event ids with a waiting room (read by the advancer)
# event ids whose queue-event stream may hold events not yet in the outbox: added at registration,
# removed by the drain only once the sale has left REGISTRY_KEY and its stream is empty
UNDRAINED_KEY = "queues:undrained"
WAITLIST_REGISTRY_KEY = "waitlists:registry"  # "event:section" of every section with a waitlist
OUTBOX_KICK_KEY = "outbox:kick"  # debounce of the after-commit relay kick
OUTBOX_RELAY_LOCK_KEY = "outbox:relay-lock"  # one relay publishes at a time
WORKERS_KEY = "celery:workers"  # in the broker's Redis: worker -> its queues and last heartbeat
FAKEPAY_LEDGER_KEY = "fakepay:charges"  # the fake provider's own record of charges, as a real one keeps


def revoked_token_key(jti: str) -> str:
    """Set while an access token is revoked (logout); read by the blocklist and the sale scripts."""
    return f"jwt:revoked:{jti}"


def session_revoked_key(sid: str) -> str:
    """Set while every access token of a session is revoked (logout, account deletion); read by the
    blocklist and the sale scripts in place of the token's own key."""
    return revoked_token_key(f"sid:{sid}")


def user_sessions_key(user_id: int | str) -> str:
    """The sessions a user started (to end them all when the account is deleted)."""
    return f"auth:user-sessions:{{{user_id}}}"


def user_revoked_key(user_id: int | str) -> str:
    """Epoch seconds: every token of the user issued before it is revoked (account deletion)."""
    return f"auth:user-revoked:{{{user_id}}}"


def auth_session_key(sid: str) -> str:
    """A cookie/refresh session: its user and its current refresh jti."""
    return f"auth:session:{sid}"


def verification_keys(purpose: str) -> tuple[str, str]:
    """A one-time code's hash and its attempt counter (purpose: "email:<user>", "device:<id>")."""
    return f"verify:{{{purpose}}}", f"verify:{{{purpose}}}:tries"


def refund_job_key(event_id: int, task_id: str) -> str:
    """Marks a whole-event refund job as belonging to the event (its status URL checks it)."""
    return f"refund-job:{{{event_id}}}:{task_id}"


USER_QUEUES_TTL_SECONDS = 7 * 86_400


def user_queues_key(user_id: int | str) -> str:
    """Event ids a user has joined (to mark them notifiable when they register a channel)."""
    return f"u:{{{user_id}}}:queues"


def user_devices_key(user_id: int | str) -> str:
    """The user's enabled notification channels (a cache of MySQL's devices; read at join)."""
    return f"n:user:{{{user_id}}}:devices"


@dataclass(frozen=True)
class QueueKeys:
    event_id: int

    @property
    def prefix(self) -> str:
        return f"q:{{{self.event_id}}}:"

    def __getattr__(self, name: str) -> str:  # meta, line, pre, ... -> "q:{42}:line"
        if name in _NAMES:
            return self.prefix + name
        raise AttributeError(name)

    def all(self) -> list[str]:
        return [self.prefix + n for n in _NAMES]

    def code_failures(self, user_id: int | str) -> str:
        """The user's failed access-code attempts on this sale (10 minutes from the first)."""
        return f"{self.prefix}codefail:{user_id}"

    def rate_limit(self, user_id: int | str) -> str:
        """The user's per-second counter of join/status calls on this sale (a PEXPIRE of 1 s)."""
        return f"{self.prefix}rl:{user_id}"

    def gate(self, section_id: int) -> str:
        """The booking side's sold-out gate of one section (same slot as the sale's queue)."""
        return f"{self.prefix}gate:{section_id}"

    def holds(self, section_id: int) -> str:
        """Deadlines of the section's live holds (reservation:quantity -> epoch), for the gate."""
        return f"{self.prefix}holds:{section_id}"

    # --- the waitlist of one section (app/booking/waitlist.py) ---------------------------------
    def waitlist(self, section_id: int, part: str) -> str:
        """One of the section's waitlist keys: wl, wlq, pool, offers, offerexp, useroffer,
        offered, seq, stats, fresh (scripts.py describes each)."""
        return f"{self.prefix}wl:{section_id}:{part}"

    # --- the booking intake (all in the sale's slot, so the accept script is one call) -----------
    def reserve_stream(self) -> str:
        """Accepted reserve requests, in order, until the hold writer has written them to MySQL."""
        return f"{self.prefix}reserve"

    def dead_letters(self) -> str:
        """Reserve requests the hold writer could not write (each logged with its error)."""
        return f"{self.prefix}reserve-dead"

    def pending(self) -> str:
        """reservation id -> request record, from the 202 until the hold writer commits it."""
        return f"{self.prefix}pending"

    def pending_of(self) -> str:
        """user -> space-separated ids of the user's pending requests: the status reads only these."""
        return f"{self.prefix}pending-of"

    def pending_units(self) -> str:
        """section -> units of pending requests: the gate's derivation reads one field."""
        return f"{self.prefix}pending-units"

    def idempotency(self) -> str:
        """"user:Idempotency-Key" -> "reservation id|request hash"."""
        return f"{self.prefix}idem"

    def user_units(self) -> str:
        """user -> units requested and live (pending, held, confirmed): the per-user limit's fast check."""
        return f"{self.prefix}units"

    def writes(self) -> str:
        """Counter of hold-writer commits (the gate reconciler resets only between two writes)."""
        return f"{self.prefix}writes"

    def no_token(self) -> str:
        """Stands for the caller's revocation key when a script runs without a token (never set)."""
        return f"{self.prefix}no-token"

    def stream_processes(self) -> str:
        """hash: the stream-server processes holding streams of the sale (process -> its lease's
        end; "<process>#n" -> how many streams it holds)."""
        return f"{self.prefix}streams:procs"

    def user_streams(self, user_id: int | str) -> str:
        """zset: one user's open SSE streams on the sale ("<process>:<stream>", scored by opening)."""
        return f"{self.prefix}streams:u:{user_id}"

    def advance_lock(self) -> str:
        return f"{self.prefix}advance-lock"

    def notices_due(self) -> str:
        """user -> "admitted_until|admitted_at": "your turn" notices owed, written by ADVANCE in the
        same call as the admission and forgotten once their notification rows are recorded in
        MySQL; the sweeper records any still owed (a broker blip lost the task)."""
        return f"{self.prefix}notices-due"

    def advance_keys(self) -> list[str]:
        """ADVANCE's keys: the sale's keys, then the notices owed (KEYS[15])."""
        return [*self.all(), self.notices_due()]

    def drain_lock(self) -> str:
        """One drain of the sale's event stream at a time (ids are derived, order is kept)."""
        return f"{self.prefix}drain-lock"


# How long each key lives: nothing in Redis grows without a bound. A sale's keys (q:{event}:*)
# live until the sale closes (app/sales/lifecycle.py deletes them all, after their contents are
# written to MySQL); everything else has a TTL or is bounded by what it counts.
# tests/integration/test_no_loss.py checks that every key a whole sale leaves matches one of these.
RETENTION: dict[str, str] = {
    "q:{event}:*": "the sale's keys (queue, gate, holds, waitlist, intake, streams, notices): until the "
                   "sale closes; close_sale writes their figures to sale_summaries and deletes them",
    REGISTRY_KEY: "a member per sale with a waiting room; the advancer removes a sale that ended",
    UNDRAINED_KEY: "a member per sale with events to drain; removed once an ended sale's stream is empty",
    WAITLIST_REGISTRY_KEY: "a member per section with a waitlist; removed when its waitlist empties or the sale closes",
    OUTBOX_KICK_KEY: "a debounce flag with a TTL of seconds",
    OUTBOX_RELAY_LOCK_KEY: "a lock with a TTL (renewed while the relay runs)",
    WORKERS_KEY: "a field per worker host (the broker's Redis); entries a day old are removed by the exporter",
    FAKEPAY_LEDGER_KEY: "development and tests only (the fake payment provider's ledger)",
    "jwt:revoked:{jti}": "until the revoked access token would have expired (TTL)",
    "auth:session:{sid}": "the refresh token's lifetime (TTL, renewed at each rotation)",
    "auth:user-sessions:{user}": "the refresh token's lifetime after the user's last login (TTL)",
    "auth:user-revoked:{user}": "the refresh token's lifetime after the account's deletion (TTL)",
    "verify:{purpose}": "the one-time code's lifetime (TTL)",
    "refund-job:{event}:{task}": "7 days (TTL)",
    "u:{user}:queues": "7 days after the user's last join (TTL, renewed at each join)",
    "n:user:{user}:devices": "one per user who registered a channel (rewritten on every change)",
}

# lanes: the fans of the priority lanes, one score band per lane (app/queue/lanes.py); codes: access
# code digest -> "lane|uses left|e-mail digest|valid from|valid until|ticket limit|code id";
# laneof: user -> "lane|ticket limit" once a code is redeemed (the fan stays in that lane)
_NAMES = ("meta", "line", "pre", "joined", "hb", "active", "notifiable", "expired", "seq", "stats", "events",
          "lanes", "codes", "laneof")
