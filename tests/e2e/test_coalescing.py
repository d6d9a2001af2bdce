"""Request coalescing: concurrent misses on one object make one origin request; an answer that
turns out not storable sends the waiters on to the origin in parallel (hit-for-pass)."""
import threading

from conftest import StreamClient, eventually


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


def load_waiters(px):
    """corral_cache_load_waiters_total summed over prefixes: requests that joined a flight."""
    return sum(int(float(line.split()[-1])) for line in px.metrics().splitlines()
               if line.startswith("corral_cache_load_waiters_total"))


def test_a_second_variant_learnt_from_the_first_answer_is_fetched_once(origin, proxy):
    """The first answer to a cold URL says it varies. A request for another variant that sees it
    in flight (before its vary record is stored) fetches under its own variant's flight, so a
    request that arrives after the record is stored, and keys by it, waits on that fetch."""
    hdrs = {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}
    body = "lang={h:Accept-Language}"
    origin.script("/vl", sequence=[
        {"body": body, "headers": hdrs, "gate": "fr-body", "gate_after": 3},
        {"body": body, "headers": hdrs, "head_gate": "de"},
        {"body": body, "headers": hdrs}])
    px = proxy()
    fr = StreamClient(px.port, "/vl", 3, headers={"Accept-Language": "fr"})
    fr.thread.start()
    assert fr.got_first.wait(30) and fr.error is None, fr.error  # fr's answer is in flight
    de1 = StreamClient(px.port, "/vl", 1, headers={"Accept-Language": "de"})
    de1.thread.start()
    eventually(lambda: origin.gate("de")["waiting"] == 1, what="de's fetch held at the origin")
    origin.open_gate("fr-body")
    assert fr.done.wait(30) and fr.error is None, fr.error
    assert fr.first + fr.rest == b"lang=fr"
    assert px.get("/vl", {"Accept-Language": "fr"}).cache == "HIT"  # the vary record is stored
    waiters = load_waiters(px)
    de2 = StreamClient(px.port, "/vl", 1, headers={"Accept-Language": "de"})
    de2.thread.start()
    eventually(lambda: load_waiters(px) > waiters or origin.count("/vl") > 2,
               what="the second de request waiting or fetching")
    origin.open_gate("de")
    for c in (de1, de2):
        assert c.done.wait(30) and c.error is None, c.error
        assert c.first + c.rest == b"lang=de"
    assert origin.count("/vl") == 2


def test_uncacheable_error_answers_are_relayed_to_every_waiter(origin, proxy):
    origin.script("/fail", delay=0.5, status=500, headers={"Cache-Control": "no-store"},
                  body="boom")
    px = proxy()
    results = herd(px, 10, "/fail")
    assert all(r.status == 500 for r in results)
    assert origin.count("/fail") == 10
