"""A carried stream (app/queue/streams.py): the ticker writes its events on its socket as the chunks
gunicorn would have written, and hands it back to its greenlet for what it must not do itself.
Real sockets (a connected pair); no server, no Redis."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from app.queue import services, streams
from app.redis.calls import ServingReply

LINE_NUMBER = 100_000


def figures(served_up_to: int, *, shuffled: bool = True) -> ServingReply:
    return ServingReply(served_up_to=served_up_to, eta_rate=5.0, eta_rel=0.2, paused=False, admit_per_minute=300,
                        heartbeat_timeout=60, opens_at=0, closes_at=None, shuffled=shuffled, waiting=LINE_NUMBER,
                        pre_queue=0, admitted_total=served_up_to)


@pytest.fixture()
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server_end, fan_end = socket.socketpair()
    yield server_end, fan_end
    server_end.close()
    fan_end.close()


def carried(server_end: socket.socket, line_number: int | None = LINE_NUMBER, *, chunked: bool = True,
            deadline: float = 3600) -> streams.CarriedStream:
    view = services.QueueView(status="waiting", position=line_number, line_number=line_number, place="p")
    out = streams.StreamSocket(server_end, chunked)
    return streams.CarriedStream(out, view, streams.event_bytes(view), time.monotonic(),
                                 time.monotonic() + deadline)


def chunks(raw: bytes) -> list[bytes]:
    """The chunks of an HTTP/1.1 chunked body; fails on a torn or malformed one."""
    out = []
    while raw:
        size, _, rest = raw.partition(b"\r\n")
        n = int(size, 16)
        assert rest[n:n + 2] == b"\r\n", "a chunk not followed by CRLF"
        out.append(rest[:n])
        raw = rest[n + 2:]
    return out


def read_all(fan_end: socket.socket) -> bytes:
    fan_end.setblocking(False)
    data = b""
    while True:
        try:
            part = fan_end.recv(1 << 20)
        except BlockingIOError:
            return data
        if not part:
            return data
        data += part


def test_each_tick_writes_the_new_position_as_one_chunk(pair):
    server_end, fan_end = pair
    stream = carried(server_end)
    for served in (10, 20, 20):  # the third tick changes nothing: no event
        assert stream.on_tick(figures(served), time.time(), time.monotonic(), peek=False) is None
    events = chunks(read_all(fan_end))
    assert len(events) == 2 and all(e.startswith(b"event: status\ndata: ") and e.endswith(b"\n\n") for e in events)
    positions = [json.loads(e.split(b"data: ", 1)[1])["position"] for e in events]
    assert positions == [LINE_NUMBER - 10, LINE_NUMBER - 20]


def test_a_fan_who_does_not_read_is_handed_back_with_the_rest_of_the_event(pair):
    """The ticker never waits for one fan: once the socket's buffer is full, the part not sent goes
    back to the stream's greenlet, which sends it (blocking only itself); nothing is torn."""
    server_end, fan_end = pair
    server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    fan_end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stream = carried(server_end)
    reason, served = None, 0
    while reason is None and served < 10_000:
        served += 1
        reason = stream.on_tick(figures(served), time.time(), time.monotonic(), peek=False)
    assert reason == "blocked" and stream.unsent
    written = read_all(fan_end)
    events = chunks(written + stream.unsent)  # what the greenlet then sends completes the last chunk
    positions = [json.loads(e.split(b"data: ", 1)[1])["position"] for e in events]
    assert positions == list(range(LINE_NUMBER - 1, LINE_NUMBER - served - 1, -1))


def test_what_needs_a_call_goes_back_to_the_greenlet(pair):
    server_end, fan_end = pair
    reached = carried(server_end)
    assert reached.on_tick(figures(LINE_NUMBER), time.time(), time.monotonic(), peek=False) == "exact"
    in_pre_queue = carried(server_end, line_number=None)
    assert in_pre_queue.on_tick(figures(5, shuffled=False), time.time(), time.monotonic(), peek=False) is None
    assert in_pre_queue.on_tick(figures(5, shuffled=True), time.time(), time.monotonic(), peek=False) == "exact"
    late = carried(server_end, deadline=-1)
    assert late.on_tick(figures(1), time.time(), time.monotonic(), peek=False) == "deadline"
    assert read_all(fan_end) == b""  # none of them wrote


def test_a_closed_page_is_noticed_by_the_peek_and_by_the_write(pair):
    server_end, fan_end = pair
    stream = carried(server_end)
    assert stream.on_tick(figures(1), time.time(), time.monotonic(), peek=True) is None  # still there
    fan_end.close()
    assert stream.on_tick(figures(2), time.time(), time.monotonic(), peek=True) == "gone"
    unpeeked = carried(server_end)
    assert unpeeked.on_tick(figures(3), time.time(), time.monotonic(), peek=False) == "gone"  # EPIPE


def test_an_http_1_0_stream_is_written_unframed(pair):
    server_end, fan_end = pair
    stream = carried(server_end, chunked=False)
    assert stream.on_tick(figures(1), time.time(), time.monotonic(), peek=False) is None
    raw = read_all(fan_end)
    assert raw.startswith(b"event: status\ndata: ") and raw.endswith(b"\n\n")
