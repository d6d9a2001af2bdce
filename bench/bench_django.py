#!/usr/bin/python3
"""bench_django.py - corral through Django's cache API beside Django's own backends, in one run.

Everything goes through ``caches[alias]``, with the same keys and values: 1 KB pickled dicts,
keys drawn from a Zipf(0.99) distribution over KEYS keys (the sequence is drawn once, before any
timing, with a fixed seed). One redis-server on a free port serves every Redis backend.

Gets/s are measured in ROUNDS rounds that take every backend in turn (so load elsewhere on the
machine falls on them alike); each backend's best round is printed.

1. gets/s, one thread: corral ``mem://`` vs Django's LocMemCache.
2. gets/s, one thread, every get a round trip to Redis: corral ``redis://`` vs django-redis.
3. gets/s of the hot keys (the Zipf sequence, every key present): corral
   ``redis://?near_cache=64MB`` (served in process, kept coherent by Redis tracking) vs
   django-redis.
4. The herd: PROCS processes x THREADS threads call get_or_set on one key for HERD_S seconds;
   the producer sleeps PRODUCE_S (the slow query) and the value lives TTL_S. Printed: producer
   calls per expiry (expiries = HERD_S / TTL_S) over all processes, and the callers' p50/p99.
   corral runs with grace (stale_ttl 30 s; the corral serializer, which carries the envelope
   grace needs); django-redis is Django's get_or_set (get, then the callable, then add).

Rows marked "fast_path off" run corral's backend with OPTIONS fast_path=False: get in Python
(the backend's methods) instead of one C call (corral._corral.DjangoOps).

--levers prints instead where the time of one get goes (ns per call of its parts; docs/django.md
has the same parts counted in instructions, which load does not move).

Usage: bench_django.py [--quick] [--no-herd] [--levers]   (PYTHONPATH must reach the corral
package; `make bench` sets it to build/release/python). Prints one table; numbers vary with
the machine and its load.
"""
import bisect
import multiprocessing
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

KEYS = 10_000
ZIPF_S = 0.99
SEQ = 200_000
ROUNDS = 5
PROCS, THREADS, PRODUCE_S, TTL_S = 6, 4, 0.2, 1.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis():
    port = free_port()
    d = tempfile.mkdtemp(prefix="bench-django-redis-")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", d],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port, d
        except OSError:
            pass
        if time.monotonic() > end:
            raise SystemExit("redis-server did not start")
        time.sleep(0.02)


def configure(port):
    import django
    from django.conf import settings

    url = "redis://127.0.0.1:%d/%d"
    settings.configure(CACHES={
        "corral_mem": {"BACKEND": "corral.django.CorralCache",
                       "LOCATION": "mem://?max_memory=256MB", "KEY_PREFIX": "b"},
        "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                   "OPTIONS": {"MAX_ENTRIES": 1_000_000}},
        "corral_redis": {"BACKEND": "corral.django.CorralCache", "LOCATION": url % (port, 1),
                         "KEY_PREFIX": "b"},
        "corral_near": {"BACKEND": "corral.django.CorralCache",
                        "LOCATION": url % (port, 1) + "?near_cache=64MB", "KEY_PREFIX": "b"},
        "django_redis": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url % (port, 1),
                         "KEY_PREFIX": "b"},
        "corral_mem_py": {"BACKEND": "corral.django.CorralCache",
                          "LOCATION": "mem://?max_memory=256MB", "KEY_PREFIX": "b",
                          "OPTIONS": {"fast_path": False}},
        "corral_near_py": {"BACKEND": "corral.django.CorralCache",
                           "LOCATION": url % (port, 1) + "?near_cache=64MB", "KEY_PREFIX": "b",
                           "OPTIONS": {"fast_path": False}},
        "corral_herd": {"BACKEND": "corral.django.CorralCache", "LOCATION": url % (port, 2),
                        "KEY_PREFIX": "h", "OPTIONS": {"serializer": "corral", "stale_ttl": 30}},
        "django_redis_herd": {"BACKEND": "django_redis.cache.RedisCache",
                              "LOCATION": url % (port, 3), "KEY_PREFIX": "h"},
    })
    django.setup()


def zipf_sequence(n_keys, s, length, seed=42):
    weights = [1.0 / (i + 1) ** s for i in range(n_keys)]
    cdf, acc = [], 0.0
    for w in weights:
        acc += w
        cdf.append(acc)
    rng = random.Random(seed)
    return ["product_card:%d" % bisect.bisect_left(cdf, rng.random() * acc)
            for _ in range(length)]


def value(i):
    """A dict whose pickle is about 1 KB."""
    return {"id": i, "name": "product %d" % i, "price": i * 1.25,
            "tags": ["t%d" % (i % 7), "featured"], "body": "x" * 900}


def timed_gets(cache, seq, seconds):
    """(gets/s, misses) over `seq` for about `seconds` (the clock is read every 1000 gets).
    Every key is present, so a miss means a backend failed (a store error reads as a miss)
    and its rate is not a hit rate."""
    get = cache.get
    n, i, misses, t0 = 0, 0, 0, time.perf_counter()
    end = t0 + seconds
    while True:
        for k in seq[i:i + 1000]:
            if get(k) is None:
                misses += 1
        n += 1000
        i = (i + 1000) % (len(seq) - 1000)
        if time.perf_counter() >= end:
            return n / (time.perf_counter() - t0), misses


def levers(rounds=9, number=20_000):
    """Nanoseconds per call of a get's parts on one memory-store hit (a 1 KB pickled dict),
    interleaved in rounds, best round each: where a get's time goes, and what the fast path
    (corral._corral.DjangoOps) saves."""
    import pickle
    import timeit
    from django.core.cache import caches

    fast, py, loc = caches["corral_mem"], caches["corral_mem_py"], caches["locmem"]
    key = "product_card:17"
    for c in (fast, loc):
        c.set(key, value(17), None)
    data = fast.corral.get(key)
    cases = [
        ("LocMemCache.get", lambda: loc.get(key)),
        ("corral get, Python path (fast_path off)", lambda: py.get(key)),
        ("  CorralCache._key (key checks)", lambda: py._key(key, None)),
        ("  Cache.get(key, version=None, ns=None)", lambda: py._c.get(key, version=None, ns=None)),
        ("  Cache.get(key) (no keywords)", lambda: py._c.get(key)),
        ("  CorralCache._decode (pickle.loads)", lambda: py._decode(data)),
        ("  pickle.loads alone", lambda: pickle.loads(data)),
        ("corral get, fast path (one C call)", lambda: fast.get(key)),
        ("corral get miss, fast path", lambda: fast.get("absent")),
        ("empty call (the timing loop's own cost)", lambda: None),
    ]
    best = {name: float("inf") for name, _ in cases}
    for _ in range(rounds):
        for name, fn in cases:
            t = timeit.timeit(fn, number=number) / number * 1e9
            best[name] = min(best[name], t)
    print("levers: ns per call on a memory-store hit, best of %d interleaved rounds" % rounds)
    for name, _ in cases:
        print("%-44s %8.0f" % (name, best[name]))


def fill(cache):
    cache.set_many({"product_card:%d" % i: value(i) for i in range(KEYS)}, None)


def herd_process(alias, port, barrier, seconds, out):
    from django.core.cache import caches
    import redis

    cache, counter = caches[alias], redis.Redis(port=port, db=0)

    def produce():
        counter.incr("calls:" + alias)
        time.sleep(PRODUCE_S)
        return value(1)

    lat = []
    barrier.wait()
    end = time.monotonic() + seconds

    def loop():
        mine = []
        while time.monotonic() < end:
            t = time.perf_counter()
            cache.get_or_set("bestsellers:v1", produce, TTL_S)
            mine.append(time.perf_counter() - t)
        lat.extend(mine)

    ts = [threading.Thread(target=loop) for _ in range(THREADS)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    out.put(lat)


def herd(alias, port, seconds):
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(PROCS), ctx.Queue()
    ps = [ctx.Process(target=herd_process, args=(alias, port, barrier, seconds, out))
          for _ in range(PROCS)]
    [p.start() for p in ps]
    lat = []
    for _ in ps:
        lat.extend(out.get())
    [p.join() for p in ps]
    import redis

    calls = int(redis.Redis(port=port, db=0).get("calls:" + alias) or 0)
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    return calls, calls / (seconds / TTL_S), pct(0.50), pct(0.99), len(lat)


def main():
    quick = "--quick" in sys.argv
    secs = 0.5 if quick else 2.0
    herd_s = 3.0 if quick else 10.0
    proc, port, d = start_redis()
    try:
        configure(port)
        from django.core.cache import caches

        seq = zipf_sequence(KEYS, ZIPF_S, SEQ)
        if "--levers" in sys.argv:
            return levers()
        for alias in ("corral_mem", "locmem", "corral_redis", "django_redis"):
            fill(caches[alias])
        aliases = ("corral_mem", "corral_mem_py", "locmem", "corral_redis", "django_redis",
                   "corral_near", "corral_near_py")
        for alias in aliases:
            timed_gets(caches[alias], seq, 0.2)  # warm: connections, the near cache's hot keys
        # Rounds interleave the backends, so a burst of load elsewhere on the machine hits them
        # alike; each backend's best round is its figure. Misses are summed over the rounds.
        r = {alias: 0.0 for alias in aliases}
        misses = {alias: 0 for alias in aliases}
        for _ in range(ROUNDS):
            for alias in aliases:
                rate, missed = timed_gets(caches[alias], seq, secs / ROUNDS)
                r[alias] = max(r[alias], rate)
                misses[alias] += missed
        print("bench_django: %d keys, 1 KB pickled dicts, Zipf(%.2f), one thread, best of %d "
              "interleaved rounds of %.1f s" % (KEYS, ZIPF_S, ROUNDS, secs / ROUNDS))
        print("%-46s %10s %8s %8s" % ("backend (through caches[...].get)", "gets/s", "ratio",
                                      "misses"))
        for label, alias, base in (
                ("LocMemCache", "locmem", None),
                ("corral mem://", "corral_mem", "locmem"),
                ("corral mem:// (fast_path off: Python get)", "corral_mem_py", "locmem"),
                ("django_redis (every get to Redis)", "django_redis", None),
                ("corral redis:// (every get to Redis)", "corral_redis", "django_redis"),
                ("corral redis://?near_cache=64MB (hot keys)", "corral_near", "django_redis"),
                ("corral near cache (fast_path off: Python get)", "corral_near_py",
                 "django_redis")):
            ratio = "%7.2fx" % (r[alias] / r[base]) if base else ""
            print("%-46s %10.0f %8s %8d" % (label, r[alias], ratio, misses[alias]))
        if "--no-herd" in sys.argv:
            return
        print()
        print("herd: %d processes x %d threads, one key, producer %.0f ms, TTL %.0f s, %.0f s"
              % (PROCS, THREADS, PRODUCE_S * 1000, TTL_S, herd_s))
        print("%-44s %8s %10s %9s %9s %9s" % ("get_or_set", "calls", "per expiry", "p50 ms",
                                               "p99 ms", "callers"))
        for alias, label in (("corral_herd", "corral redis:// (lease, grace 30 s)"),
                             ("django_redis_herd", "django_redis (Django's get_or_set)")):
            calls, per, p50, p99, n = herd(alias, port, herd_s)
            print("%-44s %8d %10.2f %9.2f %9.2f %9d" % (label, calls, per, p50, p99, n))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
