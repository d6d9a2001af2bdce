"""Issue 12, section 1: keep-alive dies after any request with a Content-Length.

A request carrying a body (POST, PUT) or even `Content-Length: 0` is answered, then the
connection is closed without `Connection: close`, so a client's next request on it gets no
answer. These tests fail until the fix lands (CMake registers them DISABLED until then).
"""


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
