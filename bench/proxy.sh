#!/usr/bin/env bash
# bench/proxy.sh - corral-proxy beside nginx proxy_cache and Varnish on this machine, one table
# from one run (issue 5, section 4). Run by `make bench-proxy`, which builds the release binary.
#
#   bench/proxy.sh [path/to/corral-proxy]      BENCH_SECONDS=10 BENCH_RUNS=3 by default
#
# The same origin (tests/e2e/origin.py, scripted per path) sits behind the three proxies:
#   corral-proxy   --threads 2, memory store, access log off
#   nginx          proxy_cache with keys_zone in memory and the cache files on /dev/shm,
#                  2 workers, upstream keepalive, keepalive_requests raised, access log off,
#                  proxy_cache_lock, use_stale updating + background_update (its best setup)
#   varnishd       -s malloc, the builtin VCL (-b), default grace
# and prints:
#   - cache hits: requests/s and p99 for 1 KB and 16 KB objects (wrk -t2 -c64, BENCH_SECONDS
#     each, servers alternated, median of BENCH_RUNS);
#   - a herd: 200 connections for BENCH_SECONDS on an object that expires every second
#     (max-age=1, stale-while-revalidate=30) and takes the origin 200 ms: origin requests, p99
#     and max latency;
#   - a cold herd: 100 clients released together on a never-cached object (origin 200 ms):
#     origin requests, the first answer, and how long after it the last waiter was answered.
# Everything runs on loopback on the same cores; the numbers compare, they do not bound. What it
# shares with bench/fleet.py (processes, the origin, nginx and Varnish, wrk) is bench/benchlib.py.
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY=${1:-build/release/corral-proxy}
if [ ! -x "$PROXY" ]; then
    echo "bench/proxy.sh: $PROXY not found (make bench-proxy builds it)" >&2
    exit 1
fi
scripts/bootstrap nginx varnish wrk

exec /usr/bin/python3 - "$PROXY" <<'PY'
import os
import statistics
import sys

sys.path.insert(0, "bench")
from benchlib import Bench, cold_herd, free_port, request, versions, wrk  # noqa: E402

PROXY = os.path.abspath(sys.argv[1])
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
bench = Bench("corral-bench-")

try:
    origin = bench.start_origin()
    servers = ["corral-proxy", "nginx", "varnish"]
    port = {s: free_port() for s in servers}
    for s in servers:
        origin.script("/hit1k-" + s, body_size=1024, headers={"Cache-Control": "max-age=3600"})
        origin.script("/hit16k-" + s, body_size=16384, headers={"Cache-Control": "max-age=3600"})
        origin.script("/herd-" + s, body_size=1024, delay=0.2,
                      headers={"Cache-Control": "max-age=1, stale-while-revalidate=30"})
        origin.script("/cold-" + s, body_size=1024, delay=0.2,
                      headers={"Cache-Control": "max-age=3600"})

    # ---- the three proxies ----
    p = bench.start("corral-proxy", [PROXY, "--origin", "http://127.0.0.1:%d" % origin.port,
                                     "--listen", "127.0.0.1:%d" % port["corral-proxy"],
                                     "--threads", "2", "--access-log", "off"])
    bench.wait_port(port["corral-proxy"], p, "corral-proxy")
    bench.start_nginx("nginx", port["nginx"], origin.port)
    bench.start_varnish("varnish", port["varnish"], origin.port)

    results = {s: {} for s in servers}

    # ---- cache hits ----
    for size in ("1k", "16k"):
        runs = {s: [] for s in servers}
        for s in servers:
            for _ in range(3):
                request(port[s], "GET", "/hit%s-%s" % (size, s))
        for _ in range(RUNS):
            for s in servers:  # alternated
                runs[s].append(wrk("http://127.0.0.1:%d/hit%s-%s" % (port[s], size, s), 64,
                                   SECONDS))
        for s in servers:
            results[s]["hit%s_rps" % size] = statistics.median(r["rps"] for r in runs[s])
            results[s]["hit%s_p99" % size] = statistics.median(r["p99"] for r in runs[s])

    # ---- the herd on an object expiring every second ----
    for s in servers:
        request(port[s], "GET", "/herd-" + s)
        before = origin.count("/herd-" + s)
        r = wrk("http://127.0.0.1:%d/herd-%s" % (port[s], s), 200, SECONDS)
        results[s]["herd_origin"] = origin.count("/herd-" + s) - before
        results[s]["herd_p99"] = r["p99"]
        results[s]["herd_max"] = r["max"]
        results[s]["herd_rps"] = r["rps"]

    # ---- the cold herd ----
    for s in servers:
        first, spread = cold_herd([port[s]], "/cold-" + s, 100)
        results[s]["cold_origin"] = origin.count("/cold-" + s)
        results[s]["cold_first"] = first
        results[s]["cold_spread"] = spread

    # ---- the table ----
    lines = [
        ("cache hit 1 KB, requests/s", "hit1k_rps", "%.0f"),
        ("cache hit 1 KB, p99 ms", "hit1k_p99", "%.2f"),
        ("cache hit 16 KB, requests/s", "hit16k_rps", "%.0f"),
        ("cache hit 16 KB, p99 ms", "hit16k_p99", "%.2f"),
        ("herd (200 conns, expires 1/s): origin requests", "herd_origin", "%d"),
        ("herd: p99 ms", "herd_p99", "%.2f"),
        ("herd: max ms", "herd_max", "%.1f"),
        ("cold herd (100 clients): origin requests", "cold_origin", "%d"),
        ("cold herd: first answer ms (origin takes 200)", "cold_first", "%.1f"),
        ("cold herd: last answer after the first, ms", "cold_spread", "%.1f"),
    ]
    nginx_v, varnish_v = versions()
    print("corral-proxy vs nginx %s proxy_cache vs Varnish %s; wrk -t2, %d s per run, median of "
          "%d; %d cores" % (nginx_v, varnish_v, SECONDS, RUNS, os.cpu_count()))
    print()
    print("| %-48s | %12s | %12s | %12s |" % ("", "corral-proxy", "nginx", "varnish"))
    print("|%s|%s|%s|%s|" % ("-" * 50, "-" * 14, "-" * 14, "-" * 14))
    for label, key, fmt in lines:
        print("| %-48s | %12s | %12s | %12s |" % (label, *[fmt % results[s][key] for s in servers]))
    c, n_, v = (results[s]["hit1k_rps"] for s in servers)
    print()
    print("1 KB hits: corral-proxy / nginx = %.2fx (target 1.25x), corral-proxy / varnish = %.2fx "
          "(target 1.0x)" % (c / n_, c / v))
finally:
    bench.stop_all()
PY
