"""/metrics on the admin listener: the proxy's counters per route, the origin latency
histogram, objects and bytes per route, then libcorral's own metrics."""
import re

from conftest import eventually


def value(text, series):
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_metrics_report_per_route_counters_latency_objects_and_the_store(origin, proxy):
    px = proxy(config="[route:blog]\nprefix = /blog/\n")
    px.get("/blog/1")
    px.get("/blog/1")
    px.get("/other")
    px.request("POST", "/blog/comment", body=b"hi")
    text = eventually(lambda: (lambda t: t if value(t, 'corral_proxy_requests_total{route="blog"}')
                               == 3 else None)(px.metrics()), what="the blog requests counted")
    expect = {
        'corral_proxy_requests_total{route="blog"}': 3,
        'corral_proxy_hits_total{route="blog"}': 1,
        'corral_proxy_misses_total{route="blog"}': 1,
        'corral_proxy_pass_total{route="blog"}': 1,
        'corral_proxy_origin_fetches_total{route="blog"}': 2,
        'corral_proxy_stored_total{route="blog"}': 1,
        'corral_proxy_misses_total{route="default"}': 1,
        'corral_proxy_origin_latency_seconds_count{route="blog"}': 2,
        'corral_proxy_origin_latency_seconds_bucket{route="blog",le="+Inf"}': 2,
        'corral_proxy_objects{route="blog"}': 2,  # the vary record and the object
    }
    for series, want in expect.items():
        assert value(text, series) == want, series
    assert value(text, 'corral_proxy_bytes{route="blog"}') > 0
    assert value(text, 'corral_proxy_coalesced_total{route="blog"}') == 0
    assert "# TYPE corral_proxy_origin_latency_seconds histogram" in text
    assert 'corral_proxy_connections' in text
    assert re.search(r'^corral_cache_hits_total\{prefix="blog"\} \d+$', text, re.M)


def test_metrics_count_errors_and_purges(origin, proxy):
    px = proxy()
    px.get("/e")
    px.purge("/e")
    from conftest import raw_exchange
    raw_exchange(px.port, b"BROKEN\r\n\r\n")
    text = eventually(lambda: (lambda t: t if value(t, 'corral_proxy_errors_total{route="default"}')
                               == 1 else None)(px.metrics()), what="the error counted")
    assert value(text, 'corral_proxy_purge_requests_total{kind="url"}') == 1
    assert value(text, 'corral_proxy_purges_total{route="default"}') == 1
