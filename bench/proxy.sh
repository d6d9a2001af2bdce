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
# Everything runs on loopback on the same cores; the numbers compare, they do not bound.
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY=${1:-build/release/corral-proxy}
if [ ! -x "$PROXY" ]; then
    echo "bench/proxy.sh: $PROXY not found (make bench-proxy builds it)" >&2
    exit 1
fi
scripts/bootstrap nginx varnish wrk

exec /usr/bin/python3 - "$PROXY" <<'PY'
import http.client
import json
import os
import re
import shutil
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PROXY = os.path.abspath(sys.argv[1])
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
work = tempfile.mkdtemp(prefix="corral-bench-")
cache_dir = None
procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit("bench: %s exited:\n%s" % (what, open(os.path.join(work, what + ".err")).read()))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("bench: %s did not start" % what)


def start(what, cmd):
    err = open(os.path.join(work, what + ".err"), "w")
    p = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)
    procs.append(p)
    return p


def request(port, method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, body=body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def stop_all():
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(work, ignore_errors=True)
    if cache_dir:
        shutil.rmtree(cache_dir, ignore_errors=True)


try:
    # ---- the origin ----
    origin = subprocess.Popen(["/usr/bin/python3", "tests/e2e/origin.py", "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    procs.append(origin)
    oport = int(origin.stdout.readline().split()[1])

    def script(path, **spec):
        spec["path"] = path
        assert request(oport, "POST", "/__ctl/script", json.dumps(spec))[0] == 200

    def origin_count(path):
        return json.loads(request(oport, "GET", "/__ctl/stats?path=" + path)[1])["count"]

    servers = ["corral-proxy", "nginx", "varnish"]
    port = {s: free_port() for s in servers}
    for s in servers:
        script("/hit1k-" + s, body_size=1024, headers={"Cache-Control": "max-age=3600"})
        script("/hit16k-" + s, body_size=16384, headers={"Cache-Control": "max-age=3600"})
        script("/herd-" + s, body_size=1024, delay=0.2,
               headers={"Cache-Control": "max-age=1, stale-while-revalidate=30"})
        script("/cold-" + s, body_size=1024, delay=0.2, headers={"Cache-Control": "max-age=3600"})

    # ---- the three proxies ----
    p = start("corral-proxy", [PROXY, "--origin", "http://127.0.0.1:%d" % oport, "--listen",
                               "127.0.0.1:%d" % port["corral-proxy"], "--threads", "2",
                               "--access-log", "off"])
    wait_port(port["corral-proxy"], p, "corral-proxy")

    cache_dir = tempfile.mkdtemp(prefix="corral-bench-nginx-", dir="/dev/shm")  # in memory
    nginx_conf = os.path.join(work, "nginx.conf")
    with open(nginx_conf, "w") as f:
        f.write("""
daemon off;
worker_processes 2;
pid %(work)s/nginx.pid;
error_log %(work)s/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(work)s/body;
    proxy_temp_path %(work)s/proxy;
    fastcgi_temp_path %(work)s/fastcgi;
    uwsgi_temp_path %(work)s/uwsgi;
    scgi_temp_path %(work)s/scgi;
    proxy_cache_path %(cache)s levels=1:2 keys_zone=bench:64m max_size=1g inactive=60m
                     use_temp_path=off;
    upstream origin { server 127.0.0.1:%(oport)d; keepalive 64; }
    server {
        listen 127.0.0.1:%(port)d;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_cache bench;
            proxy_cache_lock on;
            proxy_cache_use_stale updating error timeout;
            proxy_cache_background_update on;
        }
    }
}
""" % {"work": work, "cache": cache_dir, "oport": oport, "port": port["nginx"]})
    p = start("nginx", ["nginx", "-c", nginx_conf, "-p", work])
    wait_port(port["nginx"], p, "nginx")

    p = start("varnish", ["varnishd", "-F", "-j", "none", "-n", os.path.join(work, "varnish"),
                          "-a", "127.0.0.1:%d" % port["varnish"], "-b",
                          "127.0.0.1:%d" % oport, "-s", "malloc,256m"])
    wait_port(port["varnish"], p, "varnish")

    def ms(value, unit):
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    def wrk(url, conns):
        out = subprocess.run(["wrk", "-t2", "-c%d" % conns, "-d%ds" % SECONDS, "--latency", url],
                             capture_output=True, text=True, check=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p99 = ms(*re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out).groups())
        mx = ms(*re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", out).groups())
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return rps, p99, mx, int(errors.group(1)) if errors else 0

    rows = []
    results = {s: {} for s in servers}

    # ---- cache hits ----
    for size in ("1k", "16k"):
        runs = {s: [] for s in servers}
        for s in servers:
            for _ in range(3):
                request(port[s], "GET", "/hit%s-%s" % (size, s))
        for _ in range(RUNS):
            for s in servers:  # alternated
                runs[s].append(wrk("http://127.0.0.1:%d/hit%s-%s" % (port[s], size, s), 64))
        for s in servers:
            results[s]["hit%s_rps" % size] = statistics.median(r[0] for r in runs[s])
            results[s]["hit%s_p99" % size] = statistics.median(r[1] for r in runs[s])

    # ---- the herd on an object expiring every second ----
    for s in servers:
        request(port[s], "GET", "/herd-" + s)
        before = origin_count("/herd-" + s)
        rps, p99, mx, bad = wrk("http://127.0.0.1:%d/herd-%s" % (port[s], s), 200)
        results[s]["herd_origin"] = origin_count("/herd-" + s) - before
        results[s]["herd_p99"] = p99
        results[s]["herd_max"] = mx
        results[s]["herd_rps"] = rps

    # ---- the cold herd ----
    # One thread drives the 100 clients with non-blocking sockets: connected first, requests sent
    # back to back, each answer timestamped when its last byte arrives. (100 Python threads
    # parsing answers under the GIL would themselves spread the timestamps by ~10 ms.)
    for s in servers:
        n = 100
        socks = []
        for i in range(n):
            so = socket.create_connection(("127.0.0.1", port[s]), timeout=60)
            so.setblocking(False)
            socks.append(so)
        req = ("GET /cold-%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % s).encode()
        sel = selectors.DefaultSelector()
        bufs = {}
        t0 = time.monotonic()
        for i, so in enumerate(socks):
            so.sendall(req)
            sel.register(so, selectors.EVENT_READ, i)
            bufs[i] = b""
        done = [None] * n
        left = n
        while left:
            for key, _ in sel.select(timeout=60):
                i = key.data
                chunk = key.fileobj.recv(65536)
                if chunk:
                    bufs[i] += chunk
                head, sep, body = bufs[i].partition(b"\r\n\r\n")
                if sep:
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value.strip())
                    if len(body) >= length or not chunk:
                        done[i] = time.monotonic()
                        sel.unregister(key.fileobj)
                        left -= 1
                elif not chunk:
                    raise SystemExit("cold herd: %s closed a connection before answering" % s)
        for so in socks:
            so.close()
        results[s]["cold_origin"] = origin_count("/cold-" + s)
        results[s]["cold_first"] = (min(done) - t0) * 1000
        results[s]["cold_spread"] = (max(done) - min(done)) * 1000

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
    nginx_v = re.search(r"nginx/(\S+)", subprocess.run(["nginx", "-v"], capture_output=True,
                                                        text=True).stderr)
    varnish_v = re.search(r"varnish-(\S+)", subprocess.run(["varnishd", "-V"], capture_output=True,
                                                            text=True).stderr)
    print("corral-proxy vs nginx %s proxy_cache vs Varnish %s; wrk -t2, %d s per run, median of "
          "%d; %d cores" % (nginx_v.group(1) if nginx_v else "?",
                            varnish_v.group(1) if varnish_v else "?", SECONDS, RUNS,
                            os.cpu_count()))
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
    stop_all()
PY
