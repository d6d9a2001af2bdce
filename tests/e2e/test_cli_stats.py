"""`corral stats`, `corral top` and `corral purge` against the real corral-proxy (its admin
/metrics and purge endpoints) and a real redis-server: the table's numbers are /metrics', several
targets are summed, a row without traffic shows "-", rows under 90% are flagged, `top` shows
rates over the last interval (plain when stdout is a pipe, full-screen with keys under tmux),
and a failing target is one line with its reason, exit 3, the others still shown."""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from cli import cli_binary, corral, redis, resp  # noqa: F401 - redis is a fixture
from conftest import eventually, free_port

ROUTES = "[route:products]\nprefix = /products/\n\n[route:search]\nprefix = /search/\n"


def metric(text, name, route):
    m = re.search(r'^%s\{route="%s"\} (\S+)$' % (re.escape(name), route), text, re.M)
    return float(m.group(1)) if m else 0.0


def settled(px, requests):
    """/metrics once the proxy has counted `requests` requests (its counters are summed at
    scrape from per-thread blocks, written after the answer is sent)."""
    def check():
        t = px.metrics()
        total = sum(float(v) for v in re.findall(
            r'^corral_proxy_requests_total\{route="[^"]*"\} (\S+)$', t, re.M))
        return t if total == requests else None
    return eventually(check, what="%d requests counted" % requests)


def traffic(px):
    """10 requests on /products/ (2 misses, 8 hits: 80%), 1 on /search/ (a miss)."""
    for _ in range(5):
        for p in ("/products/1", "/products/2"):
            px.get(p)
    px.get("/search/q")
    return 11


def stats_json(*targets):
    r = corral("stats", "--json", *targets)
    return r, json.loads(r.stdout)


def test_stats_shows_what_metrics_says_per_route(origin, proxy):
    px = proxy(config=ROUTES)
    text = settled(px, traffic(px))
    admin = "http://127.0.0.1:%d/metrics" % px.admin_port
    r, data = stats_json(admin)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in data["rows"]}
    for route in ("products", "search"):
        row = rows[route]
        assert row["kind"] == "route"
        assert row["requests"] == metric(text, "corral_proxy_requests_total", route)
        assert row["hits"] == metric(text, "corral_proxy_hits_total", route)
        assert row["misses"] == metric(text, "corral_proxy_misses_total", route)
        assert row["loads"] == metric(text, "corral_proxy_origin_fetches_total", route)
        assert row["items"] == metric(text, "corral_proxy_objects", route)
        assert row["bytes"] == metric(text, "corral_proxy_bytes", route)
    assert rows["products"]["hit_rate"] == 80.0 and rows["products"]["under_90"]
    assert rows["search"]["hit_rate"] == 0.0
    # The table: flagged rows, and the total line.
    out = corral("stats", admin).stdout.decode()
    assert re.search(r"^products +route +10 +80\.0% +2 .*<- under 90%$", out, re.M), out
    assert re.search(r"^total +11 +72\.7% +3 ", out, re.M), out


def test_a_route_without_traffic_shows_a_dash_not_zero(origin, proxy):
    px = proxy(config=ROUTES + "\n[route:idle]\nprefix = /idle/\n")
    px.get("/products/1")
    settled(px, 1)
    out = corral("stats", "http://127.0.0.1:%d" % px.admin_port).stdout.decode()
    line = next(ln for ln in out.splitlines() if ln.startswith("idle "))
    assert line.split()[2:4] == ["0", "-"] and "under 90%" not in line, out


def test_stats_sums_several_targets_into_a_fleet_view(origin, proxy):
    a, b = proxy(config=ROUTES), proxy(config=ROUTES)
    settled(a, traffic(a))
    b.get("/products/1")
    b.get("/products/1")
    settled(b, 2)
    r, data = stats_json(*("http://127.0.0.1:%d/metrics" % p.admin_port for p in (a, b)))
    assert r.returncode == 0 and all(t["ok"] for t in data["targets"])
    products = next(row for row in data["rows"] if row["name"] == "products")
    assert (products["requests"], products["hits"], products["misses"]) == (12, 9, 3)
    assert corral("stats", "http://127.0.0.1:%d" % a.admin_port,
                  "http://127.0.0.1:%d" % b.admin_port).stdout.startswith(b"fleet: 2 of 2")


def test_stats_of_redis_samples_items_and_bytes_per_prefix(redis):
    url = "redis://127.0.0.1:%d/?key_prefix=shop" % redis
    for i in range(30):
        assert corral("set", url, "product:%d" % i, "x" * 100).returncode == 0
    for i in range(5):
        assert corral("set", url, "featured_products:v%d" % i, "1,2").returncode == 0
    assert resp(redis, "SET", "elsewhere:1:k", "not ours") == "OK"
    r, data = stats_json(url)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in data["rows"]}
    assert set(rows) == {"product", "featured_products"}
    assert rows["product"]["items"] == 30 and rows["featured_products"]["items"] == 5
    assert rows["product"]["bytes"] > 30 * 100 and not rows["product"]["estimated"]
    assert rows["product"]["hit_rate"] is None
    assert data["targets"][0]["note"] == '36 keys, 35 under "shop:"'


def test_failing_targets_are_one_line_each_and_the_others_are_shown(origin, proxy, redis):
    px = proxy(config=ROUTES)
    px.get("/products/1")
    settled(px, 1)
    resp(redis, "CONFIG", "SET", "requirepass", "s3cret")
    good = "http://127.0.0.1:%d/metrics" % px.admin_port
    refused = "http://127.0.0.1:%d/metrics" % free_port()
    html = "http://127.0.0.1:%d/products/1" % px.port  # the proxied page: not metrics
    noauth = "redis://127.0.0.1:%d/" % redis
    r = corral("stats", good, refused, html, noauth)
    assert r.returncode == 3
    errors = r.stderr.decode().splitlines()
    assert errors[0] == "corral stats: %s: connection refused" % refused
    assert errors[1] == "corral stats: %s: not Prometheus text: line 1: bad metric name" % html
    assert errors[2].startswith("corral stats: %s: auth failed" % noauth) and len(errors) == 3
    assert r.stdout.startswith(b"fleet: 1 of 4 targets\n")
    assert re.search(rb"^products +route +1 ", r.stdout, re.M)


def test_top_plain_shows_rates_over_the_interval_not_totals(origin, proxy):
    px = proxy(config=ROUTES)
    settled(px, traffic(px))
    # No traffic while top runs: totals are 11, the rates 0.
    r = corral("top", "--count", "2", "--interval", "300", "http://127.0.0.1:%d" % px.admin_port)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert len(re.findall(r"^corral top .* 1 of 1 targets  rates over", out, re.M)) == 2
    assert re.search(r"^products +route +0\.0 +- +0\.0 ", out, re.M), out
    assert "\033" not in out  # no terminal codes in a pipe


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux missing (scripts/bootstrap)")
def test_top_in_a_terminal_sorts_on_keys_and_quits_on_q(origin, proxy, tmp_path):
    px = proxy(config=ROUTES)
    settled(px, traffic(px))
    sock = "corral-top-%d" % os.getpid()
    done = tmp_path / "exit"

    def tmux(*args):
        return subprocess.run(["tmux", "-L", sock] + list(args), capture_output=True,
                              text=True, timeout=30)

    cmd = "%s top --interval 200 http://127.0.0.1:%d; echo $? > %s" % (
        cli_binary(), px.admin_port, done)
    assert tmux("new-session", "-d", "-x", "150", "-y", "30", cmd).returncode == 0
    try:
        def screen():
            return tmux("capture-pane", "-p").stdout

        eventually(lambda: "products" in screen() and "sort: requests" in screen(),
                   what="the first table")
        tmux("send-keys", "n")
        s = eventually(lambda: (lambda t: t if "sort: name" in t else None)(screen()),
                       what="sort by name")
        names = [ln.split()[0] for ln in s.splitlines()
                 if re.match(r"^\S+ +route ", ln)]
        assert names == sorted(names) and "products" in names
        tmux("send-keys", "h")
        eventually(lambda: "sort: hit rate" in screen(), what="sort by hit rate")
        tmux("send-keys", "q")
        eventually(lambda: done.exists() and done.read_text().strip() == "0", what="exit 0")
    finally:
        tmux("kill-server")


def test_purge_through_the_admin_listener_with_a_token_from_the_environment(origin, proxy,
                                                                            tmp_path):
    px = proxy(config=ROUTES, args=["--admin-token", "t0ken"])
    admin = "http://127.0.0.1:%d" % px.admin_port
    url = "http://127.0.0.1:%d/products/7" % px.port
    assert [px.get("/products/7").cache for _ in range(2)] == ["MISS", "HIT"]
    r = corral("purge", admin, "--url", url)
    assert r.returncode == 3 and b"HTTP 401" in r.stderr  # no token
    env = dict(os.environ, CORRAL_ADMIN_TOKEN="t0ken")
    r = subprocess.run([cli_binary(), "purge", admin, "--url", url], capture_output=True, env=env,
                       timeout=60)
    assert r.returncode == 0 and r.stdout == b"purged 1\n", r
    assert px.get("/products/7").cache == "MISS"
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    r = corral("purge", admin, "--prefix", "/products/", "--token-file", str(token), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["kind"] == "prefix"
    assert px.get("/products/7").cache == "MISS"
    # A URL with nothing cached: exit 1, "purged 0".
    r = corral("purge", admin, "--url", url + "?none", "--token-file", str(token))
    assert r.returncode == 1 and r.stdout == b"purged 0\n"
    assert corral("purge", admin, "--url", url, "--token", "t0ken").returncode == 2


def test_purge_of_an_unreachable_admin_is_exit_3():
    admin = "http://127.0.0.1:%d" % free_port()
    r = corral("purge", admin, "--key", "product-1")
    assert r.returncode == 3
    assert r.stderr.decode() == "corral purge: %s: connection refused\n" % admin


def test_a_target_that_never_answers_is_a_timeout():
    # A listener that accepts (the kernel's backlog) and never answers: HTTP and Redis alike.
    import socket
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        http, red = "http://127.0.0.1:%d/metrics" % port, "redis://127.0.0.1:%d/" % port
        r = corral("stats", "--timeout", "300", http, red)
    assert r.returncode == 3
    assert r.stderr.decode().splitlines() == [
        "corral stats: %s: timeout after 300 ms" % http,
        "corral stats: %s: timeout after 300 ms" % red]


def test_a_redis_sample_is_bounded_in_time_and_scaled_to_the_database(redis):
    # 20000 keys under shop:1:product:, made server-side. A 1 ms bound reads one SCAN batch
    # (about 1000 keys), then scales what it saw by DBSIZE / keys seen.
    script = "for i=1,20000 do redis.call('SET', 'shop:1:product:'..i, 'x') end return 1"
    assert resp(redis, "EVAL", script, "0") == 1
    r, data = stats_json("--sample-ms", "1", "redis://127.0.0.1:%d/?key_prefix=shop" % redis)
    assert r.returncode == 0, r.stderr
    note = data["targets"][0]["note"]
    m = re.match(r'sampled (\d+) of 20000 keys in 1 ms \(\1 under "shop:"\), scaled$', note)
    assert m and int(m.group(1)) < 20000, note
    (row,) = data["rows"]
    assert row["name"] == "product" and row["estimated"] and round(row["items"]) == 20000
    out = corral("stats", "--sample-ms", "1", "redis://127.0.0.1:%d/?key_prefix=shop" % redis)
    assert re.search(rb"^product +prefix .* ~20000 +~", out.stdout, re.M), out.stdout


def test_stats_reads_any_program_serving_corral_metrics_write(tmp_path):
    # `corral demo` prints the library's Prometheus text (corral_metrics_write) after its table;
    # served as it is by a plain HTTP server, it is a target like the proxy's /metrics.
    import http.server
    import threading
    out = corral("demo").stdout.decode()
    text = out.split("Prometheus text (what /metrics serves):\n", 1)[1].encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = "http://127.0.0.1:%d/metrics" % server.server_address[1]
        r, data = stats_json(target)
        table = corral("stats", "--all", target).stdout.decode()
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in data["rows"]}
    # The demo's own table says: featured_products 1998 hits, 3 misses; bestsellers 0 and 64.
    assert (rows["featured_products"]["hits"], rows["featured_products"]["misses"]) == (1998, 3)
    assert rows["featured_products"]["kind"] == "prefix"
    assert rows["featured_products"]["requests"] == 2001
    assert not rows["featured_products"]["under_90"]
    assert rows["bestsellers"]["under_90"] and rows["bestsellers"]["loads"] >= 1
    assert "corral.internal" not in rows  # internal: only with --all
    assert re.search(r"^corral\.internal +prefix +0 +- ", table, re.M), table
