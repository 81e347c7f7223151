"""Events, sections and seats: what is on sale (admins write, anyone reads)."""
