"""The capacity model of docs/scale.md, replayed from measured inputs.

Reads the flash-sale benchmark (var/bench/flash-sale.json: requests per second of the REST server
per core, holds per second) and the Redis measurement (var/bench/redis-memory.json: bytes per
waiting user, Redis CPU per JOIN and STATUS). Prints how many API pods, worker pods and Redis shards
two scenarios need, and the ceiling one sale meets on its one slot.

    python -m bench.redis_memory && make bench && python -m bench.capacity_model
    python -m bench.capacity_model --admit-per-minute 3000 --heartbeat 120
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "var" / "bench"


def poll_interval_s(eta_s: float, heartbeat_s: float) -> float:
    """The status endpoint's poll_after_ms, in seconds (app/queue/services.py)."""
    return max(1.0, min(min(30.0, heartbeat_s / 2), eta_s / 4))


def status_rate(fans: int, admit_per_minute: float, heartbeat_s: float) -> float:
    """Status calls per second of ``fans`` waiting in one line, each polling as told.
    Fans far back poll at the ceiling; only the last few minutes before the front poll faster."""
    per_s = admit_per_minute / 60
    total, position, step = 0.0, 0, 1000
    while position < fans:
        n = min(step, fans - position)
        eta = (position + n / 2) / per_s
        total += n / poll_interval_s(eta, heartbeat_s)
        position += n
    return total


def model(inputs: dict, fans_per_sale: int, sales: int, join_minutes: float, admit_per_minute: float,
          heartbeat_s: float, peak_factor: float, utilisation: float, pod_cores: float) -> dict:
    status_per_sale = status_rate(fans_per_sale, admit_per_minute, heartbeat_s)
    joins_per_sale = fans_per_sale / (join_minutes * 60) * peak_factor
    status_total, joins_total = status_per_sale * sales, joins_per_sale * sales
    api_cores = (status_total / inputs["status_per_core"] + joins_total / inputs["join_per_core"]) / utilisation
    redis_us_per_s_per_sale = status_per_sale * inputs["redis_us_status"] + joins_per_sale * inputs["redis_us_join"]
    slot_load = redis_us_per_s_per_sale / 1e6  # share of one Redis main thread one sale's slot needs
    memory_per_sale = fans_per_sale * inputs["bytes_per_user"]
    shards_cpu = math.ceil(slot_load * sales / utilisation)
    shards_memory = math.ceil(memory_per_sale * sales / inputs["shard_memory_bytes"])
    admissions_per_s = admit_per_minute / 60 * sales
    return {
        "fans": fans_per_sale * sales, "sales": sales,
        "status_per_s": round(status_total), "joins_per_s_at_peak": round(joins_total),
        "api_cores": round(api_cores, 1), "api_pods": math.ceil(api_cores / pod_cores),
        "one_sale_slot_load": round(slot_load, 2),
        "one_sale_fits_one_slot": slot_load <= utilisation,
        "redis_memory_mb": round(memory_per_sale * sales / 1e6),
        "redis_shards": max(1, shards_cpu, shards_memory),
        "admissions_per_s": round(admissions_per_s, 1),
        "worker_pods": max(1, math.ceil(admissions_per_s / (inputs["holds_per_worker_per_s"] * utilisation))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admit-per-minute", type=float, default=1000)
    parser.add_argument("--heartbeat", type=float, default=60, help="heartbeat_timeout_seconds of the sale")
    parser.add_argument("--join-peak-factor", type=float, default=3.0,
                        help="peak join rate over the average (most fans arrive in the first minutes)")
    parser.add_argument("--utilisation", type=float, default=0.7, help="target load of a core or a Redis thread")
    parser.add_argument("--pod-cores", type=float, default=2.0)
    parser.add_argument("--shard-memory-gb", type=float, default=6.0, help="usable memory of one Redis shard")
    args = parser.parse_args()
    sale = json.loads((BENCH / "flash-sale.json").read_text())
    redis_figures = json.loads((BENCH / "redis-memory.json").read_text())
    cores = sale.get("machine_cores") or 2
    holds = sale["flash_sale"]
    # the bench runs the REST server on all the machine's cores, next to wrk and Redis: per core is
    # a floor; a pod of its own does better
    inputs = {
        "status_per_core": sale["status"]["throughput_per_s"] / cores,
        "join_per_core": sale["join"]["throughput_per_s"] / cores,
        "holds_per_worker_per_s": holds["holds_settled_per_s"],
        "redis_us_status": redis_figures["redis_usec_per_call"]["status"],
        "redis_us_join": redis_figures["redis_usec_per_call"]["join"],
        "bytes_per_user": redis_figures["used_memory_per_user"],
        "shard_memory_bytes": args.shard_memory_gb * 1e9,
    }
    common = {"admit_per_minute": args.admit_per_minute, "heartbeat_s": args.heartbeat,
              "peak_factor": args.join_peak_factor, "utilisation": args.utilisation, "pod_cores": args.pod_cores}
    scenarios = {
        "one sale, 1,000,000 fans joining in 10 minutes": model(inputs, 1_000_000, 1, 10, **common),
        "100 sales of 10,000 fans each": model(inputs, 10_000, 100, 10, **common),
    }
    ceiling = args.utilisation * 1e6 / inputs["redis_us_status"]
    fans_at_ceiling = ceiling * min(30.0, args.heartbeat / 2)
    result = {"inputs": {k: round(v, 2) for k, v in inputs.items()}, "assumptions": common,
              "scenarios": scenarios,
              "one_slot_ceiling": {"status_per_s": round(ceiling),
                                   "waiting_fans_at_the_poll_ceiling": round(fans_at_ceiling)}}
    print(json.dumps(result, indent=2))
    print(f"\n{'':<28}" + "".join(f"{name[:30]:>32}" for name in scenarios))
    for key in ("fans", "status_per_s", "joins_per_s_at_peak", "api_cores", "api_pods", "one_sale_slot_load",
                "one_sale_fits_one_slot",
                "redis_memory_mb", "redis_shards", "admissions_per_s", "worker_pods"):
        print(f"{key:<28}" + "".join(f"{str(s[key]):>32}" for s in scenarios.values()))
    print(f"\none slot's ceiling: {ceiling:,.0f} status/s at {args.utilisation:.0%} of a Redis thread "
          f"= {fans_at_ceiling:,.0f} fans polling every {min(30.0, args.heartbeat / 2):.0f} s")


if __name__ == "__main__":
    main()
