"""Issue 12, section 1: keep-alive dies after any request with a Content-Length.

A request carrying a body (POST, PUT) or even `Content-Length: 0` is answered, then the
connection is closed without `Connection: close`, so a client's next request on it gets no
answer. An answer that must close the connection (it came before the request body ended)
says `Connection: close`.
"""
import socket


def test_issue_12_get_with_content_length_0_keeps_the_connection(origin, proxy):
    # The second request is sent once the first is answered (pipelined, it is answered today).
    px = proxy()
    conn = px.connection()
    try:
        first = px.request("GET", "/page", headers={"Content-Length": "0"}, conn=conn)
        assert first.status == 200 and "close" not in first.headers.get("connection", "")
        second = px.request("GET", "/page", conn=conn)
    finally:
        conn.close()
    assert second.status == 200 and second.body == b"/page #1"


def test_issue_12_two_posts_with_bodies_on_one_connection_are_both_answered(origin, proxy):
    origin.script("/form", headers={"Cache-Control": "no-store"}, body="got {n}")
    px = proxy()
    conn = px.connection()
    try:
        bodies = [px.request("POST", "/form", body=b"a=%d" % i, conn=conn).body
                  for i in range(2)]
    finally:
        conn.close()
    assert bodies == [b"got 1", b"got 2"]
    assert [r["body_len"] for r in origin.stats("/form")["requests"]] == [3, 3]


def test_issue_12_a_put_then_a_get_share_one_connection(origin, proxy):
    origin.script("/doc", headers={"Cache-Control": "max-age=60"}, body="doc {n}")
    px = proxy()
    conn = px.connection()
    try:
        assert px.request("PUT", "/doc", body=b"new text", conn=conn).status == 200
        r = px.request("GET", "/doc", conn=conn)
    finally:
        conn.close()
    assert r.status == 200 and r.body == b"doc 2"


def test_issue_12_an_answer_before_the_request_body_ended_says_connection_close(origin, proxy):
    # The origin answers as soon as it has the head; the client has sent none of the body yet.
    # The rest of the body stays unread, so the connection cannot carry another request: the
    # answer must say so instead of the connection just closing after it.
    origin.script("/early", status=413, headers={"Cache-Control": "no-store"}, body="too big",
                  early=True)
    px = proxy()
    with socket.create_connection(("127.0.0.1", px.port), timeout=30) as s:
        s.sendall(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), got
    assert b"\r\nconnection: close" in head.lower() and body == b"too big", got
