"""Import every domain's models so that Base.metadata is complete (Alembic, tests)."""

from __future__ import annotations


def import_all_models() -> None:
    from app.auth import models as _auth  # noqa: F401
    from app.booking import models as _booking  # noqa: F401
    from app.booking.orders import models as _orders  # noqa: F401
    from app.catalogue import models as _catalogue  # noqa: F401
    from app.checkin import models as _checkin  # noqa: F401
    from app.notifications import models as _notifications  # noqa: F401
    from app.outbox import models as _outbox  # noqa: F401
    from app.queue import models as _queue  # noqa: F401
    from app.sales import models as _sales  # noqa: F401
