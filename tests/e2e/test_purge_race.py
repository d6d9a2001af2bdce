"""A purge that arrives while a fetch of what it names is in flight is not undone when that
fetch completes: the answer, made before the purge, goes to the clients that asked for it, and
is not stored. For purges by URL, surrogate key and path prefix, arriving before the origin's
head or during the body (the origin holds its answer on gates the test opens)."""
import http.client
import threading

import pytest

from conftest import StreamClient, eventually

PATH = "/news/2024/story"
HEADERS = {"Cache-Control": "max-age=60", "Surrogate-Key": "story-7 front"}

PURGES = {
    "url": lambda px: px.purge(PATH),
    "surrogate-key": lambda px: px.admin("POST", "/purge/key/story-7"),
    "prefix": lambda px: px.admin("POST", "/purge/prefix/news/2024"),
}


class Leader:
    """The request whose fetch fills the cache, read in a thread."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.head = threading.Event()
        self.status = self.cache = self.body = None
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        try:
            self.conn.request("GET", PATH)
            r = self.conn.getresponse()
            self.status, self.cache = r.status, r.getheader("X-Cache")
            self.head.set()
            self.body = r.read()
        finally:
            self.head.set()
            self.conn.close()


@pytest.mark.parametrize("held", ["before-head", "during-body"])
@pytest.mark.parametrize("kind", sorted(PURGES))
def test_purge_during_a_fill_is_not_undone_by_its_store(origin, proxy, kind, held):
    gate = {"head_gate": "g"} if held == "before-head" else {"gate": "g", "gate_after": 3}
    origin.script(PATH, body="v #{n}", headers=HEADERS, **gate)
    px = proxy()
    leader = Leader(px.port)
    eventually(lambda: origin.gate("g")["waiting"] == 1, what="the fill held at the origin")
    if held == "during-body":
        assert leader.head.wait(30), "the leader got no head"  # the proxy has the head
    assert PURGES[kind](px).status == 200
    origin.open_gate("g")
    leader.thread.join(60)
    # The answer made before the purge reaches the client that asked before it ...
    assert (leader.status, leader.cache, leader.body) == (200, "MISS", b"v #1")
    # ... and is not stored: the next request goes to the origin.
    after = px.get(PATH)
    assert (after.cache, after.body) == ("MISS", b"v #2")
    assert origin.count(PATH) == 2


def test_waiters_that_asked_before_a_purge_get_the_answer_in_flight(origin, proxy):
    origin.script(PATH, body="v #{n}", headers=HEADERS, gate="g", gate_after=3)
    px = proxy()
    clients = [StreamClient(px.port, PATH, 3) for _ in range(5)]
    for c in clients:
        c.thread.start()
    for c in clients:
        assert c.got_first.wait(30), "a client got no head"
    assert px.purge(PATH).status == 200
    origin.open_gate("g")
    for c in clients:
        assert c.done.wait(30), "a client got no body"
    assert all(c.error is None and c.first + c.rest == b"v #1" for c in clients)
    assert sorted(c.headers["x-cache"] for c in clients) == ["COALESCED"] * 4 + ["MISS"]
    assert (px.get(PATH).body, origin.count(PATH)) == (b"v #2", 2)


def test_a_request_after_a_purge_does_not_stream_the_answer_in_flight(origin, proxy):
    origin.script(PATH, body="v #{n}", headers=HEADERS, gate="g", gate_after=3)
    px = proxy()
    before = StreamClient(px.port, PATH, 3)
    before.thread.start()
    assert before.got_first.wait(30), "the leader got no head"
    assert px.admin("POST", "/purge/key/front").status == 200
    after = StreamClient(px.port, PATH, 3)
    after.thread.start()
    # It does not join the purged fill: the origin gets its own request.
    eventually(lambda: origin.gate("g")["waiting"] == 2, what="a second origin request")
    origin.open_gate("g")
    for c in (before, after):
        assert c.done.wait(30), "a client got no body"
    assert (before.first + before.rest, after.first + after.rest) == (b"v #1", b"v #2")


def test_issue_5_a_fill_that_starts_within_the_purge_margin_is_not_stored(origin, proxy):
    # A stamp can read earlier than its purge really was (a purge that took its time early and
    # wrote its stamp late, over a newer one; proxies sharing a store whose clocks disagree), so
    # a fill that started up to limits.purge_margin after a stamp is not stored. A margin of
    # ten minutes puts every fill of this test within it.
    origin.script(PATH, body="v #{n}", headers=HEADERS)
    px = proxy(args=["--set", "limits.purge_margin=10m"])
    assert PURGES["surrogate-key"](px).status == 200
    first = px.get(PATH)
    assert (first.status, first.cache, first.body) == (200, "MISS", b"v #1")
    second = px.get(PATH)
    assert (second.cache, second.body, origin.count(PATH)) == ("MISS", b"v #2", 2)
