"""Inventory: the units of a section, wherever they are.

- counts.py: what is sold, held and free, from MySQL (the truth): the figures every page shows;
- gate.py: the Redis sold-out gate in front of it (the fast check of the hot path), its
  reconciliation with MySQL, and where a released unit flows: back to the gate, or to the
  section's waitlist first (`give_back`, `release_hold`);
- capacity.py: an admin's change of a section's capacity.

The catalogue stores what is on sale (events, sections, seats); booking takes and returns units
through this package.
"""
