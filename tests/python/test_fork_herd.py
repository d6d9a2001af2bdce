"""Pre-forked workers and the herd, as gunicorn runs a Django site: caches opened and used in
the parent, then used in forked children at once; and 6 processes x 4 threads on one key whose
producer takes 200 ms, expiring every second."""
import multiprocessing
import os
import signal
import threading
import time

import pytest
import redis as redis_py
from django.core.cache import caches

from conftest import REDIS

CHILDREN = 4


@pytest.mark.parametrize("alias", ["default", "redis", "near"])
def test_forked_children_use_the_parents_cache_concurrently(flush, alias):
    cache = caches[alias]
    cache.set("shared", {"from": "parent"})
    assert cache.get("shared") == {"from": "parent"}  # connections (and L1) are open now

    def child(i):
        signal.alarm(60)  # a hang (a lock of a thread that is not here) fails, never blocks
        own = cache.get("shared") == {"from": "parent"}
        for n in range(300):
            cache.set("c%d:%d" % (i, n), [i, n])
            if cache.get("c%d:%d" % (i, n)) != [i, n]:
                return False
        # Single flight and the lease still work in the child, across threads.
        runs = []
        ts = [threading.Thread(target=cache.get_or_set,
                               args=("made:%d" % i, lambda: runs.append(1) or i, 60))
              for _ in range(4)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        return own and len(runs) == 1 and cache.get("made:%d" % i) == i

    # The parent forks while quiet, as a pre-forking server's master does (fork.h), then uses
    # the handle from a thread of its own while the children use theirs.
    stop = threading.Event()
    errors = []

    def parent_traffic():
        n = 0
        while not stop.is_set():
            cache.set("p:%d" % n, n)
            if cache.get("p:%d" % n) != n:
                errors.append(n)
            n += 1

    pids = []
    for i in range(CHILDREN):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if child(i) else 2
            except BaseException:
                import traceback

                traceback.print_exc()
            os._exit(code)
        pids.append(pid)
    t = threading.Thread(target=parent_traffic)
    t.start()
    try:
        statuses = [os.waitpid(p, 0)[1] for p in pids]
    finally:
        stop.set()
        t.join()
    assert statuses == [0] * CHILDREN
    assert errors == []
    if alias != "default":  # the children's writes are in the shared store
        assert cache.get("c3:299") == [3, 299]
    assert cache.get("shared") == {"from": "parent"}


# ---- the herd ----

PROCS, THREADS, PRODUCE_S, TTL_S, RUN_S = 6, 4, 0.2, 1.0, 3.5


def herd(alias, barrier, counter_key):
    """One process of the herd: THREADS threads call get_or_set on one key for RUN_S seconds.
    The producer counts its runs in Redis (db 0), across every process."""
    cache = caches[alias]
    counter = redis_py.Redis(port=REDIS["port"], db=0)

    def produce():
        counter.incr(counter_key)
        time.sleep(PRODUCE_S)  # the slow query the herd stampedes on
        return "bestsellers"

    barrier.wait()
    end = time.monotonic() + RUN_S
    bad = []

    def loop():
        while time.monotonic() < end:
            if cache.get_or_set("bestsellers:v1", produce, TTL_S) != "bestsellers":
                bad.append(1)

    ts = [threading.Thread(target=loop) for _ in range(THREADS)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return not bad


def run_herd(alias, counter_key):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCS)
    procs = [ctx.Process(target=lambda: os._exit(0 if herd(alias, barrier, counter_key) else 3))
             for _ in range(PROCS)]
    [p.start() for p in procs]
    [p.join(120) for p in procs]
    assert [p.exitcode for p in procs] == [0] * PROCS
    return int(redis_py.Redis(port=REDIS["port"], db=0).get(counter_key) or 0)


def test_the_herd_runs_the_producer_about_once_per_expiry(flush):
    runs = run_herd("redis", "herd:corral")
    # The value lives TTL_S after a PRODUCE_S run: in RUN_S about RUN_S / (TTL_S + PRODUCE_S)
    # + 1 fills (3 here), whatever the 24 callers do.
    expiries = int(RUN_S / (TTL_S + PRODUCE_S)) + 1
    assert 2 <= runs <= expiries + 1, runs


def test_djangos_own_get_or_set_runs_the_producer_per_caller(flush):
    runs = run_herd("django_redis", "herd:django_redis")
    assert runs > 2 * (int(RUN_S / (TTL_S + PRODUCE_S)) + 1), runs
