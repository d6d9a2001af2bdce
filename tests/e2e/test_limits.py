"""Bad clients and bad origins: malformed requests get the engine's status and the connection
closed (nothing reaches the origin), heads over the limits get 431, slow clients and idle
connections are timed out, a slow origin gets 504 and a dead one 502."""
import socket

import pytest

from conftest import raw_exchange

MALFORMED = [
    ("duplicate Content-Length",
     b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
    ("Content-Length with Transfer-Encoding",
     b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
     400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare CR", b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ("no Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("garbage", b"HELLO\r\n\r\n", 400),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("gzip transfer coding", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked"
     b"\r\n\r\n", 501),
    ("bad chunk", b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\n", 400),
]


@pytest.mark.parametrize("name,raw,status", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_request_gets_error_status_and_connection_closed(origin, proxy, name, raw,
                                                                    status):
    px = proxy()
    out = raw_exchange(px.port, raw)  # returns only once the proxy closed the connection
    assert out.startswith(b"HTTP/1.1 %d " % status), out
    assert b"Connection: close\r\n" in out
    assert origin.count("/") == 0


def test_request_smuggled_behind_a_malformed_one_never_reaches_the_origin(origin, proxy):
    px = proxy()
    out = raw_exchange(px.port, b"GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n"
                       b"Host: a\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and out.count(b"HTTP/1.1") == 1
    assert origin.count("/smuggled") == 0 and origin.count("/a") == 0


def test_head_over_the_size_limit_gets_431(origin, proxy):
    px = proxy(args=["--set", "limits.max_head_bytes=4096"])
    out = raw_exchange(px.port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 5000 +
                       b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")


def test_too_many_header_fields_get_431(origin, proxy):
    px = proxy(args=["--set", "limits.max_headers=10"])
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(20))
    out = raw_exchange(px.port, b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")


def test_slow_client_head_is_timed_out_with_408(origin, proxy):
    px = proxy(args=["--set", "limits.header_timeout=300ms"])
    out = raw_exchange(px.port, b"GET / HTTP/1.1\r\nHost: a\r\n")  # never finishes the head
    assert out.startswith(b"HTTP/1.1 408 ")


def test_idle_keep_alive_connection_is_closed(origin, proxy):
    px = proxy(args=["--set", "limits.keepalive_timeout=200ms"])
    with socket.create_connection(("127.0.0.1", px.port), timeout=10) as s:
        assert s.recv(100) == b""  # closed by the proxy, without a response


def test_pipelined_requests_are_answered_in_order(origin, proxy):
    px = proxy()
    out = raw_exchange(px.port, b"GET /p1 HTTP/1.1\r\nHost: a\r\n\r\n"
                       b"GET /p2 HTTP/1.1\r\nHost: a\r\n\r\n"
                       b"GET /p1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert out.index(b"/p1 #1") < out.index(b"/p2 #1") < out.rindex(b"/p1 #1")
    assert out.count(b"X-Cache: HIT") == 1


def test_slow_origin_gets_504(origin, proxy):
    origin.script("/slow", delay=3, headers={"Cache-Control": "max-age=60"})
    px = proxy(args=["--set", "limits.origin_read_timeout=300ms"])
    r = px.get("/slow")
    assert (r.status, r.cache) == (504, "ERROR")


def test_origin_that_stalls_mid_body_cuts_the_response_and_stores_nothing(origin, proxy):
    origin.script("/drip", chunked=True, body_delay=2, body_size=3000,
                  headers={"Cache-Control": "max-age=60"})
    px = proxy(args=["--set", "limits.origin_read_timeout=300ms"])
    conn = px.connection()
    conn.request("GET", "/drip")
    r = conn.getresponse()
    assert r.status == 200
    import http.client
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    conn.close()
    origin.script("/drip", headers={"Cache-Control": "max-age=60"}, body="whole")
    assert px.get("/drip").body == b"whole"


def test_http10_client_gets_a_close_delimited_or_sized_answer(origin, proxy):
    origin.script("/old", chunked=True, body="abcdef", headers={"Cache-Control": "max-age=60"})
    px = proxy()
    miss = raw_exchange(px.port, b"GET /old HTTP/1.0\r\n\r\n")
    hit = raw_exchange(px.port, b"GET /old HTTP/1.0\r\n\r\n")
    assert miss.startswith(b"HTTP/1.1 200 ") and miss.endswith(b"\r\n\r\nabcdef")
    assert b"Transfer-Encoding" not in miss
    assert b"Content-Length: 6\r\n" in hit and hit.endswith(b"abcdef")
    assert origin.stats("/old")["requests"][0]["headers"]["host"] == "127.0.0.1:%d" % origin.port


def test_connect_is_refused_not_tunnelled(origin, proxy):
    px = proxy()
    out = raw_exchange(px.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 405 ")


def test_idle_timeout_starts_after_a_large_response_drains(origin, proxy):
    # 8 MB cannot go out in one write: the send timer runs, then the keep-alive timer.
    origin.script("/large", body_size=8 << 20, headers={"Cache-Control": "no-store"})
    px = proxy(args=["--set", "limits.keepalive_timeout=300ms"])
    conn = px.connection(timeout=20)
    assert len(px.get("/large", conn=conn).body) == 8 << 20
    assert conn.sock.recv(100) == b""  # the idle connection is closed by the proxy
    conn.close()
