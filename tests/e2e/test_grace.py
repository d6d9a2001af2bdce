"""Grace and errors: an expired object inside its stale window is served at once while one
background fetch refreshes it; stale-if-error stands in for a failed origin; a stale object
with a validator is revalidated with a conditional request and freshened by a 304."""
import threading

from conftest import eventually

STALE_SWR = {"Cache-Control": "max-age=10, stale-while-revalidate=60", "Age": "20"}


def parallel_gets(px, n, path):
    results = [None] * n

    def client(i):
        results[i] = px.get(path)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_expired_object_is_served_at_once_while_one_background_fetch_refreshes(origin, proxy):
    # Stale on arrival (Age 20 > max-age 10) and inside stale-while-revalidate; the refresh
    # takes 2 s at the origin.
    origin.script("/news", sequence=[
        {"headers": STALE_SWR, "body": "news #{n}"},
        {"delay": 2, "headers": {"Cache-Control": "max-age=60"}, "body": "news #{n}"}])
    px = proxy()
    assert px.get("/news").cache == "MISS"
    results = parallel_gets(px, 10, "/news")
    assert [(r.cache, r.body) for r in results] == [("STALE", b"news #1")] * 10
    stats = origin.stats("/news")
    assert stats["count"] == 2 and stats["in_flight"] == 1  # answered while the refresh runs
    fresh = eventually(lambda: (lambda r: r if r.body == b"news #2" else None)(px.get("/news")),
                       what="the refreshed object")
    assert fresh.cache == "HIT"
    assert origin.count("/news") == 2


def test_configured_grace_serves_stale_without_a_directive(origin, proxy):
    origin.script("/g", sequence=[
        {"headers": {"Cache-Control": "max-age=1", "Age": "5"}, "body": "g #{n}"},
        {"delay": 1, "headers": {"Cache-Control": "max-age=60"}, "body": "g #{n}"}])
    px = proxy(config="[cache]\ngrace = 60s\n")
    assert px.get("/g").cache == "MISS"
    stale = px.get("/g")
    assert (stale.cache, stale.body) == ("STALE", b"g #1")
    eventually(lambda: px.get("/g").body == b"g #2", what="the refreshed object")
    assert origin.count("/g") == 2


def test_stale_if_error_serves_the_stale_copy_when_the_origin_is_down(origin, proxy):
    origin.script("/sie", body="sie #{n}",
                  headers={"Cache-Control": "max-age=10, stale-if-error=600", "Age": "20"})
    px = proxy()
    assert px.get("/sie").cache == "MISS"
    origin.stop()
    r = px.get("/sie")
    assert (r.status, r.cache, r.body) == (200, "STALE_IF_ERROR", b"sie #1")


def test_stale_if_error_on_a_503_answer(origin, proxy):
    origin.script("/sie503", sequence=[
        {"headers": {"Cache-Control": "max-age=10, stale-if-error=600", "Age": "20"},
         "body": "ok #{n}"},
        {"status": 503, "headers": {"Cache-Control": "no-store"}, "body": "down"}])
    px = proxy()
    px.get("/sie503")
    r = px.get("/sie503")
    assert (r.status, r.cache, r.body) == (200, "STALE_IF_ERROR", b"ok #1")


def test_origin_down_without_a_stale_copy_is_502(origin, proxy):
    px = proxy()
    origin.stop()
    r = px.get("/nothing")
    assert (r.status, r.cache) == (502, "ERROR")


def test_stale_object_with_etag_is_revalidated_and_freshened_by_304(origin, proxy):
    origin.script("/rv", sequence=[
        {"headers": {"Cache-Control": "max-age=10", "ETag": '"v1"', "Age": "20"},
         "body": "rv #{n}"},
        {"status": 304, "headers": {"Cache-Control": "max-age=60", "ETag": '"v1"'}}])
    px = proxy()
    assert px.get("/rv").cache == "MISS"
    second = px.get("/rv")
    third = px.get("/rv")
    assert (second.status, second.cache, second.body) == (200, "REVALIDATED", b"rv #1")
    assert (third.cache, third.body) == ("HIT", b"rv #1")
    assert third.headers["cache-control"] == "max-age=60"
    reqs = origin.stats("/rv")["requests"]
    assert len(reqs) == 2 and reqs[1]["headers"]["if-none-match"] == '"v1"'
