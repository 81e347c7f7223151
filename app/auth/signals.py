"""What the account side announces to the domains built on it (blinker, the signals library Flask
itself uses), so that auth never imports them: notifications keeps its channel cache and forgets
a deleted account's channels by listening here (app/notifications/services.py).

Receivers run synchronously in the sender's thread, inside its unit of work when ``session`` is
given (what they write commits or rolls back with the sender's)."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

# sender: the user id; session: the unit of work the change belongs to, or None when there is none
# (a login). What counts as the account's channels changed (a verified e-mail, notify_by_email),
# or a login wants them fresh before the fan joins a sale.
account_channels_changed = _signals.signal("account-channels-changed")

# sender: the user id; session: the deletion's unit of work. Every personal datum goes with it.
account_deleting = _signals.signal("account-deleting")
