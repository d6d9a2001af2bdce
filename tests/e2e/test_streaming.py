"""Coalesced requests stream the leader's answer: they get its status and headers the moment the
origin sends them and the body as it arrives (busy objects), whatever becomes of the store, and
a client that goes away disturbs neither the others nor the fill.

The origin holds each answer on gates the test opens (origin.py `head_gate`, `gate`), so every
assertion about "before the body is complete" is made while the origin is provably still
holding the rest of the body."""
import socket
import struct

import pytest

from conftest import Proxy, StreamClient, eventually, free_port

N = 20
FIRST = b"first-chunk|"
REST = b"the rest of the body, sent once the test opens the gate"
DEADLINE_S = 30


def start_clients(port, path, n=N):
    clients = [StreamClient(port, path, len(FIRST)) for _ in range(n)]
    for c in clients:
        c.thread.start()
    return clients


def clients_past_the_head(origin, port, path, n=N):
    """Starts n clients of `path`, lets the origin's one fetch send its head, and waits until
    every client has the head and the first bytes. The origin then holds the rest."""
    clients = start_clients(port, path, n)
    eventually(lambda: origin.count(path) == 1, what="the leader's fetch")
    origin.open_gate("head")
    wait_all([c.got_first for c in clients])
    return clients


def wait_all(events):
    for e in events:
        assert e.wait(DEADLINE_S), "a client got nothing within %d s" % DEADLINE_S


def script_gated(origin, path, **extra):
    spec = dict(body=(FIRST + REST).decode(), gate="body", gate_after=len(FIRST),
                head_gate="head", headers={"Cache-Control": "max-age=60"})
    spec.update(extra)
    origin.script(path, **spec)


def wait_origin_holds_body(origin):
    """Waits until the origin waits at the body's gate, which is still shut. The origin sends
    what comes before the gate first, so a client can have it before the origin gets there."""
    eventually(lambda: origin.gate("body") == {"open": False, "waiting": 1},
               what="the origin holding the body at its gate")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_waiters_get_the_head_and_first_bytes_before_the_origin_sends_the_rest(
        origin, proxy, chunked):
    script_gated(origin, "/s", chunked=chunked)
    px = proxy()
    clients = clients_past_the_head(origin, px.port, "/s")
    # Every client has the status, the headers and the first bytes, and the origin still holds
    # the rest of the one answer it was asked for.
    wait_origin_holds_body(origin)
    assert all(c.error is None and c.status == 200 and c.first == FIRST for c in clients)
    caches = sorted(c.headers.get("x-cache") for c in clients)
    assert caches == ["COALESCED"] * (N - 1) + ["MISS"]
    origin.open_gate("body")
    wait_all([c.done for c in clients])
    assert all(c.error is None and c.rest == REST for c in clients)
    assert origin.count("/s") == 1
    # Each connection, the leader's included, ended its streamed response cleanly and serves
    # the next request (kept alive: the same socket).
    for c in clients:
        sock = c.conn.sock
        again = px.request("GET", "/s", conn=c.conn)
        assert (again.cache, again.body, c.conn.sock is sock) == ("HIT", FIRST + REST, True)
    assert origin.count("/s") == 1


def test_a_head_waiter_gets_the_head_of_the_answer_in_flight(origin, proxy):
    script_gated(origin, "/h")
    px = proxy()
    leader = StreamClient(px.port, "/h", len(FIRST))
    leader.thread.start()
    eventually(lambda: origin.count("/h") == 1, what="the leader's fetch")
    head = StreamClient(px.port, "/h", 1, method="HEAD")
    head.thread.start()
    eventually(lambda: px.connections() == 2, what="the HEAD request")
    origin.open_gate("head")
    wait_all([head.done])
    # The whole answer to HEAD, while the origin still holds the leader's body.
    wait_origin_holds_body(origin)
    assert (head.error, head.status, head.first, head.rest) == (None, 200, b"", b"")
    assert head.headers["x-cache"] == "COALESCED"
    assert head.headers["content-length"] == str(len(FIRST + REST))
    origin.open_gate("body")
    wait_all([leader.done])
    assert (leader.error, leader.first + leader.rest) == (None, FIRST + REST)
    sock = head.conn.sock
    again = px.request("HEAD", "/h", conn=head.conn)
    assert (again.status, again.cache, again.body, head.conn.sock is sock) == \
        (200, "HIT", b"", True)
    assert origin.count("/h") == 1


def test_a_waiter_that_goes_away_disturbs_neither_the_others_nor_the_leader(origin, proxy):
    script_gated(origin, "/w")
    px = proxy()
    clients = clients_past_the_head(origin, px.port, "/w", 10)
    waiters = [c for c in clients if c.headers.get("x-cache") == "COALESCED"]
    gone, staying = waiters[:4], [c for c in clients if c not in waiters[:4]]
    for c in gone:
        c.close()
    origin.open_gate("body")
    wait_all([c.done for c in staying])
    assert all(c.error is None and c.first + c.rest == FIRST + REST for c in staying)
    # The gone ones really went: cut off on their side, and closed by the proxy.
    assert all(c.error is not None and c.rest is None for c in gone)
    eventually(lambda: px.connections() == len(staying), what="the gone connections closed")
    assert origin.count("/w") == 1
    assert (px.get("/w").cache, origin.count("/w")) == ("HIT", 1)


def test_the_leaders_client_going_away_does_not_abort_the_fill(origin, proxy):
    script_gated(origin, "/l")
    px = proxy()
    clients = clients_past_the_head(origin, px.port, "/l", 10)
    leader = [c for c in clients if c.headers.get("x-cache") == "MISS"]
    assert len(leader) == 1
    leader[0].close()
    origin.open_gate("body")
    waiters = [c for c in clients if c is not leader[0]]
    wait_all([c.done for c in waiters])
    assert all(c.error is None and c.first + c.rest == FIRST + REST for c in waiters)
    assert leader[0].error is not None and leader[0].rest is None
    eventually(lambda: px.connections() == len(waiters), what="the leader's connection closed")
    # The fill went on for the waiters and was stored.
    assert (px.get("/l").cache, origin.count("/l")) == ("HIT", 1)


def test_a_body_outgrowing_max_object_size_cuts_its_streaming_waiters_short(origin, proxy):
    # Without a Content-Length the size shows only as the body arrives; beyond the limit the
    # answer is not stored, and waiters streaming it cannot be given the rest (memory stays
    # bounded): their responses end early, as the leader's would on an origin failure.
    big = "y" * 3000
    script_gated(origin, "/big", chunked=True, body=FIRST.decode() + big)
    px = proxy(args=["--set", "limits.max_object_size=2KB"])
    clients = clients_past_the_head(origin, px.port, "/big", 5)
    origin.open_gate("body")
    wait_all([c.done for c in clients])
    leader = [c for c in clients if c.headers.get("x-cache") == "MISS"][0]
    assert leader.error is None and leader.first + leader.rest == FIRST + big.encode()
    waiters = [c for c in clients if c is not leader]
    assert all(c.error is not None for c in waiters)
    assert origin.count("/big") == 1


def test_a_store_failure_hands_the_waiters_the_leaders_answer(origin, tmp_path):
    # A Redis store nobody listens on: every store call fails.
    px = Proxy(origin.port, str(tmp_path), args=["--store", "redis://127.0.0.1:%d" % free_port()])
    try:
        script_gated(origin, "/r")
        clients = clients_past_the_head(origin, px.port, "/r")
        origin.open_gate("body")
        wait_all([c.done for c in clients])
        assert all(c.error is None and c.status == 200 and c.first + c.rest == FIRST + REST
                   for c in clients)
        assert origin.count("/r") == 1
        # Nothing was stored: the next request goes to the origin.
        assert px.get("/r").cache == "MISS"
        assert origin.count("/r") == 2
    finally:
        assert px.stop() == 0, px.errors()[-4000:]


BIG = 10 * 1024 * 1024
SENT = 8 * 1024 * 1024  # what the origin sends before its gate: far more than the 1 MiB a
                        # reader may leave unsent and the socket buffers to a stalled client


class StalledClient:
    """Sends one GET, reads its response head, then reads nothing more: its small receive
    buffer fills, and the proxy's write queue to it grows."""

    def __init__(self, port, path, extra=b""):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(60)
        self.sock.connect(("127.0.0.1", port))
        # The Host http.client sends, so that the requests share one primary key.
        self.sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n"
                          % (path.encode(), port, extra))

    def head(self):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(1024)
            assert chunk, "the connection closed before the head"
            data += chunk
        return data.split(b"\r\n\r\n")[0].decode().lower()

    def close(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()  # a reset: nothing else holds this socket


def test_issue_5_a_leader_client_that_stops_reading_and_goes_away_holds_back_nobody(
        origin, proxy):
    origin.script("/big", body_size=BIG, head_gate="head", gate="body", gate_after=SENT,
                  headers={"Cache-Control": "max-age=60"})
    px = proxy()
    leader = StalledClient(px.port, "/big")
    eventually(lambda: origin.gate("head")["waiting"] == 1, what="the leader's fetch")
    waiters = [StreamClient(px.port, "/big", SENT) for _ in range(3)]
    for c in waiters:
        c.thread.start()
    eventually(lambda: px.connections() == 4, what="the waiters")
    origin.open_gate("head")
    assert "x-cache: miss" in leader.head()
    # The waiters get everything the origin sent while the leader's client reads nothing: the
    # origin read does not wait for that client.
    wait_all([c.got_first for c in waiters])
    wait_origin_holds_body(origin)
    leader.close()
    eventually(lambda: px.connections() == 3, what="the leader's connection closed")
    origin.open_gate("body")
    wait_all([c.done for c in waiters])
    for c in waiters:
        assert (c.error, c.headers["x-cache"], len(c.first) + len(c.rest)) == \
            (None, "COALESCED", BIG)
    # The fill went on without its client and was stored.
    r = px.get("/big")
    assert (r.cache, len(r.body), origin.count("/big")) == ("HIT", BIG, 1)


def test_waiters_that_reset_before_the_head_are_dropped_cleanly(origin, proxy):
    # Each waiter's connection is reset while it waits on the flight (the proxy is not reading
    # it then), so writing the head fails at once and closes it; it must not become a reader of
    # the busy object, which the leader (on another worker, with threads=2) keeps appending to.
    origin.script("/reset", body_size=BIG, head_gate="head",
                  headers={"Cache-Control": "max-age=60"})
    px = proxy()
    leader = StreamClient(px.port, "/reset", 1)
    leader.thread.start()
    eventually(lambda: origin.gate("head")["waiting"] == 1, what="the leader's fetch")
    waiters = [StalledClient(px.port, "/reset") for _ in range(20)]
    eventually(lambda: px.connections() == 21, what="the waiters")
    for w in waiters:
        w.close()
    origin.open_gate("head")
    wait_all([leader.done])
    assert (leader.error, len(leader.first) + len(leader.rest)) == (None, BIG)
    eventually(lambda: px.connections() == 1, what="the reset connections closed")
    assert (px.get("/reset").cache, origin.count("/reset")) == ("HIT", 1)


def in_transit(port):
    """Bytes of the connections to `port` written by the server but not read by the client yet:
    the server's unacknowledged send queues plus the clients' unread receive queues
    (/proc/net/tcp)."""
    total = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = (int(a.split(":")[1], 16) for a in fields[1:3])
            tx, rx = (int(q, 16) for q in fields[4].split(":"))
            if fields[3] == "01" and local == port:
                total += tx
            elif fields[3] == "01" and remote == port:
                total += rx
    return total


def stored(px):
    line = [l for l in px.metrics().splitlines()
            if l.startswith('corral_proxy_stored_total{route="default"}')]
    return int(float(line[0].split()[1])) if line else 0


def test_issue_5_a_storing_fetch_paused_for_its_client_resumes_when_the_client_goes(
        origin, proxy):
    # A request with Authorization does not coalesce, so its storable answer has no busy object
    # and the origin read follows its client: once 1 MiB waits for that client, the proxy stops
    # reading the origin, and the rest of the body (megabytes) stays in the sockets between
    # them. When the client goes away, the read resumes and the fill completes.
    origin.script("/cred", body_size=BIG, headers={"Cache-Control": "public, max-age=60"})
    px = proxy()
    client = StalledClient(px.port, "/cred", b"Authorization: Bearer t\r\n")
    assert "x-cache: miss" in client.head()
    seen = []

    def paused():  # a MiB or more in transit, and no byte read since the last look
        seen.append(in_transit(origin.port))
        return len(seen) >= 2 and seen[-1] == seen[-2] >= 1 << 20

    eventually(paused, what="the origin read paused")
    client.close()
    eventually(lambda: stored(px) == 1, what="the fill stored")
    r = px.get("/cred")
    assert (r.cache, len(r.body), origin.count("/cred")) == ("HIT", BIG, 1)
