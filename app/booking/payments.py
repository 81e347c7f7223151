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

    def refund(self, *, charge_id: str, amount_cents: int, idempotency_key: str) -> PaymentResult:
        """Give back ``amount_cents`` of a charge. The same idempotency key gives the same answer."""
        ...


class FakeProvider:
    """Approves tokens starting with ``tok_ok``; declines everything else. Refunds are approved,
    except for charges paid with a ``tok_ok_norefund`` token (their reference starts with
    ``fake_nr_``), which the issuer declines: how tests and demos see a declined refund."""

    def charge(self, *, amount_cents: int, currency: str, token: str, idempotency_key: str) -> PaymentResult:
        if token.startswith("tok_ok"):
            digest = hashlib.sha256(f"{idempotency_key}:{amount_cents}:{currency}".encode()).hexdigest()[:24]
            prefix = "fake_nr_" if token.startswith("tok_ok_norefund") else "fake_"
            return PaymentResult(True, reference=f"{prefix}{digest}")
        return PaymentResult(False, decline_reason="card_declined")

    def refund(self, *, charge_id: str, amount_cents: int, idempotency_key: str) -> PaymentResult:
        if charge_id.startswith("fake_nr_"):
            return PaymentResult(False, decline_reason="refund_declined_by_issuer")
        digest = hashlib.sha256(f"{idempotency_key}:{charge_id}:{amount_cents}".encode()).hexdigest()[:24]
        return PaymentResult(True, reference=f"fake_re_{digest}")


PROVIDERS: dict[str, type] = {"fake": FakeProvider}


def get_provider(name: str) -> PaymentProvider:
    try:
        return PROVIDERS[name]()
    except KeyError as exc:
        raise RuntimeError(f"unknown PAYMENT_PROVIDER {name!r}; known: {sorted(PROVIDERS)}") from exc
