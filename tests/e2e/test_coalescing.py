"""Request coalescing: concurrent misses on one object make one origin request; an answer that
turns out not storable sends the waiters on to the origin in parallel (hit-for-pass)."""
import threading

from conftest import eventually


def herd(px, n, path, headers_of=lambda i: None):
    barrier = threading.Barrier(n)
    results = [None] * n

    def client(i):
        barrier.wait()
        results[i] = px.get(path, headers_of(i), timeout=60)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_100_concurrent_clients_on_a_cold_object_make_one_origin_request(origin, proxy):
    origin.script("/hot", delay=0.5, body="hot #{n}", headers={"Cache-Control": "max-age=60"})
    px = proxy()
    results = herd(px, 100, "/hot")
    assert all(r.status == 200 and r.body == b"hot #1" for r in results)
    caches = [r.cache for r in results]
    assert caches.count("MISS") == 1
    assert set(caches) <= {"MISS", "COALESCED", "HIT"}
    assert origin.count("/hot") == 1


def test_non_storable_answer_sends_waiters_to_the_origin_in_parallel(origin, proxy):
    origin.script("/private", delay=1.0, body="p #{n}", headers={"Cache-Control": "private"})
    px = proxy()
    results = herd(px, 20, "/private")
    assert all(r.status == 200 for r in results)
    stats = origin.stats("/private")
    assert stats["count"] == 20
    # Serialised waiters would reach the origin one at a time.
    assert stats["max_in_flight"] >= 10


def test_hit_for_pass_mark_makes_later_requests_pass_at_once(origin, proxy):
    origin.script("/hfp", body="h #{n}", headers={"Set-Cookie": "a=1"})
    px = proxy(threads=1)
    px.get("/hfp")
    assert px.get("/hfp").cache == "PASS"
    lines = eventually(lambda: [l for l in px.log_lines() if "/hfp" in l and "PASS" in l],
                       what="the PASS log line")
    assert '"hit-for-pass"' in lines[0]


def test_credentialed_requests_are_not_coalesced(origin, proxy):
    origin.script("/cred", delay=0.5, body="c [{h:Authorization}]",
                  headers={"Cache-Control": "max-age=60"})
    px = proxy()
    results = herd(px, 10, "/cred", lambda i: {"Authorization": "Bearer u%d" % i})
    assert sorted(r.body for r in results) == sorted(b"c [Bearer u%d]" % i for i in range(10))
    stats = origin.stats("/cred")
    assert stats["count"] == 10 and stats["max_in_flight"] >= 2


def test_cold_herd_on_a_vary_object_fetches_once_per_variant(origin, proxy):
    origin.script("/vh", delay=0.5, body="lang={h:Accept-Language}",
                  headers={"Cache-Control": "max-age=60", "Vary": "Accept-Language"})
    px = proxy()
    results = herd(px, 40, "/vh", lambda i: {"Accept-Language": "de" if i % 2 else "fr"})
    for i, r in enumerate(results):
        assert r.body == (b"lang=de" if i % 2 else b"lang=fr")
    assert origin.count("/vh") == 2


def test_uncacheable_error_answers_are_relayed_to_every_waiter(origin, proxy):
    origin.script("/fail", delay=0.5, status=500, headers={"Cache-Control": "no-store"},
                  body="boom")
    px = proxy()
    results = herd(px, 10, "/fail")
    assert all(r.status == 500 for r in results)
    assert origin.count("/fail") == 10
