"""Issue 12, section 1: a send error on a reused origin connection is not retried.

The proxy pools keep-alive connections to the origin; an origin closes idle ones on its own
schedule, so a request can meet a pooled connection the origin has just closed. It is sent
again, once, on a new connection when the origin cannot have acted on it: when no byte of it
went out (the first write failed), whatever the method; when it went out and the connection
closed before any byte of an answer, only for an idempotent request without a body. A
non-idempotent request whose bytes were sent is never repeated.
"""
import signal

import pytest


def warm_pool(px, path="/warm"):
    """One answered request: the proxy (one worker) keeps its origin connection pooled."""
    r = px.get(path)
    assert r.status == 200, r


def test_issue_12_a_request_on_a_pooled_connection_reset_while_idle_is_retried(origin, proxy):
    # The order of events is made by stopping the proxy: its client's request arrives first,
    # then the origin resets the idle pooled connection, then the proxy runs on and handles the
    # request before it notices the reset: the request's first write fails (or, when the reset
    # reaches the socket only after the write, the read of the answer does). A DELETE is
    # repeated in both cases; before the fix it was in neither.
    px = proxy(threads=1)
    warm_pool(px)
    conn = px.connection()
    try:
        assert px.request("GET", "/warm", conn=conn).cache == "HIT"  # the client is accepted
        px.signal(signal.SIGSTOP)
        try:
            conn.request("DELETE", "/after")
            assert origin.ctl("POST", "/__ctl/drop_idle?min=1")["closed"] >= 1
        finally:
            px.signal(signal.SIGCONT)
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert (r.status, body) == (200, b"/after #1")
    assert origin.count("/after") == 1


@pytest.mark.parametrize("method", ["DELETE", "PUT", "OPTIONS"])
def test_issue_12_an_idempotent_request_the_origin_dropped_unanswered_is_retried(
        origin, proxy, method):
    # The origin reads the request on the pooled connection, then resets it without an answer.
    origin.script("/thing", sequence=[{"drop": True},
                                      {"headers": {"Cache-Control": "no-store"}, "body": "ok {n}"}])
    px = proxy(threads=1)
    warm_pool(px)
    r = px.request(method, "/thing")
    assert (r.status, r.body) == (200, b"ok 2"), r
    assert [q["method"] for q in origin.stats("/thing")["requests"]] == [method, method]


def test_issue_12_a_post_the_origin_dropped_unanswered_is_not_repeated(origin, proxy):
    origin.script("/order", sequence=[{"drop": True},
                                      {"headers": {"Cache-Control": "no-store"}, "body": "ok"}])
    px = proxy(threads=1)
    warm_pool(px)
    r = px.request("POST", "/order", body=b"item=1")
    assert r.status == 502, r
    assert origin.count("/order") == 1


def test_issue_12_a_get_is_retried_once_only(origin, proxy):
    # Dropped on the pooled connection, then dropped again on the new one: a 502, not a loop.
    origin.script("/flaky", sequence=[{"drop": True}, {"drop": True}, {"body": "late"}])
    px = proxy(threads=1)
    warm_pool(px)
    assert px.get("/flaky").status == 502
    assert origin.count("/flaky") == 2
