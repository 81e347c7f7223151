"""Payment providers: the interface, the built-in `fake` (development and tests only: production
refuses it) and Stripe (app/booking/stripe_provider.py). A provider implements ``charge``,
``lookup`` and ``refund`` with our ids as idempotency keys; one that works with intents (Stripe's
PaymentIntents) also ``create_intent``, whose id the confirm flow records before it confirms, so a
crash in between never charges twice (docs/payments.md)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from app.db import assert_no_row_locks
from app.redis.keys import FAKEPAY_LEDGER_KEY


@dataclass(frozen=True)
class PaymentResult:
    approved: bool
    reference: str | None = None
    decline_reason: str | None = None
    # not decided yet: the card asks for 3-D Secure (client_secret lets the browser run it) or the
    # provider is still processing; the webhook (or a later look) gives the outcome
    pending: bool = False
    client_secret: str | None = None


class PaymentProvider(Protocol):
    def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> PaymentResult: ...

    def refund(self, *, charge_id: str, amount_cents: int, idempotency_key: str) -> PaymentResult:
        """Give back ``amount_cents`` of a charge. The same idempotency key gives the same answer."""
        ...

    def lookup(self, idempotency_key: str, reference: str | None = None) -> PaymentResult | None:
        """What the charge with this key (and, for intents, this recorded intent id) came to, or
        None if the provider never saw it (the sweeper asks this after a crash between the call
        and recording its answer)."""
        ...




class FakeProvider:
    """Approves tokens starting with ``tok_ok``; declines everything else. Refunds are approved,
    except for charges paid with a ``tok_ok_norefund`` token (their reference starts with
    ``fake_nr_``), which the issuer declines: how tests and demos see a declined refund."""

    def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> PaymentResult:
        from app.extensions import redis_store

        if token.startswith("tok_ok_slow"):  # a slow provider (tests: no lock is held meanwhile)
            time.sleep(1.5)
        if token.startswith("tok_ok"):
            digest = hashlib.sha256(f"{idempotency_key}:{amount_cents}:{currency}".encode()).hexdigest()[:24]
            prefix = "fake_nr_" if token.startswith("tok_ok_norefund") else "fake_"
            result = PaymentResult(True, reference=f"{prefix}{digest}")
        else:
            result = PaymentResult(False, decline_reason="card_declined")
        redis_store.client.hsetnx(FAKEPAY_LEDGER_KEY, idempotency_key, json.dumps(asdict(result)))
        return PaymentResult(**json.loads(redis_store.client.hget(FAKEPAY_LEDGER_KEY, idempotency_key)))

    creates_intents = False

    def lookup(self, idempotency_key: str, reference: str | None = None) -> PaymentResult | None:
        from app.extensions import redis_store

        raw = redis_store.client.hget(FAKEPAY_LEDGER_KEY, idempotency_key)
        return PaymentResult(**json.loads(raw)) if raw else None

    def refund(self, *, charge_id: str, amount_cents: int, idempotency_key: str) -> PaymentResult:
        if charge_id.startswith("fake_nr_"):
            return PaymentResult(False, decline_reason="refund_declined_by_issuer")
        digest = hashlib.sha256(f"{idempotency_key}:{charge_id}:{amount_cents}".encode()).hexdigest()[:24]
        return PaymentResult(True, reference=f"fake_re_{digest}")


def _stripe() -> type:
    from app.booking.stripe_provider import StripeProvider

    return StripeProvider


PROVIDERS: dict[str, Any] = {"fake": lambda: FakeProvider(), "stripe": lambda: _stripe()()}


class _NoLockGuard:
    """Every provider call first checks that this thread's unit of work holds no row lock
    (app/db.assert_no_row_locks): a slow provider must never stretch one."""

    def __init__(self, provider: PaymentProvider) -> None:
        self._provider = provider

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._provider, name)
        if not callable(method):
            return method

        def guarded(*args: Any, **kwargs: Any) -> Any:
            assert_no_row_locks(f"the payment provider's {name}")
            return method(*args, **kwargs)

        return guarded


def get_provider(name: str) -> PaymentProvider:
    try:
        provider = PROVIDERS[name]()
    except KeyError as exc:
        raise RuntimeError(f"unknown PAYMENT_PROVIDER {name!r}; known: {sorted(PROVIDERS)}") from exc
    return _NoLockGuard(provider)  # type: ignore[return-value]
