"""`make bench`: the flash sale at the limit of this machine, measured against a ceiling in one run.

In one run it starts
- the reference app (bench/reference_app.py: one Redis Lua call, JSON) under `gunicorn -w 2`;
- the real API as deployed (`python -m app.serve`: granian, 2 workers x 2 threads, Prometheus
  multiprocess on; `--server gunicorn` runs gunicorn with gevent workers instead, to compare),
  a Celery worker (`-c 2`) and beat, against MariaDB and Redis;
and drives both with wrk (not a Python client: that would measure itself on the same two cores).
Every figure is printed with its ratio to the reference, to a JSON file and as a table.

Scenarios: status polling and re-join (1,000 waiting users), the flash sale (N buyers admitted, each
reserving once at a section smaller than the demand), and the push burst (fans with FCM devices
against moto's SNS, all admitted within a second).

    make bench BENCH_ARGS="--buyers 5000 --fans 1000"
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import celeryconfig
from bench.common import configure, create_event, drop_database, fresh_database, make_users, percentile

ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = ROOT / "bench" / "wrk" / "requests.lua"


# --- processes ----------------------------------------------------------------------------------

class Server:
    """An HTTP server process on a free loopback port: ``argv`` runs it (``{bind}`` is replaced
    by host:port), ``env`` is added to this process's environment."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str) -> None:
        from tests.support import free_port, wait_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
        bind = f"127.0.0.1:{self.port}"
        argv = [a.replace("{bind}", bind).replace("{port}", str(self.port)) for a in argv]
        self.proc = subprocess.Popen(argv, cwd=ROOT,
                                     env={**os.environ, "BIND": bind, **env}, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.port, timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def wrk(url: str, lines: list[str], *, mode: str, seconds: int, connections: int, threads: int = 2,
        served: tuple[str, ...] = ("200",)) -> dict:
    """Run wrk over pre-built requests; returns its JSON summary, with the throughput of the
    answers whose status is in ``served`` only (an error answered fast is not throughput)."""
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    proc = subprocess.Popen(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                             "--latency", "-s", str(WRK_SCRIPT), url, "--", f.name, mode, str(threads)],
                            stdout=subprocess.PIPE, text=True)
    lines_out, finished = [], 0
    for text_line in proc.stdout:
        lines_out.append(text_line)
        if text_line.startswith("WRKDONE"):
            finished += 1
            if finished == threads:  # wrk itself would sleep out its whole duration
                proc.send_signal(signal.SIGINT)
    proc.wait()
    os.unlink(f.name)
    out = "".join(lines_out)
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    summary = json.loads(line[len("WRKJSON "):])
    # the first refusal's body per status (wrk/requests.lua), so a failed run says why
    refused = (x[len("WRKREFUSED "):].partition(" ") for x in out.splitlines() if x.startswith("WRKREFUSED "))
    summary["refused_sample"] = {code: body for code, _, body in refused}
    summary["answered"] = sum(summary["codes"].values())  # once: the health-check fillers are not counted
    summary["served"] = sum(n for code, n in summary["codes"].items() if code in served)
    summary["not_served"] = summary["answered"] - summary["served"]
    summary["throughput_per_s"] = round(summary["served"] / summary["seconds"], 1) if summary["seconds"] else 0
    return summary


def request_line(method: str, path: str, headers: dict[str, str], body: Any = None) -> str:
    head = " | ".join(f"{k}: {v}" for k, v in headers.items())
    return "\t".join([method, path, head, json.dumps(body) if body is not None else ""])


# --- scenarios ----------------------------------------------------------------------------------

def reference(url: str, seconds: int, connections: int) -> dict:
    lines = [request_line("GET", f"/ref/{i}", {}) for i in range(1000)]
    wrk(url, lines, mode="loop", seconds=3, connections=connections)  # warm-up
    return wrk(url, lines, mode="loop", seconds=seconds, connections=connections)


REFERENCE_SERVERS = {  # the reference on gunicorn (sync workers) and on granian, as the API runs
    "reference": ["-m", "gunicorn", "-b", "{bind}", "-w", "2", "bench.reference_app:app"],
    "reference_granian": ["-m", "granian", "--interface", "wsgi", "--workers", "2", "--blocking-threads", "2",
                          "--no-ws", "--host", "127.0.0.1", "--port", "{port}", "bench.reference_app:app"],
}


def references(redis_url: str, seconds: int, connections: int) -> dict[str, dict]:
    """The reference app measured on each of its servers in turn, each stopped after its run."""
    out = {}
    for key, argv in REFERENCE_SERVERS.items():
        ref = Server([sys.executable, *argv], {"REFERENCE_REDIS_URL": redis_url}, key)
        try:
            out[key] = reference(ref.url, seconds, connections)
        finally:
            ref.stop()
    return out


def waiting_room(app, api_url: str, seconds: int, connections: int) -> tuple[dict, dict]:
    from app.queue.services import join

    event_id, _ = create_event(app, admit_per_minute=1, max_active=1, heartbeat_timeout_seconds=3600)
    users = make_users(app, 1000)
    with app.test_request_context():
        for u in users:
            join(event_id, u["id"])
    status = [request_line("GET", f"/api/queue/{event_id}/status", u["headers"]) for u in users]
    joins = [request_line("POST", f"/api/queue/{event_id}/join", u["headers"]) for u in users]
    wrk(api_url, status, mode="loop", seconds=3, connections=connections)  # warm-up
    return (wrk(api_url, status, mode="loop", seconds=seconds, connections=connections),
            wrk(api_url, joins, mode="loop", seconds=seconds, connections=connections, served=("202",)))


def flash_sale(app, api_url: str, buyers_n: int, capacity: int, connections: int) -> dict:
    from sqlalchemy import func, select

    from app.booking.models import Reservation
    from app.catalogue.models import Section
    from app.extensions import db
    from app.queue.services import admit_now, join, status

    event_id, (ga_id,) = create_event(app, [{"name": "Floor", "capacity": capacity}])
    buyers = make_users(app, buyers_n)
    with app.test_request_context():
        for b in buyers:
            join(event_id, b["id"])
        admit_now(event_id, len(buyers))
        for b in buyers:
            b["pass"] = status(event_id, b["id"], metered=False).admission_token
    unadmitted = sum(1 for b in buyers if not b["pass"])
    if unadmitted:  # the measurement would be of 403s
        raise SystemExit(f"{unadmitted} of {len(buyers)} buyers were not admitted before the sale")
    lines = [request_line("POST", "/api/tickets/reserve",
                          {**b["headers"], "X-Admission-Token": b["pass"], "Idempotency-Key": uuid.uuid4().hex},
                          {"event_id": event_id, "section_id": ga_id, "quantity": 1}) for b in buyers]
    started = time.time()
    # capacity >= demand: every request must be accepted (202); a 409 or anything else is not served
    answers = wrk(api_url, lines, mode="once", seconds=600, connections=connections, served=("202",))

    def pending() -> int:
        with app.app_context():
            n = db.session.scalar(select(func.count()).select_from(Reservation).where(
                Reservation.event_id == event_id, Reservation.status == "pending"))
            db.session.rollback()
            return int(n or 0)

    accepted = answers["codes"].get("202", 0)
    while time.time() - started < 600:
        with app.app_context():
            rows = db.session.scalar(select(func.count()).select_from(Reservation)
                                     .where(Reservation.event_id == event_id))
            db.session.rollback()
        if rows >= accepted and pending() == 0:
            break
        time.sleep(0.05)
    settled_at = time.time()
    with app.app_context():
        rows = db.session.execute(select(Reservation.status, Reservation.quantity, Reservation.created_at,
                                         Reservation.updated_at).where(Reservation.event_id == event_id)).all()
        db.session.rollback()
    held = [r for r in rows if r.status == "held"]
    with app.app_context():  # MySQL's own counters, the record: never more held or sold than there is
        section = db.session.scalars(select(Section).where(Section.event_id == event_id)).one()
        counted = {"sold": section.sold, "held": section.held, "capacity": section.capacity}
        db.session.rollback()
    hold_latency = [(r.updated_at - r.created_at).total_seconds() for r in held]
    # the settling window from the rows themselves: the first request's acceptance to the last
    # row's write (the wall clock around it would add wrk's start-up and this loop's polling)
    window = (max(r.updated_at for r in rows) - min(r.created_at for r in rows)).total_seconds() if rows else 0.0
    return {
        "buyers": buyers_n, "capacity": capacity, "answers": answers,
        "five_xx": sum(v for k, v in answers["codes"].items() if k.startswith("5")),
        "accepted": accepted, "sold_out_409": answers["codes"].get("409", 0),
        "held": len(held), "units_held": sum(r.quantity for r in held), "section_counters": counted,
        "rejected": sum(1 for r in rows if r.status == "rejected"),
        "settle_seconds": round(window, 3),
        "settle_seconds_wall": round(settled_at - started, 3),
        "holds_settled_per_s": round(len(held) / window, 1) if window else 0.0,
        "reserve_to_held_ms": {f"p{q}": round(percentile(hold_latency, q / 100) * 1000, 1) for q in (50, 95, 99)},
        "hold_latency_timeline": _latency_timeline(held, hold_latency),
    }


def push_burst(app, api_url: str, fans_n: int, moto_url: str) -> dict:
    import boto3
    import requests
    from sqlalchemy import select

    from app.extensions import db
    from app.notifications.models import Notification
    from app.queue.services import join, set_paused

    event_id, _ = create_event(app, admit_per_minute=60_000, max_active=100_000)
    fans = make_users(app, fans_n)
    with app.test_request_context():
        set_paused(event_id, True)

    def register(fan: dict) -> int:
        r = requests.post(f"{api_url}/api/notifications/register", headers=fan["headers"], timeout=60,
                          json={"channel": "push", "platform": "fcm", "token": f"bench-fcm-{fan['id']}"})
        return r.status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(register, fans))
    with app.test_request_context():
        for fan in fans:
            join(event_id, fan["id"])
        resumed = time.time()
        set_paused(event_id, False)  # beat admits them all within about a second
    deadline = time.time() + 300
    while time.time() < deadline:
        with app.app_context():
            rows = db.session.execute(select(Notification.user_id, Notification.status, Notification.admitted_at,
                                             Notification.sent_at).where(Notification.event_id == event_id)).all()
            db.session.rollback()
        registered = sum(1 for c in codes if c in (200, 201))
        if len(rows) >= registered and all(r.status in {"sent", "failed"} for r in rows):
            break
        time.sleep(0.2)
    sent = [r for r in rows if r.status == "sent"]
    latency = [(r.sent_at - r.admitted_at).total_seconds() for r in sent]
    # admission latency: from the resume to each fan's admission by beat's advance tick
    admitted = [max(0.0, r.admitted_at.timestamp() - resumed) for r in rows]
    per_user: dict[int, int] = {}
    for r in sent:
        per_user[r.user_id] = per_user.get(r.user_id, 0) + 1
    # the ceiling: bare boto3 publishes to the same moto server from 32 threads
    sns = boto3.client("sns", region_name="eu-west-1", endpoint_url=moto_url)
    arn = sns.create_platform_application(Name=f"ceiling-{uuid.uuid4().hex[:6]}", Platform="GCM",
                                          Attributes={"PlatformCredential": "x"})["PlatformApplicationArn"]
    endpoint = sns.create_platform_endpoint(PlatformApplicationArn=arn, Token="ceiling")["EndpointArn"]
    t0 = time.time()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda _: sns.publish(TargetArn=endpoint, Message="x"), range(500)))
    ceiling = 500 / (time.time() - t0)
    return {
        "fans": fans_n, "registration_errors_first_try": sum(1 for c in codes if c not in (200, 201)),
        "registration_codes": {str(c): codes.count(c) for c in sorted(set(codes))},
        "pushed": len(sent), "duplicates": sum(n - 1 for n in per_user.values() if n > 1),
        "resume_to_admitted_ms": {"p50": round(percentile(admitted, 0.5) * 1000, 1),
                                  "p95": round(percentile(admitted, 0.95) * 1000, 1),
                                  "max": round(max(admitted, default=0) * 1000, 1)},
        "admission_to_sns_ms": {"p50": round(percentile(latency, 0.5) * 1000, 1),
                                "p95": round(percentile(latency, 0.95) * 1000, 1),
                                "max": round(max(latency, default=0) * 1000, 1)},
        "moto_publish_ceiling_per_s": round(ceiling, 1),
        "floor_ms_at_ceiling": round(fans_n / ceiling * 1000, 1),
    }


# --- report -------------------------------------------------------------------------------------

TARGETS = {"status": 0.75, "join": 0.6, "reserve": 0.6, "holds": 0.6}
REFERENCES = (("reference", "gunicorn -w 2"), ("reference_granian", "granian -w 2"))


def _latency_timeline(held: list[Any], latencies: list[float], slice_s: float = 0.5) -> list[list[float]]:
    """Reserve -> held (``latencies``, one per hold) by when the request was accepted: [seconds
    into the burst, holds, p50 ms, p99 ms] per slice, so a tail can be placed (start-up,
    mid-burst, the end)."""
    if not held:
        return []
    first = min(r.created_at for r in held)
    slices: dict[int, list[float]] = {}
    for r, latency in zip(held, latencies, strict=True):
        slot = int((r.created_at - first).total_seconds() // slice_s)
        slices.setdefault(slot, []).append(latency)
    return [[slot * slice_s, len(lat), round(percentile(lat, 0.5) * 1000, 1), round(percentile(lat, 0.99) * 1000, 1)]
            for slot, lat in sorted(slices.items())]


def figures(result: dict) -> list[tuple[str, str, float, float, str]]:
    """(key, name, per second, p99 ms, target) of every measured figure."""
    sale = result.get("flash_sale")
    rows = []
    if "status" in result:
        rows += [("status", "queue status poll (200)", result["status"]["throughput_per_s"], result["status"]["p99_ms"],
                  f">= {TARGETS['status']}, p99 < 100 ms"),
                 ("join", "queue re-join (202)", result["join"]["throughput_per_s"], result["join"]["p99_ms"],
                  f">= {TARGETS['join']}, p99 < 150 ms")]
    if sale is not None:
        rows += [("reserve", "reserve accepted (202)", sale["answers"]["throughput_per_s"], sale["answers"]["p99_ms"],
                  f">= {TARGETS['reserve']}"),
                 ("holds", "holds settled", sale["holds_settled_per_s"], sale["reserve_to_held_ms"]["p99"],
                  f">= {TARGETS['holds']}, p99 < 500 ms")]
    return rows


def table(result: dict) -> str:
    sale, push = result.get("flash_sale"), result.get("push_burst")
    refs = [(key, name, result[key]["throughput_per_s"]) for key, name in REFERENCES if key in result]
    out = [f"API server: {result.get('api_server')}; configuration: {result.get('configuration')}",
           f"{'figure':<28}{'per s':>9}{'p99 ms':>9}" + "".join(f"{'/ ' + k.split('_')[-1]:>11}" for k, _, _ in refs)
           + "  target", "-" * 96]
    for key, name, rate in refs:
        out.append(f"{'reference, ' + name:<28}{rate:>9.1f}{result[key]['p99_ms']:>9.1f}"
                   + "".join(f"{rate / r:>11.2f}" for _, _, r in refs))
    for _, name, rate, p99, target in figures(result):
        out.append(f"{name:<28}{rate:>9.1f}{p99:>9.1f}" + "".join(f"{rate / r:>11.2f}" for _, _, r in refs)
                   + f"  {target}")
    if sale is not None:
        out.append(f"units sold {sale['units_held']} of capacity {sale['capacity']} (checked: exactly, never more); "
                   f"not accepted {sale['answers']['not_served']}; 5xx {sale['five_xx']}; reserve -> held "
                   f"p50/p95/p99 {sale['reserve_to_held_ms']['p50']}/{sale['reserve_to_held_ms']['p95']}/"
                   f"{sale['reserve_to_held_ms']['p99']} ms")
    warm = result.get("warmup_sale")
    if warm is not None:
        out.append(f"warm-up sale before it (the processes' first, not measured): {warm['held']} of "
                   f"{warm['buyers']} held, {warm['reserve_per_s']} reserves/s, reserve -> held p99 "
                   f"{warm['reserve_to_held_ms']['p99']} ms")
    if push:
        lat = push["admission_to_sns_ms"]
        out.append(f"push burst: {push['pushed']} of {push['fans']} pushed, {push['duplicates']} duplicates, "
                   f"{push['registration_errors_first_try']} registration errors; admission -> SNS "
                   f"p50/p95/max {lat['p50']}/{lat['p95']}/{lat['max']} ms; moto's own ceiling "
                   f"{push['moto_publish_ceiling_per_s']}/s (floor for the burst {push['floor_ms_at_ceiling']} ms)")
        adm = push["resume_to_admitted_ms"]
        out.append(f"admission latency (resume -> admitted, housekeeping {result.get('housekeeping')}): "
                   f"p50/p95/max {adm['p50']}/{adm['p95']}/{adm['max']} ms")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--buyers", type=int, default=5000)
    parser.add_argument("--capacity", type=int, default=0, help="GA units (default: one per buyer)")
    parser.add_argument("--config", choices=("production", "testing"), default="production",
                        help="production's configuration with test secrets and Kafka on (as deployed), or testing's")
    parser.add_argument("--warmup-buyers", type=int, default=1000,
                        help="a sale of this many buyers first, not measured: the processes' first "
                             "sale pays for connections, compiled statements and cold tables (0: none)")
    parser.add_argument("--fans", type=int, default=1000, help="push burst size (0 skips it)")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk loop")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--output", default=str(ROOT / "var" / "bench" / "flash-sale.json"))
    parser.add_argument("--redis-aof", choices=["always", "everysec"],
                        help="run against a private redis-server with this appendfsync policy (AOF on)")
    parser.add_argument("--skip-queue", action="store_true", help="skip status polling and re-join")
    parser.add_argument("--skip-sale", action="store_true", help="skip the flash sale")
    parser.add_argument("--server", choices=("granian", "gunicorn"), default="granian",
                        help="the API's REST server: granian as deployed (app/serve.py), or gunicorn "
                             "with gevent workers (docker/gunicorn.conf.py, the SSE server) to compare")
    parser.add_argument("--reserve-path", choices=("lean", "flask"), default="lean",
                        help="reserve's 202 from the lean WSGI path (as deployed, app/booking/fast_reserve.py) "
                             "or from the Flask view (API_RESERVE_FAST_PATH=0), to compare")
    parser.add_argument("--writer", choices=("thread", "process"), default="thread",
                        help="the hold writer as a thread of each booking worker (as deployed), or as "
                             "processes of its own (python -m app.booking.writer, one per worker process)")
    parser.add_argument("--housekeeping", choices=("own", "shared"), default="own",
                        help="beat's ticks on their own worker (as deployed) or on the main worker")
    args = parser.parse_args()
    private_redis = start_aof_redis(args.redis_aof) if args.redis_aof else None
    if private_redis:
        os.environ["BENCH_REDIS_URL"] = private_redis[0]
    from tests.support import CeleryProcess, Tansu, free_port, start_worker, wait_port

    kafka = None
    if args.config == "production":  # events published as deployed: the outbox relay to a real broker
        kafka = Tansu()
        kafka.start()
    env = configure(production=args.config == "production", kafka=kafka.bootstrap if kafka else "")

    # moto in a process of its own: in this process it would share a GIL with the measurement
    moto_port = free_port()
    moto_server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1",
                                    "-p", str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(moto_port, timeout=30)
    moto_url = f"http://127.0.0.1:{moto_port}"
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "eu-west-1", "SNS_ENDPOINT_URL": moto_url})
    import boto3

    os.environ["SNS_FCM_APPLICATION_ARN"] = boto3.client("sns", endpoint_url=moto_url).create_platform_application(
        Name="bench-fcm", Platform="GCM", Attributes={"PlatformCredential": "x"})["PlatformApplicationArn"]
    fresh_database(env["DATABASE_URL"])
    from app import create_app

    app = create_app()
    procs: list[Any] = []
    result: dict[str, Any] = {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "machine_cores": os.cpu_count(),
                              "connections": args.connections, "wrk_threads": 2}
    try:
        result.update(references(env["REDIS_URL"], args.seconds, args.connections))
        api = api_server(args.server, fast_reserve=args.reserve_path == "lean")
        procs.append(api)
        if not args.skip_queue:
            result["status"], result["join"] = waiting_room(app, api.url, args.seconds, args.connections)
        writer_env = {"HOLD_WRITER_ENABLED": "0"} if args.writer == "process" else None
        if args.writer == "process":  # the writer's own processes, as many as the worker has
            for _ in range(args.worker_concurrency):
                procs.append(CeleryProcess([], name="bench-writer", module="app.booking.writer"))
        if args.housekeeping == "own":  # as deployed: beat's ticks on a worker of their own, events off
            procs.append(start_worker(concurrency=args.worker_concurrency, name="bench", env=writer_env,
                                      queues=",".join(celeryconfig.WORK_QUEUES)))
            procs.append(start_worker(concurrency=4, name="bench-housekeeping", queues="housekeeping", pool="threads",
                                      env={"CELERY_TASK_EVENTS": "0"}))
        else:  # the ticks share the main worker, as before the housekeeping queue existed
            procs.append(start_worker(concurrency=args.worker_concurrency, name="bench", env=writer_env))
        procs.append(CeleryProcess(["beat", "-l", "WARNING"], name="bench-beat",
                                   env={"CELERY_TASK_EVENTS": "0"} if args.housekeeping == "own" else None))
        capacity = args.capacity or args.buyers
        if not args.skip_sale:
            if args.warmup_buyers:  # as the references get their warm-up: a sale of its own, not measured
                warm = flash_sale(app, api.url, args.warmup_buyers, args.warmup_buyers, args.connections)
                result["warmup_sale"] = {k: warm[k] for k in ("buyers", "held", "five_xx", "reserve_to_held_ms")}
                result["warmup_sale"]["reserve_per_s"] = warm["answers"]["throughput_per_s"]
            result["flash_sale"] = flash_sale(app, api.url, args.buyers, capacity, args.connections)
        if args.fans:
            result["push_burst"] = push_burst(app, api.url, args.fans, moto_url)
    finally:
        for proc in reversed(procs):
            proc.stop()
        moto_server.terminate()
        if kafka:
            kafka.stop()
        drop_database(env["DATABASE_URL"])
        if private_redis:
            private_redis[1].terminate()
    result["redis_appendfsync"] = args.redis_aof or "as configured (the shared Redis)"
    result["api_server"] = ("granian, python -m app.serve (as deployed)" if args.server == "granian"
                            else "gunicorn + gevent, docker/gunicorn.conf.py")
    result["housekeeping"] = "own worker" if args.housekeeping == "own" else "shared worker"
    result["hold_writer"] = args.writer
    result["reserve_path"] = args.reserve_path
    result["configuration"] = ("production (test secrets), Kafka on (Tansu), the configured limits"
                               if args.config == "production" else "testing, Kafka off, per-user limit 1,000/s")
    result["ratios"] = {key: {fig: round(rate / result[key]["throughput_per_s"], 3)
                              for fig, _, rate, _, _ in figures(result)} for key, _ in REFERENCES}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print()
    print(table(result))
    print(f"\nJSON: {args.output}")
    broken = invariants_broken(result)
    if broken:  # checked in code, not left to whoever reads the table
        print("\nFAILED: " + "; ".join(broken), file=sys.stderr)
        sys.exit(1)


def invariants_broken(result: dict[str, Any]) -> list[str]:
    """What must hold whatever the speed: every unit sold and never one more, every request
    accepted (capacity covers the demand), no 5xx."""
    sale = result.get("flash_sale")
    if sale is None:
        return []
    broken = []
    warm = result.get("warmup_sale")
    if warm is not None and (warm["held"] != warm["buyers"] or warm["five_xx"]):
        broken.append(f"the warm-up sale held {warm['held']} of {warm['buyers']} with {warm['five_xx']} 5xx")
    if sale["units_held"] != sale["capacity"]:
        broken.append(f"{sale['units_held']} units held of a capacity of {sale['capacity']} (exactly that many)")
    if sale["answers"]["not_served"]:
        answers = sale["answers"]
        broken.append(f"{answers['not_served']} reserve requests were not accepted: {answers['codes']}; "
                      f"first answer of each: {answers.get('refused_sample')}")
    counters = sale["section_counters"]
    if counters["sold"] + counters["held"] > counters["capacity"]:
        broken.append(f"the section counts {counters['sold']} sold + {counters['held']} held > {counters['capacity']}")
    if sale["five_xx"]:
        broken.append(f"{sale['five_xx']} answers were 5xx")
    return broken


def api_server(program: str, fast_reserve: bool = True) -> Server:
    """The API as deployed: granian (app/serve.py), or gunicorn with gevent workers to compare."""
    env = {"PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="bench-prom-"), "WEB_CONCURRENCY": "2",
           "API_RESERVE_FAST_PATH": "1" if fast_reserve else "0"}
    if program == "granian":
        return Server([sys.executable, "-m", "app.serve"], env, "api")
    return Server([sys.executable, "-m", "gunicorn", "-b", "{bind}", "-c", "docker/gunicorn.conf.py", "wsgi:app"],
                  env, "api")


def start_aof_redis(policy: str) -> tuple[str, subprocess.Popen]:
    """A private redis-server with AOF on and the given appendfsync policy (durability's cost)."""
    import shutil

    from tests.support import free_port, wait_port

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "yes", "--appendfsync", policy, "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return f"redis://127.0.0.1:{port}/12", proc


if __name__ == "__main__":
    main()
