"""Inventory: the units of a section, wherever they are.

- counts.py: what is sold, held and free, from MySQL (the truth): the figures every page shows;
- units.py: a hold's units released, sold or refunded in MySQL, and where a released unit flows
  from there (the section's waitlist pool first, else the gate): read it first;
- gate.py: the Redis sold-out gate in front of MySQL (the fast check of the hot path), its
  reconciliation with MySQL, and the Redis side of a release (`give_back`, `release_hold`);
- capacity.py: an admin's change of a section's capacity.

The catalogue stores what is on sale (events, sections, seats); booking takes and returns units
through this package.
"""
