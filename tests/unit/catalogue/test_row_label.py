"""Seat rows are labelled as venues do: A..Z, then AA."""

from __future__ import annotations

import pytest

from app.catalogue.services import row_label


@pytest.mark.parametrize(("index", "label"), [(0, "A"), (1, "B"), (25, "Z"), (26, "AA"), (27, "AB"), (701, "ZZ"),
                                              (702, "AAA")])
def test_row_labels_are_spreadsheet_style(index: int, label: str):
    assert row_label(index) == label
