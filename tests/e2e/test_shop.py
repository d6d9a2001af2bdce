"""The shop example behind corral-proxy, as `make run` starts it (scripts/run-shop): the lines it
prints, a cache hit the origin never sees, the save handler's purge by surrogate key, the private
orders page never shared, Vary on Accept-Language, one origin request for a herd on the slow
report, /metrics, a clean stop on SIGTERM, and a clear failure when the port is taken.

Each test runs scripts/run-shop on free ports (PROXY_PORT, ADMIN_PORT) with the binaries CMake
names (CORRAL_PROXY, CORRAL_SHOP); the shop's X-Origin-Count header says how many times the
origin was asked for a page.
"""
import concurrent.futures
import os
import re
import signal
import socket
import subprocess

import pytest

from conftest import ROOT, eventually, free_port, http_request, proxy_binary

RUN_SHOP = os.path.join(ROOT, "scripts", "run-shop")
BANNER_END = "Ctrl-C stops both."


def shop_binary():
    env = os.environ.get("CORRAL_SHOP")
    if env:
        return env
    for d in ("build/asan", "build/release"):
        p = os.path.join(ROOT, d, "corral-shop")
        if os.path.exists(p):
            return p
    pytest.fail("corral-shop not found: set CORRAL_SHOP")


class RunShop:
    """scripts/run-shop as a subprocess; its stdout and stderr go to files in `workdir`."""

    def __init__(self, workdir, proxy_port=None, admin_port=None, token=None):
        self.port = proxy_port or free_port()
        self.admin_port = admin_port or free_port()
        self.out_path = os.path.join(workdir, "run-shop.out")
        self.err_path = os.path.join(workdir, "run-shop.err")
        env = dict(os.environ, CORRAL_PROXY=proxy_binary(), CORRAL_SHOP=shop_binary(),
                   PROXY_PORT=str(self.port), ADMIN_PORT=str(self.admin_port),
                   PROXY_ARGS="--threads 2")
        env.pop("ADMIN_TOKEN", None)
        env.pop("CORRAL_ADMIN_TOKEN", None)
        if token:
            env["ADMIN_TOKEN"] = token
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen([RUN_SHOP], stdout=out, stderr=err, env=env,
                                         stdin=subprocess.DEVNULL)
        self.rc = None

    def output(self):
        with open(self.out_path) as f:
            return f.read()

    def errors(self):
        with open(self.err_path) as f:
            return f.read()

    def wait_started(self):
        eventually(lambda: BANNER_END in self.output() or self.proc.poll() is not None,
                   deadline_s=60, what="run-shop's banner")
        assert self.proc.poll() is None, "run-shop exited %s:\n%s" % (self.proc.returncode,
                                                                        self.errors())
        m = re.search(r"the shop itself +http://127\.0\.0\.1:(\d+)/", self.output())
        assert m, self.output()
        self.origin_port = int(m.group(1))
        return self

    def get(self, path, headers=None):
        return http_request(self.port, "GET", path, headers)

    def post(self, path):
        return http_request(self.port, "POST", path, body=b"")

    def admin(self, path):
        return http_request(self.admin_port, "GET", path)

    def stop(self, timeout=60):
        if self.rc is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.rc = "killed after %d s" % timeout
        return self.rc


def start_shop(workdir, token=None):
    """RunShop on free ports, started. Tests run in parallel, so a port free_port() found may be
    taken before run-shop binds it: then it tries other ports, as conftest's Proxy does. Taken
    before run-shop's own check, it says "already in use"; between that check and the proxy's
    bind, corral-proxy says "cannot listen on ...: address in use"."""
    for attempt in range(3):
        rs = RunShop(workdir, token=token)
        eventually(lambda: BANNER_END in rs.output() or rs.proc.poll() is not None,
                   deadline_s=60, what="run-shop's banner")
        if rs.proc.poll() is None or " in use" not in rs.errors() or attempt == 2:
            return rs
        rs.stop()


@pytest.fixture
def shop(tmp_path):
    rs = start_shop(str(tmp_path))
    try:
        yield rs.wait_started()
    finally:
        rc = rs.stop()
    assert rc == 0, "run-shop exited %s:\n%s" % (rc, rs.errors()[-4000:])


def count(r):
    return int(r.headers["x-origin-count"])


def test_run_shop_prints_where_to_point_a_browser_and_where_the_metrics_are(shop):
    out = shop.output()
    assert re.search(r"point a browser at +http://127\.0\.0\.1:%d/\n" % shop.port, out), out
    assert re.search(r"metrics +http://127\.0\.0\.1:%d/metrics\n" % shop.admin_port, out), out
    assert re.search(r"dashboard +http://127\.0\.0\.1:%d/dashboard " % shop.admin_port, out), out
    assert re.search(r"^  \S*corral top http://127\.0\.0\.1:%d/metrics$" % shop.admin_port, out,
                     re.M), out
    curls = [l.strip() for l in out.splitlines() if l.startswith("  curl ")]
    assert len(curls) == 3, out
    assert "/products/1" in curls[0] and "/products/1/save" in curls[1]
    assert "%d/metrics" % shop.admin_port in curls[2]


def test_second_view_of_a_product_is_a_hit_the_origin_never_sees(shop):
    first = shop.get("/products/1")
    second = shop.get("/products/1")
    assert (first.status, first.cache, second.cache) == (200, "MISS", "HIT")
    assert (count(second), second.body) == (count(first), first.body)
    # Asked directly, the origin counts one more request than the proxy's miss: the hit never
    # reached it.
    direct = http_request(shop.origin_port, "GET", "/products/1")
    assert count(direct) == count(first) + 1


def test_save_purges_the_product_so_the_next_view_is_fresh(shop):
    before = shop.get("/products/1")
    other = shop.get("/products/2")
    assert shop.get("/products/1").cache == "HIT"
    saved = shop.post("/products/1/save")
    assert (saved.status, saved.headers["x-shop-purge"]) == (200, "product-1 200")
    after = shop.get("/products/1")
    assert (after.cache, count(after)) == ("MISS", count(before) + 1)
    assert "&euro;12.00" in before.text and "&euro;12.50" in after.text
    assert shop.get("/products/2").cache == "HIT"  # only what changed was purged
    assert count(other) == 1
    metrics = shop.admin("/metrics").text
    assert 'corral_proxy_purge_requests_total{kind="surrogate_key"} 1' in metrics


def test_orders_are_never_shared_between_sessions(shop):
    alice = shop.get("/account/orders", {"Cookie": "session=alice"})
    bob = shop.get("/account/orders", {"Cookie": "session=bob"})
    alice_again = shop.get("/account/orders", {"Cookie": "session=alice"})
    assert "Orders for <strong>alice</strong>" in alice.text
    assert "Orders for <strong>bob</strong>" in bob.text and "alice" not in bob.text
    assert [r.cache for r in (alice, bob, alice_again)].count("HIT") == 0
    assert [count(r) for r in (alice, bob, alice_again)] == [1, 2, 3]  # each one asked the origin
    assert alice.headers["cache-control"] == "private"


def test_pricing_varies_on_accept_language(shop):
    de = shop.get("/pricing", {"Accept-Language": "de-DE, de;q=0.9"})
    fr = shop.get("/pricing", {"Accept-Language": "fr"})
    de_again = shop.get("/pricing", {"Accept-Language": "de-DE, de;q=0.9"})
    assert "<h1>Preise</h1>" in de.text and "<h1>Tarifs</h1>" in fr.text
    assert (de.cache, fr.cache, de_again.cache) == ("MISS", "MISS", "HIT")
    assert de_again.body == de.body


def test_a_herd_on_the_slow_report_makes_one_origin_request(shop):
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: shop.get("/reports/bestsellers"), range(20)))
    assert {r.status for r in answers} == {200}
    assert {count(r) for r in answers} == {1}


def test_metrics_are_served_on_the_admin_listener(shop):
    shop.get("/")
    r = shop.admin("/metrics")
    assert r.status == 200
    assert re.search(r'^corral_proxy_requests_total\{route="default"\} [1-9]', r.text, re.M)


def test_each_family_of_pages_has_its_own_route_in_the_metrics(shop):
    """examples/shop/proxy.ini: product pages, pricing, reports and orders are counted apart,
    each route listed from the start, so a hit rate per family shows from the first minute."""
    for path in ("/products/2", "/products/2", "/products/3", "/pricing"):
        shop.get(path)
    text = shop.admin("/metrics").text

    def counter(name, route):
        m = re.search(r'^corral_proxy_%s_total\{route="%s"\} (\d+)$' % (name, route), text, re.M)
        assert m, "no %s row for route %s:\n%s" % (name, route, text)
        return int(m.group(1))

    assert (counter("requests", "products"), counter("hits", "products")) == (3, 1)
    assert (counter("requests", "pricing"), counter("misses", "pricing")) == (1, 1)
    assert counter("requests", "reports") == 0 and counter("requests", "account") == 0
    assert counter("requests", "default") == 0


def test_sigterm_stops_the_proxy_and_the_shop_cleanly(shop):
    assert shop.get("/healthz").status == 200
    assert shop.stop() == 0
    assert "run-shop: stopped" in shop.errors()
    for port in (shop.port, shop.admin_port, shop.origin_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_taken_port_is_reported_and_run_shop_fails(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        rs = RunShop(str(tmp_path), proxy_port=taken.getsockname()[1])
        try:
            rc = rs.proc.wait(60)
        finally:
            rs.stop()
    assert rc == 1
    assert "127.0.0.1:%d is already in use" % rs.port in rs.errors()


def test_issue_12_an_admin_token_reaches_proxy_and_shop_but_no_command_line(tmp_path):
    token = "shop-t0ken-4d1e"
    rs = start_shop(str(tmp_path), token=token)
    try:
        rs.wait_started()
        assert rs.admin("/metrics").status == 401
        # The shop purges with the token: its save's purge is accepted.
        saved = rs.post("/products/1/save")
        assert (saved.status, saved.headers["x-shop-purge"]) == (200, "product-1 200")
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert "corral-proxy" in ps and token not in ps
        assert token not in rs.output() + rs.errors()
    finally:
        rc = rs.stop()
    assert rc == 0, rs.errors()[-4000:]
