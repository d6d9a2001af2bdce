"""Issue 12, section 3: limits an operator relies on.

Client connections are bounded in all (limits.max_connections) and per worker
(limits.max_worker_connections): a connection beyond them is accepted, answered 503 with
`Connection: close` and closed, and counted in corral_proxy_connections_rejected_total. Slow
clients do not hold up others: a request is answered while 300 heads trickle in a byte a second.
"""
import re
import socket
import threading
import time

from conftest import eventually


def rejected(px):
    for line in px.metrics().splitlines():
        if line.startswith("corral_proxy_connections_rejected_total "):
            return int(line.split()[1])
    raise AssertionError("no corral_proxy_connections_rejected_total in /metrics")


def read_all(s):
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def open_idle(px, n):
    """n idle connections the proxy (one worker) has accepted (its gauge says so), once the
    connection conftest made to see the port open is gone: it is accepted before a request
    made after it (one listener accepts in order), then closes."""
    assert px.get("/warm").status == 200
    eventually(lambda: px.connections() == 0, what="the readiness probe to close")
    socks = [socket.create_connection(("127.0.0.1", px.port), timeout=30) for _ in range(n)]
    eventually(lambda: px.connections() == n, what="%d connections accepted" % n)
    return socks


def test_issue_12_a_connection_over_max_connections_gets_503_and_close(origin, proxy):
    px = proxy(threads=1, args=["--set", "limits.max_connections=3"])
    eventually(lambda: "limits: 3 client connections" in px.errors(), what="the limits line")
    idle = open_idle(px, 3)
    try:
        with socket.create_connection(("127.0.0.1", px.port), timeout=30) as s:
            s.sendall(b"GET /over HTTP/1.1\r\nHost: x\r\n\r\n")
            got = read_all(s)
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 "), got
        assert b"\r\nConnection: close" in head and body == b"too many connections\n"
        assert rejected(px) == 1
        assert origin.count("/over") == 0
        idle.pop().close()  # one slot frees: the next connection is served
        eventually(lambda: px.connections() == 2, what="the closed connection to go")
        assert px.get("/over").status == 200
    finally:
        for s in idle:
            s.close()


def test_issue_12_max_worker_connections_bounds_each_worker(origin, proxy):
    px = proxy(threads=1, args=["--set", "limits.max_worker_connections=2"])
    eventually(lambda: "at most 2 per worker" in px.errors(), what="the limits line")
    idle = open_idle(px, 2)
    try:
        r = px.get("/w")
        assert r.status == 503 and r.headers.get("connection") == "close", r
        assert rejected(px) == 1
    finally:
        for s in idle:
            s.close()


def test_issue_12_300_stalled_heads_do_not_hold_up_a_normal_request(origin, proxy):
    # Each stalled client sends a byte of its head a second (a slowloris); the normal request
    # must be answered long before the head timeout (60 s here) that would end the stalled ones,
    # so an answer within 20 s shows it did not wait behind them.
    px = proxy(args=["--set", "limits.header_timeout=60s"])
    head = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100
    slow = [socket.create_connection(("127.0.0.1", px.port), timeout=30) for _ in range(300)]
    stop = threading.Event()

    def trickle():
        for i in range(len(head)):
            for s in slow:
                try:
                    s.send(head[i:i + 1])
                except OSError:
                    pass
            if stop.wait(1.0):  # the trickle's pace, not a wait for an effect
                return

    t = threading.Thread(target=trickle)
    t.start()
    try:
        eventually(lambda: px.connections() >= 300, what="the stalled clients accepted")
        start = time.monotonic()
        r = px.get("/normal", timeout=60)
        took = time.monotonic() - start
        assert r.status == 200 and r.body == b"/normal #1"
        assert took < 20, "the normal request waited %.1f s" % took
        assert origin.count("/slow") == 0  # no stalled head was complete
    finally:
        stop.set()
        t.join()
        for s in slow:
            s.close()


def metric(px, name):
    for line in px.metrics().splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


def test_issue_12_idle_connections_hold_no_buffers(origin, proxy):
    # A connection takes its buffers when bytes arrive and gives them back when it is idle
    # again; a worker keeps at most 32 spares. 200 keep-alive connections that each had one
    # answer, and 200 that never sent a byte, leave at most the spares allocated.
    px = proxy(threads=2)
    banner = eventually(lambda: re.search(rb"(\d+) bytes of buffers per connection",
                                          px.errors().encode()), what="the limits line")
    per_conn = int(banner.group(1))
    used = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", px.port), timeout=30)
            s.sendall(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
            used.append(s)
        for s in used:
            got = b""
            while b"\r\n\r\n" not in got or len(got.partition(b"\r\n\r\n")[2]) < 8:
                chunk = s.recv(65536)
                assert chunk, got
                got += chunk
            assert got.startswith(b"HTTP/1.1 200 "), got
        silent = [socket.create_connection(("127.0.0.1", px.port), timeout=30)
                  for _ in range(200)]
        used += silent
        eventually(lambda: px.connections() == 400, what="400 connections")
        held = metric(px, "corral_proxy_client_buffer_bytes")
        assert 0 < held <= 2 * 32 * per_conn, (held, per_conn)
    finally:
        for s in used:
            s.close()
