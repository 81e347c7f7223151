"""SSE benchmark: many idle waiting-room streams on one gevent worker, and what they cost.

Opens N streams (raw sockets, one thread), waits for every first event, measures status-poll
latency while they stay open and the worker's memory, then admits everybody and measures how long
until every stream has delivered "admitted" and closed.

    python -m bench.sse_bench --streams 1000
"""

from __future__ import annotations

import argparse
import selectors
import socket
import time

import requests

from bench.common import configure, create_event, fresh_database, make_users, percentile, report, summarize


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=200)
    args = parser.parse_args()
    env = configure()
    fresh_database(env["DATABASE_URL"])
    from app import create_app
    from app.queue.services import admit_now, join
    from tests.support import LiveApi

    app = create_app()
    event_id, _ = create_event(app)
    users = make_users(app, args.streams + 1)
    with app.test_request_context():
        for u in users:
            join(event_id, u["id"])
    api = LiveApi(env={"PROMETHEUS_MULTIPROC_DIR": "", "WEB_CONCURRENCY": "1",
                       "GUNICORN_WORKER_CONNECTIONS": str(args.streams + 100)}, workers=1)
    worker_pid = int(open(f"/proc/{api.proc.pid}/task/{api.proc.pid}/children").read().split()[0])
    base_rss = rss_mb(worker_pid)
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytes] = {}
    started = time.monotonic()
    for u in users[1:]:
        sock = socket.create_connection(("127.0.0.1", api.port))
        sock.sendall((f"GET /api/queue/{event_id}/stream HTTP/1.1\r\nHost: bench\r\n"
                      f"Authorization: {u['headers']['Authorization']}\r\n\r\n").encode())
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        buffers[sock] = b""

    def pump(until) -> None:
        while not until():
            for key, _ in selector.select(timeout=1):
                data = key.fileobj.recv(65536)
                if not data:
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
                    buffers[key.fileobj] += b"<closed>"
                else:
                    buffers[key.fileobj] += data

    deadline = time.monotonic() + 120
    pump(lambda: all(b"event: status" in b for b in buffers.values()) or time.monotonic() > deadline)
    opened = time.monotonic() - started
    first_events = sum(1 for b in buffers.values() if b"event: status" in b)
    streaming_rss = rss_mb(worker_pid)
    poller = users[0]
    latencies = []
    session = requests.Session()
    t0 = time.monotonic()
    for _ in range(args.polls):
        t = time.perf_counter()
        response = session.get(f"{api.url}/api/queue/{event_id}/status", headers=poller["headers"])
        assert response.status_code in (200, 429)
        latencies.append(time.perf_counter() - t)
        pump(lambda: True)
    polled = time.monotonic() - t0
    t_admit = time.monotonic()
    with app.test_request_context():
        admit_now(event_id, len(users))
    # a finished stream ends its chunked body ("0" chunk); the connection itself stays keep-alive
    def told(b: bytes) -> bool:
        return b'"status": "admitted"' in b and b"\r\n0\r\n\r\n" in b

    pump(lambda: all(told(b) for b in buffers.values()) or time.monotonic() > t_admit + 120)
    drained = time.monotonic() - t_admit
    admitted = sum(1 for b in buffers.values() if told(b))
    api.stop()
    report("sse streams", [summarize("status poll with streams open", latencies, polled)],
           {"streams": args.streams, "first_events": first_events, "first_events_s": round(opened, 2),
            "worker_rss_mb_before": round(base_rss), "worker_rss_mb_streaming": round(streaming_rss),
            "told_admitted_and_ended": admitted, "admit_to_all_told_s": round(drained, 2),
            "poll_p99_ms": round(percentile(latencies, 0.99) * 1000, 1)})


if __name__ == "__main__":
    main()
