"""Transactional outbox: domain events are rows written with the change they describe."""
