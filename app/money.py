"""Money is integer minor units end to end (KRW has none: 45000 is 45,000 won); this is where an
amount becomes text, with the currency's own number of decimals (ISO 4217, from Babel's CLDR)."""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_currency, get_currency_precision


def format_money(minor_units: int, currency: str, locale: str = "en") -> str:
    """e.g. ``format_money(45000, "KRW", "ko") == "₩45,000"``, ``format_money(5000, "EUR") == "€50.00"``."""
    amount = Decimal(minor_units).scaleb(-get_currency_precision(currency))
    return format_currency(amount, currency, locale=locale)
