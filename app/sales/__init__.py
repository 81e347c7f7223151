"""A sale as a whole, as its organiser runs it: the events API (the catalogue with inventory's
figures), a live sale's controls and figures (api.py, services.py), and closing a sale that is
over (lifecycle.py). It sits above the catalogue, the waiting room, inventory and booking, and
imports them; none of them imports it (docs/architecture.md).
"""
