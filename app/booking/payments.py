"""Payment providers. Only the interface and the built-in `fake` provider live here; a real
provider (Stripe, Adyen, Toss) implements ``charge`` with the reservation id as idempotency key."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PaymentResult:
    approved: bool
    reference: str | None = None
    decline_reason: str | None = None


class PaymentProvider(Protocol):
    def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> PaymentResult: ...


class FakeProvider:
    """Approves tokens starting with ``tok_ok``; declines everything else."""

    def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> PaymentResult:
        if token.startswith("tok_ok"):
            digest = hashlib.sha256(f"{idempotency_key}:{amount_cents}:{currency}".encode()).hexdigest()[:24]
            return PaymentResult(True, reference=f"fake_{digest}")
        return PaymentResult(False, decline_reason="card_declined")


PROVIDERS: dict[str, type] = {"fake": FakeProvider}


def get_provider(name: str) -> PaymentProvider:
    try:
        return PROVIDERS[name]()
    except KeyError as exc:
        raise RuntimeError(f"unknown PAYMENT_PROVIDER {name!r}; known: {sorted(PROVIDERS)}") from exc
