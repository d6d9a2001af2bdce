"""Issue 12, section 1: 1xx from the origin swallows the answer.

An origin that sends `103 Early Hints` or `102 Processing` before its final answer leaves the
client with nothing. RFC 9110 §15.2: a proxy forwards 1xx to HTTP/1.1 clients (never to
HTTP/1.0 ones, §15.2 and §2.5) and never treats them as final; a cache never stores them.
`Expect: 100-continue` works both ways (RFC 9110 §10.1.1). These tests fail until the fix
lands.
"""
import socket

from conftest import raw_exchange

HINTS = [[103, {"Link": "</style.css>; rel=preload; as=style"}]]


def split_responses(out):
    """The status lines of the heads in `out`, in order, and the bytes after the last head."""
    statuses = []
    while out.startswith(b"HTTP/"):
        head, _, out = out.partition(b"\r\n\r\n")
        statuses.append(int(head.split(b" ", 2)[1]))
        if statuses[-1] >= 200:
            break
    return statuses, out


def test_issue_12_early_hints_are_forwarded_then_the_answer(origin, proxy):
    origin.script("/hinted", informational=HINTS, body="final page")
    px = proxy()
    out = raw_exchange(px.port, b"GET /hinted HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                       timeout=30)
    statuses, body = split_responses(out)
    assert statuses == [103, 200], out
    assert b"</style.css>" in out.split(b"\r\n\r\n")[0] and body == b"final page"


def test_issue_12_102_processing_is_not_final_and_is_not_stored(origin, proxy):
    origin.script("/slow", informational=[[102, {}]], body="done")
    px = proxy()
    req = b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    first = split_responses(raw_exchange(px.port, req, timeout=30))
    second = split_responses(raw_exchange(px.port, req, timeout=30))
    assert first == ([102, 200], b"done")
    assert second == ([200], b"done")  # a hit: the interim answer was not stored
    assert origin.count("/slow") == 1


def test_issue_12_http_10_clients_get_only_the_final_answer(origin, proxy):
    origin.script("/hinted10", informational=HINTS, body="final")
    px = proxy()
    out = raw_exchange(px.port, b"GET /hinted10 HTTP/1.0\r\nHost: x\r\n\r\n", timeout=30)
    assert split_responses(out) == ([200], b"final"), out


def test_issue_12_expect_100_continue_gets_100_then_the_answer(origin, proxy):
    # The client waits for 100 Continue before it sends the body; the test origin (Python's
    # http.server) answers 100 itself when the request it receives carries the expectation.
    origin.script("/upload", headers={"Cache-Control": "no-store"}, body="stored")
    px = proxy()
    with socket.create_connection(("127.0.0.1", px.port), timeout=30) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            assert chunk, "closed before any answer: %r" % got
            got += chunk
        assert got.startswith(b"HTTP/1.1 100 "), got
        s.sendall(b"hello")
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    statuses, body = split_responses(got)
    assert statuses[-1] == 200 and body == b"stored", got
    assert [r["body_len"] for r in origin.stats("/upload")["requests"]] == [5]


def test_issue_12_expect_100_continue_is_the_origins_to_grant(origin, proxy):
    # RFC 9110 §10.1.1: the proxy forwards the expectation instead of granting it itself, so an
    # origin that refuses the body at once (here 417, without reading it) is the client's first
    # answer, and the body the client then does not send leaves the connection closed.
    origin.script("/refuse", status=417, headers={"Cache-Control": "no-store"}, body="no",
                  early=True)
    px = proxy()
    with socket.create_connection(("127.0.0.1", px.port), timeout=30) as s:
        s.sendall(b"PUT /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    statuses, body = split_responses(got)
    assert statuses == [417] and body == b"no", got
    assert b"\r\nconnection: close" in got.split(b"\r\n\r\n")[0].lower(), got
    assert origin.stats("/refuse")["requests"][0]["headers"].get("expect") == "100-continue"
