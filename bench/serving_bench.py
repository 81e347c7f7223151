"""`make bench`, the million-fan figures: status and live updates whose Redis cost is per sale, not per fan.

In one run, from production's configuration (test secrets, Kafka on, the configured limits):
- the reference app (bench/reference_app.py) on gunicorn and on granian;
- `GET /api/queue/{id}/serving` through nginx with docker/nginx.conf's micro-cache in front of the
  API (granian, as deployed), driven by wrk with 64 connections: throughput and p99 against the
  references, and Redis commands per second at two loads and with no cache (each request reaching
  the API);
- one gunicorn + gevent stream-server process (docker/gunicorn.conf.py, one worker) holding a small
  and a large number of open streams of one sale while the line moves every second: updates per
  stream per second, the process's CPU and memory per 1,000 streams, and Redis commands per second.

Each poll or update counts only when it was a 200. Redis commands are INFO's
total_commands_processed over the window, less the bench's own calls (one advance per second).

    python -m bench.serving_bench --streams 19500
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis

from bench.common import configure, cpu_seconds, create_event, drop_database, fresh_database, make_users
from bench.flash_sale import REFERENCES, Server, references, request_line, wrk

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"serving_ratio": 10.0, "serving_p99_ms": 20.0, "streams": 20_000, "updates_per_stream_s": 0.9}


def redis_commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- /serving through the micro-cache ---------------------------------------------------------------

def serving(app: Any, api_url: str, api_port: int, rclient: redis.Redis, seconds: int, connections: int) -> dict:
    from app.queue.services import join
    from tests.integration.test_rolling_restart import Nginx

    event_id, _ = create_event(app, admit_per_minute=60)
    with app.test_request_context():
        for user in range(1, 1001):
            join(event_id, 10_000_000 + user)
    lines = [request_line("GET", f"/api/queue/{event_id}/serving", {})]
    nginx = Nginx([api_port], api_port)
    out: dict[str, Any] = {}
    try:
        wrk(nginx.url, lines, mode="loop", seconds=3, connections=connections)  # warm-up
        for name, url, conns in (("cached", nginx.url, connections), ("cached_light", nginx.url, 4),
                                 ("uncached", api_url, connections)):
            before = redis_commands(rclient)
            run = wrk(url, lines, mode="loop", seconds=seconds, connections=conns)
            run["redis_commands_per_s"] = round((redis_commands(rclient) - before) / run["seconds"], 1)
            run["connections"] = conns
            out[name] = run
    finally:
        nginx.stop()
    return out


# --- SSE by broadcast -------------------------------------------------------------------------------

class StreamClients:
    """Open streams on raw non-blocking sockets, read by one selector: counts each stream's events."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.selector = selectors.DefaultSelector()
        self.events: dict[socket.socket, int] = {}
        self.closed = self.refused = 0

    def open(self, path: str, authorization: str) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: {authorization}\r\n\r\n".encode())
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ)
        self.events[sock] = 0
        return sock

    def pump(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            for key, _ in self.selector.select(timeout=min(left, 0.2)):
                sock = key.fileobj
                try:
                    data = sock.recv(262_144)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.selector.unregister(sock)
                    sock.close()
                    if self.events.pop(sock):  # a stream that had opened, then ended
                        self.closed += 1
                    continue
                if self.events[sock] == 0 and not data.startswith(b"HTTP/1.1 200"):
                    self.selector.unregister(sock)  # refused (a 429 or 503): not a stream
                    sock.close()
                    self.events.pop(sock)
                    self.refused += 1
                    continue
                self.events[sock] += data.count(b"event: status")

    def total(self) -> int:
        return sum(self.events.values())

    def close(self) -> None:
        for sock in list(self.events):
            try:
                self.selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()


def streams(app: Any, rclient: redis.Redis, count: int, window: int) -> dict:
    from app.queue.services import advance, join
    from tests.support import wait_port

    front = 1000  # fans ahead of the streams, admitted 5 a second: every stream's position moves
    event_id, _ = create_event(app, admit_per_minute=1, heartbeat_timeout_seconds=3600)
    fans = make_users(app, count)
    with app.test_request_context():
        for user in range(front):
            join(event_id, 20_000_000 + user)
        places = [join(event_id, fan["id"]).place for fan in fans]
    server = Server([sys.executable, "-m", "gunicorn", "-b", "{bind}", "-c", "docker/gunicorn.conf.py", "wsgi:app"],
                    {"WEB_CONCURRENCY": "1", "GUNICORN_WORKER_CONNECTIONS": str(count + 200),
                     "PROMETHEUS_MULTIPROC_DIR": ""}, f"stream-{count}")
    wait_port(server.port)
    worker_pid = int(Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()[0])
    rss_before = rss_mb(worker_pid)
    clients = StreamClients(server.port)
    stop = threading.Event()

    def advancer() -> None:  # the line moves once a second, on the second (as beat's ticks do)
        next_at = time.monotonic()
        with app.app_context():
            while True:
                next_at += 1.0
                if stop.wait(max(0.0, next_at - time.monotonic())):
                    return
                advance(event_id, force=5)

    mover = threading.Thread(target=advancer, daemon=True)
    try:
        # Redis's own count includes the commands inside scripts: the advancer's share (its
        # ADVANCE admits 5 a second) is measured first, with no stream open, and taken off
        cmds0, t0 = redis_commands(rclient), time.monotonic()
        with app.app_context():
            for _ in range(5):
                advance(event_id, force=5)
                time.sleep(1.0)
        advancer_per_s = (redis_commands(rclient) - cmds0) / (time.monotonic() - t0)
        opened_at = time.monotonic()
        # opened in batches, each answered before the next (a real crowd spreads over the
        # processes and the seconds; 20,000 requests at once into one process would time out
        # waiting for its Redis connections); a stream refused on the way is opened again, as
        # EventSource reconnects
        pending = list(zip(fans, places, strict=True))
        deadline = time.monotonic() + 600
        while pending and time.monotonic() < deadline:
            batch, pending = pending[:500], pending[500:]
            socks = [clients.open(f"/api/queue/{event_id}/stream?place={place}", fan["headers"]["Authorization"])
                     for fan, place in batch]
            while any(clients.events.get(sock) == 0 for sock in socks) and time.monotonic() < deadline:
                clients.pump(0.1)
            pending += [item for item, sock in zip(batch, socks, strict=True) if sock not in clients.events]
        open_seconds = time.monotonic() - opened_at
        first = sum(1 for n in clients.events.values() if n)
        mover.start()
        clients.pump(3)  # the ticks settle in
        events0, cpu0, cmds0, t0 = clients.total(), cpu_seconds(worker_pid), redis_commands(rclient), time.monotonic()
        clients.pump(window)
        elapsed = time.monotonic() - t0
        events, cpu = clients.total() - events0, cpu_seconds(worker_pid) - cpu0
        cmds = (redis_commands(rclient) - cmds0) / elapsed
        rss = rss_mb(worker_pid)
    finally:
        stop.set()
        clients.close()
        server.stop()
    return {
        "streams": count, "open": first, "closed_early": clients.closed, "open_seconds": round(open_seconds, 1),
        "opens_per_s": round(count / open_seconds, 1), "opens_refused_and_retried": clients.refused,
        "updates_per_stream_s": round(events / elapsed / max(first, 1), 3),
        "cpu_core_share": round(cpu / elapsed, 3),
        "cpu_ms_per_1000_streams_s": round(cpu / elapsed * 1000 / max(first, 1) * 1000, 1),
        "rss_mb": round(rss), "rss_mb_per_1000_streams": round((rss - rss_before) / max(first, 1) * 1000, 1),
        "redis_commands_per_s": round(cmds, 1), "advancer_commands_per_s": round(advancer_per_s, 1),
        "stream_server_commands_per_s": round(max(0.0, cmds - advancer_per_s), 1),
    }


# --- report -------------------------------------------------------------------------------------------

def table(result: dict) -> str:
    refs = [(key, name, result[key]["throughput_per_s"]) for key, name in REFERENCES]
    cached, light, uncached = (result["serving"][k] for k in ("cached", "cached_light", "uncached"))
    out = [f"configuration: {result['configuration']}",
           f"{'figure':<44}{'per s':>10}{'p99 ms':>9}" + "".join(f"{'/ ' + k.split('_')[-1]:>11}" for k, _, _ in refs)
           + "  target", "-" * 110]
    for key, name, rate in refs:
        out.append(f"{'reference, ' + name:<44}{rate:>10.1f}{result[key]['p99_ms']:>9.1f}"
                   + "".join(f"{rate / r:>11.2f}" for _, _, r in refs))
    for label, run in (("/serving via nginx micro-cache, 64 conns", cached), ("same, 4 connections", light),
                       ("/serving with no cache (API direct)", uncached)):
        target = (f">= {TARGETS['serving_ratio']:.0f}x, p99 < {TARGETS['serving_p99_ms']:.0f} ms"
                  if run is cached else "")
        out.append(f"{label:<44}{run['throughput_per_s']:>10.1f}{run['p99_ms']:>9.1f}"
                   + "".join(f"{run['throughput_per_s'] / r:>11.2f}" for _, _, r in refs) + f"  {target}")
    out.append(f"Redis commands/s while fans poll: {cached['redis_commands_per_s']} at "
               f"{cached['throughput_per_s']:.0f} polls/s, {light['redis_commands_per_s']} at "
               f"{light['throughput_per_s']:.0f} polls/s (no cache: {uncached['redis_commands_per_s']} at "
               f"{uncached['throughput_per_s']:.0f}); target: independent of the fans, ~1 per sale per second")
    out.append(f"{'streams of one sale, one process':<36}{'open':>8}{'upd/s':>8}{'CPU':>7}"
               f"{'ms CPU/s per 1k':>17}{'RSS MB':>8}{'MB/1k':>7}{'Redis/s':>9}")
    for run in result["streams"]:
        out.append(f"{run['streams']:<36}{run['open']:>8}{run['updates_per_stream_s']:>8.2f}"
                   f"{run['cpu_core_share']:>7.2f}{run['cpu_ms_per_1000_streams_s']:>17.1f}{run['rss_mb']:>8}"
                   f"{run['rss_mb_per_1000_streams']:>7.1f}{run['stream_server_commands_per_s']:>9.1f}")
    out.append("Redis/s: the stream server's commands (inside scripts included), the advancer's taken off")
    out.append(f"target: >= {TARGETS['streams']:,} streams updated every second; Redis commands/s independent of "
               f"the stream count (descriptor limit here: {result['descriptor_limit']:,} per process)")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=64)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # a stream is a descriptor in the stream process, which also holds its own 15 and up to
    # REDIS_MAX_CONNECTIONS (100) to Redis, and another in this client
    parser.add_argument("--streams", type=int, default=min(20_000, hard - 130),
                        help="the large stream count (default: 20,000, or what the descriptor limit allows)")
    parser.add_argument("--small-streams", type=int, default=2000)
    parser.add_argument("--window", type=int, default=10, help="seconds the streams are measured")
    parser.add_argument("--skip-streams", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "var" / "bench" / "serving.json"))
    args = parser.parse_args()
    from tests.support import Tansu

    kafka = Tansu()
    kafka.start()
    env = configure(production=True, kafka=kafka.bootstrap)
    fresh_database(env["DATABASE_URL"])
    from app import create_app
    from bench.flash_sale import api_server

    app = create_app()
    rclient = redis.Redis.from_url(env["REDIS_URL"])
    result: dict[str, Any] = {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "machine_cores": os.cpu_count(),
                              "configuration": "production (test secrets), Kafka on (Tansu), the configured limits",
                              "descriptor_limit": hard}
    procs: list[Any] = []
    try:
        result.update(references(env["REDIS_URL"], args.seconds, args.connections))
        api = api_server("granian")
        procs.append(api)
        result["serving"] = serving(app, api.url, api.port, rclient, args.seconds, args.connections)
        api.stop()
        procs.remove(api)
        result["streams"] = [] if args.skip_streams else [
            streams(app, rclient, n, args.window) for n in (args.small_streams, args.streams)]
    finally:
        for proc in procs:
            proc.stop()
        kafka.stop()
        drop_database(env["DATABASE_URL"])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print()
    print(table(result))
    print(f"\nJSON: {args.output}")


if __name__ == "__main__":
    main()
