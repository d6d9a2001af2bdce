"""corral.Cache, the extension itself: errors carry corral's code and reason, the GIL is released
while a caller waits, a producer's exception reaches its caller and every waiter and caches
nothing, and events, tags, namespaces and read-outs work from Python."""
import threading

import pytest

import corral


def test_errors_carry_corrals_code_and_reason():
    with pytest.raises(corral.Error) as e:
        corral.Cache("mem://?max_memory=lots")
    assert e.value.code == corral.EBADURL and "max_memory" in e.value.reason
    c = corral.Cache("mem://")
    with pytest.raises(corral.Error) as e:
        c.set("x" * 300, b"v")
    assert e.value.code == corral.EBADKEY
    c.set("s", b"text")
    with pytest.raises(corral.Error) as e:
        c.incr("s")
    assert e.value.code == corral.ENOTINT
    with pytest.raises(KeyError):
        c.incr("absent")
    with pytest.raises(TypeError):
        c.set("k", "not bytes")


def test_a_producers_exception_reaches_the_caller_and_every_waiter_and_caches_nothing():
    c = corral.Cache("mem://")
    entered, release = threading.Event(), threading.Event()
    runs = []

    class Boom(Exception):
        pass

    def producer():
        runs.append(1)
        entered.set()
        release.wait(10)  # holds the flight while the waiters join it
        raise Boom("no database")

    results = [None] * 5

    def call(i):
        try:
            c.get_or_set("k", producer, 60)
        except Boom as e:
            results[i] = e

    leader = threading.Thread(target=call, args=(0,))
    leader.start()
    assert entered.wait(10)
    waiters = [threading.Thread(target=call, args=(i,)) for i in range(1, 5)]
    for t in waiters:
        t.start()
    # The waiters are blocked in C with the GIL released, or this thread could not run: wait
    # until corral counts them as waiters, then let the producer fail.
    deadline = threading.Event()
    for _ in range(1000):
        if c.stats()["total"]["load_waiters"] >= 4:
            break
        deadline.wait(0.01)  # polling interval, not a wait for an effect
    assert c.stats()["total"]["load_waiters"] >= 4
    release.set()
    for t in [leader] + waiters:
        t.join()
    assert len(runs) == 1
    assert all(isinstance(r, Boom) for r in results)
    assert len({id(r) for r in results}) == 1  # the same exception object everywhere
    assert c.get("k") is None


def test_a_producer_must_return_bytes():
    c = corral.Cache("mem://")
    with pytest.raises(TypeError):
        c.get_or_set("k", lambda: "str")
    assert c.get("k") is None


def test_stale_if_error_serves_the_old_value_when_the_producer_fails():
    c = corral.Cache("mem://")
    assert c.get_or_set("k", lambda: b"old", 0.001, stale_if_error=60) == b"old"

    def fail():
        raise RuntimeError("down")

    got = None
    for _ in range(1000):  # until the 1 ms TTL has passed and the producer runs again
        got = c.get_or_set("k", fail, 60, stale_if_error=60)
        if c.stats()["total"]["load_errors"]:
            break
    assert got == b"old" and c.stats()["total"]["stale_served"] >= 1


def test_tags_namespaces_and_events():
    c = corral.Cache("mem://")
    c.set("card:1", b"a", tags=["category:3"])
    c.set("card:2", b"b", tags=["category:4"])
    c.tag_bust("category:3")
    assert c.get("card:1") is None and c.get("card:2") == b"b"
    c.set("p", b"x", ns="products")
    c.ns_bump("products")
    assert c.get("p", ns="products") is None
    c.on("product.saved", keys=["product:{id}"], when=lambda ev, f: f["featured"] == "True")
    c.set("product:7", b"page")
    assert c.emit("product.saved", id=7, featured=False) == 0
    assert c.get("product:7") == b"page"
    assert c.emit("product.saved", id=7, featured=True) == 1
    assert c.get("product:7") is None


def test_an_exception_in_when_propagates_from_emit():
    c = corral.Cache("mem://")

    def when(event, fields):
        raise LookupError("bad rule")

    c.on("e", keys=["k"], when=when)
    with pytest.raises(LookupError):
        c.emit("e")


def test_stats_and_metrics_count_per_prefix():
    c = corral.Cache("mem://")
    c.set("featured:1", b"v")
    c.get("featured:1")
    c.get("featured:2")
    s = {p["prefix"]: p for p in c.stats()["prefixes"]}
    assert s["featured"]["hits"] == 1 and s["featured"]["misses"] == 1
    assert 'corral_cache_hits_total{prefix="featured"} 1' in c.metrics()


def test_close_refuses_while_a_call_is_in_progress_and_a_closed_cache_raises():
    c = corral.Cache("mem://")
    inside, release = threading.Event(), threading.Event()

    def producer():
        inside.set()
        release.wait(10)
        return b"v"

    t = threading.Thread(target=c.get_or_set, args=("k", producer))
    t.start()
    assert inside.wait(10)
    with pytest.raises(corral.Error):
        c.close()
    release.set()
    t.join()
    c.close()
    assert c.closed
    with pytest.raises(corral.Error):
        c.get("k")


def test_fragment_key_is_djangos():
    from django.core.cache.utils import make_template_fragment_key

    assert corral.fragment_key("product_card", "42", "x") == make_template_fragment_key(
        "product_card", ["42", "x"])
