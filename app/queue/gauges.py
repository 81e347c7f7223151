"""The waiting room's gauges, read at scrape time by the metrics exporter (app/exporter.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from app.extensions import redis_store
from app.queue.events import lag
from app.queue.lanes import lane_figures, lane_names
from app.queue.pow import asked_difficulty
from app.redis.keys import QueueKeys
from app.redis.registry import registered_event_ids


def gauges() -> Iterator[GaugeMetricFamily]:
    """Each live sale's line, active set, pause and measured rate, and its queue-event lag."""
    waiting = GaugeMetricFamily("tickets_queue_waiting_users", "Users waiting in line (incl. pre-queue)",
                                labels=["event_id"])
    active = GaugeMetricFamily("tickets_queue_active_users", "Admitted users whose window is open",
                               labels=["event_id"])
    paused = GaugeMetricFamily("tickets_queue_paused", "1 while a sale's waiting room is paused",
                               labels=["event_id"])
    rate = GaugeMetricFamily("tickets_queue_admit_rate_per_minute", "Measured admission rate (EWMA)",
                             labels=["event_id"])
    difficulty = GaugeMetricFamily("tickets_queue_pow_difficulty",
                                   "Proof of work a new join is asked (zero bits; adaptive: with the join rate)",
                                   labels=["event_id"])
    attempts = GaugeMetricFamily("tickets_queue_join_attempts_per_second",
                                 "Join attempts a second, as the adaptive proof of work measured them",
                                 labels=["event_id"])
    lane_waiting = GaugeMetricFamily("tickets_queue_lane_waiting_users", "Fans waiting in a priority lane",
                                     labels=["event_id", "lane"])
    lane_admitted = GaugeMetricFamily("tickets_queue_lane_admitted", "Fans admitted from a priority lane so far",
                                      labels=["event_id", "lane"])
    lane_redeemed = GaugeMetricFamily("tickets_queue_codes_redeemed", "Access codes redeemed into a lane so far",
                                      labels=["event_id", "lane"])
    code_refused = GaugeMetricFamily("tickets_queue_codes_refused",
                                     "Access codes refused so far: wrong (unknown or another's e-mail) or used up",
                                     labels=["event_id", "reason"])
    client = redis_store.client
    now = time.time()
    with_lanes: list[tuple[int, list[str]]] = []
    for event_id in registered_event_ids():
        keys = QueueKeys(event_id)
        pipe = client.pipeline(transaction=False)
        pipe.zcard(keys.line)
        pipe.scard(keys.pre)
        pipe.zcount(keys.active, f"({now}", "+inf")
        pipe.hget(keys.meta, "paused")
        pipe.hget(keys.stats, "rate_ewma")
        pipe.hmget(keys.meta, "pow_difficulty", "pow_current")
        pipe.hget(keys.stats, "join_attempts_per_second")
        pipe.zcard(keys.lanes)
        pipe.hmget(keys.meta, "lanes")
        pipe.hmget(keys.stats, "code_failures", "code_used_up")
        (line, pre, act, is_paused, ewma, (base, current), attempt_rate, in_lanes, (lane_spec,),
         (wrong, used_up)) = pipe.execute()
        label = [str(event_id)]
        if lane_spec:
            with_lanes.append((event_id, lane_names(lane_spec)))
            code_refused.add_metric([str(event_id), "wrong"], int(wrong or 0))
            code_refused.add_metric([str(event_id), "used_up"], int(used_up or 0))
        waiting.add_metric(label, int(line) + int(pre) + int(in_lanes))
        active.add_metric(label, int(act))
        paused.add_metric(label, 1 if is_paused == "1" else 0)
        rate.add_metric(label, float(ewma or 0))
        difficulty.add_metric(label, asked_difficulty(base, current))
        attempts.add_metric(label, float(attempt_rate or 0))
    yield from (waiting, active, paused, rate, difficulty, attempts)
    for event_id, names in with_lanes:
        for name, figures in lane_figures(event_id, names).items():
            lane_waiting.add_metric([str(event_id), name], figures["waiting"])
            lane_admitted.add_metric([str(event_id), name], figures["admitted"])
            lane_redeemed.add_metric([str(event_id), name], figures["redeemed"])
    yield from (lane_waiting, lane_admitted, lane_redeemed, code_refused)
    undrained = GaugeMetricFamily("tickets_queue_events_undrained",
                                  "Queue events not yet copied to the outbox (the stream is never trimmed)",
                                  labels=["event_id"])
    age = GaugeMetricFamily("tickets_queue_events_oldest_undrained_age_seconds",
                            "Age of a sale's oldest queue event not yet in the outbox", labels=["event_id"])
    for event_id, (length, oldest) in lag().items():
        undrained.add_metric([str(event_id)], length)
        age.add_metric([str(event_id)], oldest)
    yield from (undrained, age)
