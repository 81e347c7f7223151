"""The account units of work that span a network call: read in one unit, send holding nothing."""

from __future__ import annotations

from app.auth import services, sessions
from app.db import transaction


def deliver_email_code(user_id: int, code: str) -> str | None:
    """The task's body: the e-mail verification code, sent after the read's unit has ended."""
    from app.notifications import channels

    with transaction():
        found = services.email_code_message(user_id, code)
    if found is None:
        return None
    address, message = found
    return channels.send_email_or_log(address, message)[0]


def delete_account(user_id: int, password: str) -> None:
    """The owner deletes the account: anonymised and its channels forgotten in one unit; then every
    session ends and every token issued to it is refused, on every endpoint (the sale scripts
    check the session's revocation key)."""
    from app.notifications import services as notifications

    with transaction() as session:
        services.delete_account(user_id, password)
        notifications.forget_channels(session, user_id)
    sessions.end_all(user_id)
