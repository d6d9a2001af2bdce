"""corral-proxy basics: a miss then hits, keep-alive, chunked responses streamed and stored,
HEAD from the GET entry, request bodies streamed to the origin, objects over max_object_size
streamed but not stored, clients' conditional requests, invalidation after unsafe methods."""
from conftest import eventually


def test_second_request_is_a_hit_from_one_origin_request(origin, proxy):
    px = proxy()
    first = px.get("/page")
    second = px.get("/page")
    assert (first.status, first.cache) == (200, "MISS")
    assert (second.status, second.cache) == (200, "HIT")
    assert second.body == first.body == b"/page #1"
    assert "age" in second.headers
    assert origin.count("/page") == 1


def test_keep_alive_serves_many_requests_on_one_connection(origin, proxy):
    px = proxy()
    conn = px.connection()
    bodies = [px.get("/ka", conn=conn).body for _ in range(5)]
    conn.close()
    assert bodies == [b"/ka #1"] * 5
    assert origin.count("/ka") == 1


def test_chunked_origin_response_is_streamed_and_stored(origin, proxy):
    origin.script("/chunked", chunked=True, body_size=30000,
                  headers={"Cache-Control": "max-age=60"})
    px = proxy()
    miss = px.get("/chunked")
    hit = px.get("/chunked")
    assert miss.cache == "MISS" and miss.headers.get("transfer-encoding") == "chunked"
    assert hit.cache == "HIT" and hit.headers["content-length"] == "30000"
    assert miss.body == hit.body == b"x" * 30000
    assert origin.count("/chunked") == 1


def test_head_is_answered_from_the_get_entry(origin, proxy):
    px = proxy()
    assert px.get("/h").cache == "MISS"
    head = px.request("HEAD", "/h")
    assert (head.status, head.cache, head.body) == (200, "HIT", b"")
    assert head.headers["content-length"] == str(len(b"/h #1"))
    assert origin.count("/h") == 1


def test_head_miss_is_fetched_as_get_and_stored(origin, proxy):
    px = proxy()
    head = px.request("HEAD", "/hm")
    assert (head.status, head.cache, head.body) == (200, "MISS", b"")
    assert origin.stats("/hm")["requests"][0]["method"] == "GET"
    # The HEAD's answer is complete at the origin's head: the GET may join the fill.
    assert px.get("/hm").cache in ("HIT", "COALESCED")
    assert origin.count("/hm") == 1


def test_chunked_request_body_is_streamed_to_the_origin(origin, proxy):
    origin.script("/upload", body="got {h:Content-Length}", headers={})
    px = proxy()

    def pieces():
        for _ in range(4):
            yield b"y" * 10000

    conn = px.connection()
    conn.request("POST", "/upload", body=pieces(), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    r = conn.getresponse()
    r.read()
    conn.close()
    assert r.status == 200 and r.getheader("x-cache") == "PASS"
    rec = origin.stats("/upload")["requests"][0]
    assert rec["body_len"] == 40000
    assert rec["headers"].get("transfer-encoding") == "chunked"


def test_object_over_max_object_size_is_streamed_not_stored(origin, proxy):
    origin.script("/big", body_size=200000, headers={"Cache-Control": "max-age=60"})
    px = proxy(args=["--set", "limits.max_object_size=100KB"])
    for _ in range(2):
        r = px.get("/big")
        assert r.status == 200 and len(r.body) == 200000 and r.cache == "MISS"
    assert origin.count("/big") == 2


def test_chunked_object_growing_past_max_object_size_is_not_stored(origin, proxy):
    origin.script("/bigc", body_size=200000, chunked=True,
                  headers={"Cache-Control": "max-age=60"})
    px = proxy(args=["--set", "limits.max_object_size=100KB"])
    assert len(px.get("/bigc").body) == 200000
    assert len(px.get("/bigc").body) == 200000
    assert origin.count("/bigc") == 2


def test_client_if_none_match_gets_304_on_hit_and_on_miss(origin, proxy):
    origin.script("/etag", headers={"Cache-Control": "max-age=60", "ETag": '"v1"'})
    px = proxy()
    miss = px.get("/etag", {"If-None-Match": '"v1"'})
    hit = px.get("/etag", {"If-None-Match": '"v1"'})
    other = px.get("/etag", {"If-None-Match": '"v0"'})
    assert (miss.status, miss.cache, miss.body) == (304, "MISS", b"")
    # The miss's 304 goes out at the origin's head: the next request may join the fill.
    assert (hit.status, hit.body) == (304, b"") and hit.cache in ("HIT", "COALESCED")
    assert (other.status, other.body) == (200, b"/etag #1")
    assert "if-none-match" not in origin.stats("/etag")["requests"][0]["headers"]
    assert origin.count("/etag") == 1


def test_post_invalidates_the_stored_url(origin, proxy):
    px = proxy()
    assert px.get("/item").cache == "MISS"
    assert px.get("/item").cache == "HIT"
    assert px.request("POST", "/item", body=b"x").cache == "PASS"
    after = px.get("/item")
    assert after.cache == "MISS"
    assert origin.count("/item") == 3


def test_origin_sees_via_and_forwarded_for(origin, proxy):
    px = proxy()
    px.get("/fwd", {"Connection": "keep-alive, X-Hop", "X-Hop": "1"})
    h = origin.stats("/fwd")["requests"][0]["headers"]
    assert h["via"] == "1.1 corral"
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert "x-hop" not in h


def test_access_log_has_cache_result_and_reason(origin, proxy):
    px = proxy(threads=1)
    px.get("/logged")
    px.get("/logged")

    def lines():
        found = [l for l in px.log_lines() if "/logged" in l]
        return found if len(found) == 2 else None

    first, second = eventually(lines, what="two access log lines")
    assert ' 200 10 MISS default ' in first and '"not in cache" "max-age"' in first
    assert ' 200 10 HIT default ' in second and '"fresh" "-"' in second
