"""The registration lottery's units of work (rules: app/sales/lottery.py). Each draw is one
transaction (order, codes, the LotteryDrawn event and every notice as a pending row); the codes
are copied to Redis and the notices sent only after it commits. Beat runs ``draw_due`` every few
seconds, so a draw, a lost copy of the codes or a lost send (the notifications sweeper's) is
picked up again: exactly once each, whatever crashes in between."""

from __future__ import annotations

import logging

from app.db import transaction, utcnow
from app.sales import lottery
from app.tasking import send_task

log = logging.getLogger(__name__)

SEND_SLICE = 250  # notices per delivery task


def draw_due() -> int:
    """Draw every lottery whose registration has closed, and copy the codes of any drawn one whose
    copy was lost; returns how many were drawn."""
    with transaction():
        to_draw, to_sync = lottery.due(utcnow())
    drawn = 0
    for event_id in to_draw:
        with transaction():
            outcome = lottery.draw(event_id)
        if outcome is None:
            continue  # another beat run drew it
        drawn += 1
        _after_commit(event_id, outcome[1])
    for event_id in set(to_sync) - set(to_draw):
        with transaction():
            lottery.sync_codes(event_id)
    return drawn


def promote(event_id: int, count: int) -> int:
    """Codes for the next ``count`` on the standby list (an organiser's call); how many got one."""
    with transaction():
        codes, ids = lottery.promote(event_id, count)
    _after_commit(event_id, ids)
    return len(codes)


def _after_commit(event_id: int, notice_ids: list[str]) -> None:
    with transaction():
        lottery.sync_codes(event_id)  # the winners can join the presale lane with their codes
    for start in range(0, len(notice_ids), SEND_SLICE):
        send_task("notifications.deliver", [notice_ids[start:start + SEND_SLICE]])
    log.info("lottery of event %s: %s notices to send", event_id, len(notice_ids))
