"""Range requests answered by the proxy (RFC 9110 §14): from a stored object (one range, several
as multipart/byteranges, suffix and open ranges, If-Range, 416), and on a miss: the whole
object is fetched once, coalesced, and each request gets its range as the body arrives."""
from conftest import StreamClient, eventually

BODY = "".join("%02d" % (i % 100) for i in range(50))  # 100 bytes: "000102...49"
HDRS = {"Cache-Control": "max-age=60", "ETag": '"v1"', "Content-Type": "text/plain"}


def parts_of(r):
    """The parts of a multipart/byteranges body: [(content-range, content-type, data)]."""
    ctype = r.headers["content-type"]
    assert ctype.startswith("multipart/byteranges; boundary="), ctype
    boundary = ctype.split("boundary=", 1)[1].encode()
    assert int(r.headers["content-length"]) == len(r.body)
    assert r.body.endswith(b"\r\n--" + boundary + b"--\r\n")
    out = []
    for chunk in r.body.split(b"--" + boundary)[1:-1]:
        head, data = chunk.split(b"\r\n\r\n", 1)
        fields = dict(line.split(b": ", 1) for line in head.strip().split(b"\r\n"))
        if data.endswith(b"\r\n"):
            data = data[:-2]
        out.append((fields[b"Content-Range"].decode(), fields.get(b"Content-Type"), data))
    return out


def test_single_ranges_from_a_stored_object(origin, proxy):
    origin.script("/r", body=BODY, headers=HDRS)
    px = proxy()
    assert px.get("/r").cache == "MISS"
    for spec, want, cr in (("bytes=0-9", BODY[:10], "bytes 0-9/100"),
                           ("bytes=95-", BODY[95:], "bytes 95-99/100"),
                           ("bytes=-3", BODY[97:], "bytes 97-99/100"),
                           ("bytes=90-5000", BODY[90:], "bytes 90-99/100")):
        r = px.get("/r", {"Range": spec})
        assert (r.status, r.cache, r.body.decode()) == (206, "HIT", want), spec
        assert r.headers["content-range"] == cr
        assert r.headers["etag"] == '"v1"' and r.headers["content-type"] == "text/plain"
    assert origin.count("/r") == 1


def test_several_ranges_are_multipart_byteranges(origin, proxy):
    origin.script("/m", body=BODY, headers=HDRS)
    px = proxy()
    px.get("/m")
    r = px.get("/m", {"Range": "bytes=10-11, -2, 0-0"})
    assert (r.status, r.cache) == (206, "HIT")
    assert "content-range" not in r.headers
    assert parts_of(r) == [("bytes 10-11/100", b"text/plain", b"05"),
                           ("bytes 98-99/100", b"text/plain", b"49"),
                           ("bytes 0-0/100", b"text/plain", b"0")]


def test_unsatisfiable_range_is_416_and_bad_ones_get_the_whole(origin, proxy):
    origin.script("/u", body=BODY, headers=HDRS)
    px = proxy()
    px.get("/u")
    r = px.get("/u", {"Range": "bytes=100-"})
    assert (r.status, r.headers["content-range"], r.body) == (416, "bytes */100", b"")
    for spec in ("bytes=5-1", "lines=1-2", "bytes=0-50,40-60"):
        r = px.get("/u", {"Range": spec})
        assert (r.status, r.body.decode()) == (200, BODY), spec
    # HEAD ignores Range; the connection stays usable after a 416.
    conn = px.connection()
    from conftest import http_request
    assert http_request(px.port, "GET", "/u", {"Range": "bytes=200-"}, conn=conn).status == 416
    assert http_request(px.port, "HEAD", "/u", {"Range": "bytes=0-1"}, conn=conn).status == 200
    assert http_request(px.port, "GET", "/u", {"Range": "bytes=0-1"}, conn=conn).body == b"00"
    conn.close()


def test_if_range_serves_the_range_only_for_the_same_representation(origin, proxy):
    origin.script("/ir", body=BODY, headers=HDRS)
    px = proxy()
    px.get("/ir")
    same = px.get("/ir", {"Range": "bytes=0-1", "If-Range": '"v1"'})
    other = px.get("/ir", {"Range": "bytes=0-1", "If-Range": '"v0"'})
    weak = px.get("/ir", {"Range": "bytes=0-1", "If-Range": 'W/"v1"'})
    assert (same.status, same.body) == (206, b"00")
    assert (other.status, other.body.decode()) == (200, BODY)
    assert weak.status == 200


def test_range_miss_fetches_the_whole_object_once_and_answers_the_range(origin, proxy):
    origin.script("/miss", body=BODY, headers=HDRS)
    px = proxy()
    r = px.get("/miss", {"Range": "bytes=20-29"})
    assert (r.status, r.cache, r.body.decode()) == (206, "MISS", BODY[20:30])
    assert r.headers["content-range"] == "bytes 20-29/100"
    # The origin was asked for the whole object, and the next requests are hits.
    assert "range" not in origin.stats("/miss")["requests"][0]["headers"]
    assert px.get("/miss").cache == "HIT"
    assert px.get("/miss", {"Range": "bytes=0-1"}).body == b"00"
    assert origin.count("/miss") == 1


def test_range_misses_coalesce_on_one_fetch_and_stream_their_ranges(origin, proxy):
    origin.script("/c", body=BODY, headers=HDRS, gate="rest", gate_after=20)
    px = proxy()
    led = StreamClient(px.port, "/c", 1, headers={"Range": "bytes=50-59"})
    led.thread.start()
    eventually(lambda: origin.gate("rest")["waiting"] == 1, what="the body held at the origin")
    # While the origin holds the body after its 20th byte, a range within those is answered
    # whole from the object being fetched: it cannot come from anywhere else.
    early = px.get("/c", {"Range": "bytes=2-5"}, timeout=20)
    assert (early.status, early.body.decode()) == (206, BODY[2:6])
    assert origin.gate("rest")["waiting"] == 1
    multi = StreamClient(px.port, "/c", 1, headers={"Range": "bytes=0-1,98-99"})
    multi.thread.start()
    origin.open_gate("rest")
    for c in (led, multi):
        assert c.done.wait(30) and c.error is None, c.error
    assert (led.status, (led.first + led.rest).decode()) == (206, BODY[50:60])
    assert led.headers["x-cache"] == "MISS"
    assert multi.status == 206
    assert b"bytes 0-1/100" in multi.first + multi.rest
    assert origin.count("/c") == 1
    for c in (led, multi):
        c.conn.close()


def test_range_miss_of_a_body_without_length_gets_the_whole_then_ranges(origin, proxy):
    origin.script("/chunked", body=BODY, headers=HDRS, chunked=True)
    px = proxy()
    first = px.get("/chunked", {"Range": "bytes=0-9"})
    # Ranges are cut from a streamed body only when its length is known; §14.2 lets a
    # server answer 200 instead, and the object is stored whole for the next ones.
    assert (first.status, first.body.decode()) == (200, BODY)
    second = px.get("/chunked", {"Range": "bytes=0-9"})
    assert (second.status, second.cache, second.body.decode()) == (206, "HIT", BODY[:10])
    assert origin.count("/chunked") == 1


def test_a_206_from_the_origin_is_passed_on_and_not_stored(origin, proxy):
    origin.script("/part", status=206, body="ab",
                  headers={"Cache-Control": "max-age=60", "Content-Range": "bytes 0-1/10"})
    origin.script("/bypass/part", status=206, body="cd",
                  headers={"Cache-Control": "max-age=60", "Content-Range": "bytes 2-3/10"})
    px = proxy(config="[route:raw]\nprefix = /bypass/\nbypass = true\n")
    for _ in range(2):
        r = px.get("/part", {"Range": "bytes=0-1"})
        assert (r.status, r.body, r.headers["content-range"]) == (206, b"ab", "bytes 0-1/10")
        assert r.cache != "HIT"
    # (Each of these Range misses costs two fetches: the one that would have filled the cache,
    # whose answer cannot be stored, then the request's own; docs/proxy.md, Range requests.)
    assert origin.count("/part") == 4
    # A pass forwards Range to the origin; a cached fetch asks for the whole object.
    assert px.get("/bypass/part", {"Range": "bytes=2-3"}).body == b"cd"
    assert origin.stats("/bypass/part")["requests"][0]["headers"]["range"] == "bytes=2-3"
    assert "range" not in origin.stats("/part")["requests"][0]["headers"]


def test_ranges_out_of_body_order_on_a_miss_get_the_whole_then_parts(origin, proxy):
    origin.script("/order", body=BODY, headers=HDRS)
    px = proxy()
    first = px.get("/order", {"Range": "bytes=90-91,0-1"})
    assert (first.status, first.body.decode()) == (200, BODY)
    second = px.get("/order", {"Range": "bytes=90-91,0-1"})
    assert second.status == 206
    assert [p[2] for p in parts_of(second)] == [BODY[90:92].encode(), BODY[0:2].encode()]
    assert origin.count("/order") == 1
