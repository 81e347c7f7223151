"""Password policy: long enough, and not guessable (zxcvbn, Dropbox's estimator).

A length rule alone accepts `password1` and `qwerty12`. zxcvbn scores a password 0-4 by how many
guesses it would take, knowing common passwords, words, names, keyboard patterns, dates and l33t
substitutions, and the user's own e-mail and name. MIN_SCORE 2 means more than ~10^6 guesses:
with the login rate limits (app/auth/api.py) that is out of reach online.
"""

from __future__ import annotations

import re

from zxcvbn import zxcvbn

MIN_SCORE = 2


def weakness(password: str, *user_inputs: str) -> str | None:
    """None when the password is acceptable, else what to tell the person choosing it."""
    if len(password) < 8:
        return "Password must be at least 8 characters."
    result = zxcvbn(password[:128], user_inputs=_hints(user_inputs))
    if result["score"] >= MIN_SCORE:
        return None
    feedback = result.get("feedback") or {}
    hint = feedback.get("warning") or " ".join(feedback.get("suggestions") or []) or "It is easy to guess."
    return f"Password is too easy to guess: {hint}".strip()


def _hints(user_inputs: tuple[str, ...]) -> list[str]:
    """The person's own words, as zxcvbn matches them: "anna.lee@example.com" and "Anna Lee" give
    anna, lee, annalee, example (zxcvbn matches whole tokens, not substrings of an address)."""
    hints: set[str] = set()
    for text in user_inputs:
        if not text:
            continue
        local = text.lower().split("@")[0]
        words = [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]
        hints.update(words)
        hints.update({local, "".join(re.split(r"[^a-z0-9]+", local))})
    return sorted(h for h in hints if len(h) >= 3)
