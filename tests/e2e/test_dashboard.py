"""GET /dashboard on the admin listener, in a real browser: Debian's chromium, headless, driven
by chromedriver through python3-selenium (scripts/bootstrap installs the three).

The test starts the real corral-proxy (with an admin token) in front of the test origin, opens
the page with the token as Basic credentials, drives traffic to two routes (one served from the
cache, one that mostly misses), and checks that what the page shows is what /metrics says: the
totals of every route, the hit rates computed from them, the low route standing out, the charts
drawn from the same numbers. It also checks the token rule and that the page loads nothing from
elsewhere (no console error: a Content-Security-Policy violation would be one).

DASHBOARD_SCREENSHOT=path keeps a screenshot of the page at the end (docs/dashboard.png comes
from a `make run` shop instead, after a few minutes of traffic).
"""
import base64
import os
import re
import shutil

import pytest

from conftest import eventually, http_request

TOKEN = "dash-s3cret"
CONFIG = """[proxy]
admin_token = %s

[route:good]
prefix = /good/

[route:poor]
prefix = /poor/
""" % TOKEN

# The table as the page shows it, read in one script run (the page redraws every poll).
READ_TABLE = """
const rows = {};
for (const tr of document.querySelectorAll('#routes tbody tr, #routes tfoot tr')) {
  const cells = {};
  for (const td of tr.querySelectorAll('td[data-k]')) cells[td.dataset.k] = td.textContent;
  rows[tr.dataset.route || tr.id] = { low: tr.classList.contains('low'), cells };
}
return rows;
"""

COUNTERS = ("requests", "hits", "misses", "coalesced", "stale", "origin_fetches", "purges")


def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("python3-selenium is missing: run scripts/bootstrap")
    for path in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not shutil.which(path):
            pytest.fail("%s is missing: run scripts/bootstrap (chromium, chromium-driver)" % path)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


@pytest.fixture
def driver():
    d = browser()
    yield d
    d.quit()


def metrics(px):
    r = http_request(px.admin_port, "GET", "/metrics", {"Authorization": "Bearer " + TOKEN})
    assert r.status == 200, r
    out = {}
    for line in r.text.splitlines():
        m = re.match(r'^corral_proxy_(\w+?)(?:_total)?\{route="([^"]+)"\} (\S+)$', line)
        if m:
            out.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
    return out


def hit_rate(r):
    """The page's definition (docs/proxy.md, "Dashboard"), from /metrics' counters."""
    served = r["hits"] + r["stale"] + r["stale_if_error"] + r["coalesced"]
    cacheable = served + r["misses"] + r["revalidated"]
    return "-" if cacheable == 0 else "%.1f%%" % (100.0 * served / cacheable)


def test_the_dashboard_needs_the_admin_token_like_every_admin_request(proxy):
    px = proxy(config=CONFIG)
    denied = http_request(px.admin_port, "GET", "/dashboard")
    assert denied.status == 401
    assert denied.headers["www-authenticate"].startswith("Basic ")
    no_colon = base64.b64encode(TOKEN.encode()).decode()
    for bad in (base64.b64encode(b"admin:nope").decode(), no_colon, "!!!!", "", "YQ=b",
                base64.b64encode(("x:" + TOKEN + "x").encode()).decode(), "A" * 2000):
        assert http_request(px.admin_port, "GET", "/dashboard",
                            {"Authorization": "Basic " + bad}).status == 401, bad
    basic = base64.b64encode(("anyone:" + TOKEN).encode()).decode()
    page = http_request(px.admin_port, "GET", "/dashboard", {"Authorization": "Basic " + basic})
    bearer = http_request(px.admin_port, "GET", "/dashboard",
                          {"Authorization": "Bearer " + TOKEN})
    assert page.status == 200 and bearer.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # Self-contained: nothing referenced by URL (scripts and styles are inline).
    assert not re.search(r'\b(src|href)\s*=', page.text), "the page references another resource"
    assert http_request(px.admin_port, "GET", "/metrics",
                        {"Authorization": "Basic " + basic}).status == 200
    # A browser resends Basic credentials with a form another site posts: purges take Bearer only.
    for method, target in (("POST", "/purge/prefix/"), ("POST", "/purge/key/k"),
                           ("PURGE", "http://127.0.0.1:%d/" % px.port)):
        assert http_request(px.admin_port, method, target,
                            {"Authorization": "Basic " + basic}).status == 401, (method, target)


def test_the_dashboard_shows_what_metrics_says_per_route_and_flags_the_low_one(proxy, driver):
    px = proxy(config=CONFIG)
    for _ in range(20):
        assert px.get("/good/1").status == 200  # 1 miss, then hits: 95%
    assert px.get("/poor/0").status == 200

    driver.get("http://admin:%s@127.0.0.1:%d/dashboard" % (TOKEN, px.admin_port))
    eventually(lambda: driver.execute_script("return document.body.dataset.samples"),
               deadline_s=30, what="the page's first poll of /metrics")
    # Traffic while the page is open: the rate columns and the chart see it.
    for _ in range(10):
        assert px.get("/good/1").cache == "HIT"
    for i in range(1, 6):
        assert px.get("/poor/%d" % i).status == 200  # misses
    assert px.get("/poor/0").cache == "HIT"  # 1 of 7: 14.3%
    want = metrics(px)
    assert want["good"]["requests"] == 30 and want["poor"]["requests"] == 7

    def shown_when_caught_up():
        rows = driver.execute_script(READ_TABLE)
        good = rows.get("good", {}).get("cells", {})
        return rows if good.get("requests") == "30" else None

    rows = eventually(shown_when_caught_up, deadline_s=30, what="the page showing the traffic")
    for route in ("good", "poor", "default"):
        cells = rows[route]["cells"]
        for k in COUNTERS:
            assert cells[k] == "%d" % want[route][k], (route, k, cells)
        # A route with nothing stored has no objects row: the page shows 0.
        assert cells["objects"] == "%d" % want[route].get("objects", 0), (route, cells)
        assert cells["hit_all"] == hit_rate(want[route]), (route, cells)
    assert rows["good"]["cells"]["hit_all"] == "96.7%"  # 29 of 30
    assert rows["poor"]["cells"]["hit_all"] == "14.3%"
    assert rows["poor"]["low"] and not rows["good"]["low"]
    assert rows["total"]["cells"]["requests"] == "%d" % sum(r["requests"] for r in want.values())
    assert float(rows["total"]["cells"]["rps"]) > 0, rows["total"]

    # The charts: a hit-rate line per route with traffic, and the latency histogram's bars
    # adding up to the origin requests /metrics counted.
    lines = driver.execute_script(
        "return [...document.querySelectorAll('#chart path')].map(p => p.dataset.route)")
    assert "good" in lines and "poor" in lines
    bars = driver.execute_script(
        "return [...document.querySelectorAll('#hist rect')].map(r => +r.dataset.count)")
    assert sum(bars) == sum(r["origin_latency_seconds_count"] for r in want.values())

    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    shot = os.environ.get("DASHBOARD_SCREENSHOT")
    if shot:
        driver.save_screenshot(shot)
