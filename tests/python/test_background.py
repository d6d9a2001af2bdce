"""get_or_set(background=True): refreshes in grace (and XFetch's early ones) run on libcorral's
refresh workers while callers keep the value they have; a producer's exception there goes to
sys.unraisablehook and caches nothing; the interpreter's exit lets a running refresh finish."""
import subprocess
import sys
import textwrap
import threading
import time

import corral
from corral.django import CorralCache

GRACE = {"stale_ttl": 30, "beta": 0}  # beta 0: no XFetch, so only grace starts a refresh


def past(ttl_s):
    """Lets `ttl_s` seconds pass (a TTL running out; no other thread is waited on)."""
    end = time.monotonic() + ttl_s + 0.02
    while time.monotonic() < end:
        time.sleep(0.01)


def expired_value(c, *keys, background=False):
    for key in keys or (b"k",):
        assert c.get_or_set(key, lambda: b"v1", 0.05, background=background, **GRACE) == b"v1"
    past(0.05)


def test_a_refresh_in_grace_runs_on_a_worker_while_callers_keep_the_old_value():
    c = corral.Cache("mem://?max_memory=8MB")
    expired_value(c)
    gate, started, ran_on = threading.Event(), threading.Event(), []

    def slow():
        ran_on.append(threading.get_ident())
        started.set()
        assert gate.wait(30)
        return b"v2"

    def never():
        raise AssertionError("a second refresh started")

    assert c.get_or_set(b"k", slow, 60, background=True, **GRACE) == b"v1"
    assert started.wait(30)
    assert ran_on != [threading.get_ident()]
    assert c.get_or_set(b"k", never, 60, background=True, **GRACE) == b"v1"
    gate.set()
    end = time.monotonic() + 30
    while c.get_or_set(b"k", never, 60, **GRACE) != b"v2":
        assert time.monotonic() < end, "the refresh never landed"
    assert len(ran_on) == 1


def test_without_background_the_caller_refreshes_in_grace():
    c = corral.Cache("mem://?max_memory=8MB")
    expired_value(c)
    ran_on = []

    def make():
        ran_on.append(threading.get_ident())
        return b"v2"

    assert c.get_or_set(b"k", make, 60, **GRACE) == b"v2"
    assert ran_on == [threading.get_ident()]


def test_a_miss_runs_the_producer_in_its_caller_even_with_background():
    c = corral.Cache("mem://?max_memory=8MB")
    ran_on = []
    assert c.get_or_set(b"k", lambda: ran_on.append(threading.get_ident()) or b"v", 60,
                        background=True) == b"v"
    assert ran_on == [threading.get_ident()]


def test_an_exception_on_a_worker_is_reported_and_caches_nothing():
    c = corral.Cache("mem://?max_memory=8MB")
    expired_value(c)
    seen, reported = [], threading.Event()

    def hook(unraisable):
        seen.append(unraisable.exc_value)
        reported.set()

    def failing():
        raise RuntimeError("database down")

    old, sys.unraisablehook = sys.unraisablehook, hook
    try:
        assert c.get_or_set(b"k", failing, 60, background=True, **GRACE) == b"v1"
        assert reported.wait(30)
    finally:
        sys.unraisablehook = old
    assert isinstance(seen[0], RuntimeError) and str(seen[0]) == "database down"
    # Once the failed flight is finished, a caller refreshes: the value was still v1's.
    end = time.monotonic() + 30
    while (got := c.get_or_set(b"k", lambda: b"v3", 60, **GRACE)) != b"v3":
        assert got == b"v1" and time.monotonic() < end


def test_the_django_backend_takes_background_from_options():
    c = CorralCache("mem://?max_memory=7MB", {"KEY_PREFIX": "bg", "OPTIONS": dict(
        GRACE, background=True)})
    c.clear()
    assert c.get_or_set("k", lambda: {"v": 1}, 0.05) == {"v": 1}
    past(0.05)
    done, ran_on = threading.Event(), []

    def make():
        ran_on.append(threading.get_ident())
        done.set()
        return {"v": 2}

    assert c.get_or_set("k", make, 60) == {"v": 1}
    assert done.wait(30) and ran_on != [threading.get_ident()]


def test_exit_lets_a_running_background_refresh_finish():
    script = textwrap.dedent("""
        import threading, time
        import corral
        c = corral.Cache("mem://?max_memory=8MB")
        c.get_or_set(b"k", lambda: b"v1", 0.05, stale_ttl=30, beta=0)
        end = time.monotonic() + 0.07
        while time.monotonic() < end:
            time.sleep(0.01)
        started = threading.Event()
        def slow():
            started.set()
            time.sleep(0.3)  # the slow query, under way when the interpreter exits
            print("refreshed", flush=True)
            return b"v2"
        print(c.get_or_set(b"k", slow, 60, stale_ttl=30, beta=0, background=True), flush=True)
        started.wait(30)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode, r.stdout) == (0, "b'v1'\nrefreshed\n"), r.stderr


def test_past_max_background_keys_a_refresh_runs_in_its_caller():
    c = corral.Cache("mem://?max_memory=8MB", max_background_keys=3)
    c.get_or_set(b"a", lambda: b"v", 600, background=True)  # a, b and c take the 3 contexts
    c.get_or_set(b"b", lambda: b"v", 600, background=True)
    expired_value(c, b"c", background=True)
    expired_value(c, b"one_too_many")
    ran_on = []

    def make():
        ran_on.append(threading.get_ident())
        return b"v2"

    assert c.get_or_set(b"one_too_many", make, 60, background=True, **GRACE) == b"v2"
    assert ran_on == [threading.get_ident()]
    assert c.get_or_set(b"c", make, 60, background=True, **GRACE) == b"v1"  # has a context
