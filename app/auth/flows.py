"""The account units of work that span a network call: read in one unit, send holding nothing."""

from __future__ import annotations

from app import channels
from app.auth import services, sessions
from app.auth.signals import account_deleting
from app.db import transaction


def deliver_email_code(user_id: int, code: str) -> str | None:
    """The task's body: the e-mail verification code, sent after the read's unit has ended."""
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
    with transaction() as session:
        services.delete_account(user_id, password)
        account_deleting.send(user_id, session=session)  # notifications forgets the channels
    sessions.end_all(user_id)
