"""An admin's change of a general admission section's capacity."""

from __future__ import annotations

from sqlalchemy import update

from app.catalogue.models import SECTION_GENERAL, Section
from app.catalogue.services import get_section
from app.errors import Conflict, Unprocessable
from app.extensions import db
from app.inventory import gate
from app.tasking import call_after_commit


def set_capacity(event_id: int, section_id: int, capacity: int) -> Section:
    """Change a general admission section's capacity (admin). Added units go on sale at once
    (to the section's waitlist first, like any release); a smaller capacity may not go below what
    is sold and held. The change is one conditional UPDATE."""
    section = get_section(event_id, section_id)
    if section.kind != SECTION_GENERAL:
        raise Unprocessable("A seated section's capacity is its seat map", reason="seated_section",
                            errors={"capacity": ["only for general admission sections"]})
    before = section.capacity
    changed = db.session.execute(
        update(Section).where(Section.id == section_id, Section.sold + Section.held <= capacity)
        .values(capacity=capacity).execution_options(synchronize_session=False)).rowcount
    if changed != 1:
        raise Conflict("The capacity cannot go below the tickets sold and held", reason="capacity_below_sold")
    db.session.refresh(section)
    if capacity > before:
        call_after_commit(db.session(), lambda: gate.give_back(event_id, section_id, capacity - before))
    elif capacity < before:  # fewer units: the gate is derived again from MySQL, once committed
        call_after_commit(db.session(), lambda: gate.reconcile([event_id]))
    return section
