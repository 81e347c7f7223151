"""Metrics, structured logs and the request/task context that ties them together."""
