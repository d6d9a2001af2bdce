"""contrib/: the Grafana dashboard queries only metrics corral exports, the example proxy.ini
starts a proxy with its routes, and the systemd unit hands the admin token over as a
credential file, never on the command line."""
import json
import os
import re

from conftest import ROOT, eventually

GRAFANA = os.path.join(ROOT, "contrib", "grafana", "corral.json")
EXAMPLE_INI = os.path.join(ROOT, "contrib", "proxy.ini")
UNIT = os.path.join(ROOT, "contrib", "systemd", "corral-proxy.service.in")


def exported(text):
    """{name: type} from the # TYPE lines of a Prometheus text."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def queries(dash):
    """Every PromQL expression of the dashboard: panel targets and template queries."""
    out = []
    for p in dash["panels"]:
        out += [t["expr"] for t in p.get("targets", [])]
    for v in dash["templating"]["list"]:
        if isinstance(v.get("query"), dict):
            out.append(v["query"]["query"])
    return out


def unknown_names(exprs, types):
    bad = set()
    for e in exprs:
        for name in re.findall(r"\b(corral_[a-z0-9_]+)\b", e):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name in types or (base != name and types.get(base) == "histogram"):
                continue
            bad.add(name)
    return bad


def test_every_metric_the_grafana_dashboard_queries_is_one_corral_exports(origin, proxy):
    with open(GRAFANA) as f:
        dash = json.load(f)
    px = proxy(config="[route:blog]\nprefix = /blog/\n")
    px.get("/blog/1")
    px.get("/blog/1")
    text = eventually(lambda: (lambda t: t if "corral_proxy_origin_latency_seconds_bucket" in t
                               else None)(px.metrics()), what="a scrape with the histograms")
    types = exported(text)
    exprs = queries(dash)
    assert len(exprs) >= 20
    assert not unknown_names(exprs, types), unknown_names(exprs, types)
    # The check can fail: a misspelt name is caught.
    assert unknown_names(['rate(corral_proxy_hit_total[5m])'], types) == {"corral_proxy_hit_total"}
    # What the issue asks to see: hit rate per route and per prefix, loads, stale, evictions,
    # memory, origin latency.
    used = " ".join(exprs)
    for name in ("corral_proxy_hits_total", "corral_cache_hits_total", "corral_cache_loads_total",
                 "corral_proxy_stale_total", "corral_cache_evictions_total",
                 "corral_store_used_bytes", "corral_proxy_origin_latency_seconds_bucket"):
        assert name in used, name
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_the_example_proxy_ini_starts_a_proxy_with_its_routes(origin, proxy):
    with open(EXAMPLE_INI) as f:
        config = f.read()
    # The test's flags (origin, listen, admin, access log) override the file's.
    px = proxy(config=config)
    assert px.get("/blog/x").status == 200
    text = px.metrics()
    for route in ("static", "blog", "account", "default"):
        assert 'corral_proxy_requests_total{route="%s"}' % route in text, route
    assert 'corral_proxy_requests_total{route="blog"} 1' in text


def test_issue_12_the_systemd_unit_passes_the_token_as_a_credential_file():
    with open(UNIT) as f:
        lines = [l.strip() for l in f if not l.startswith("#")]
    cred = [l for l in lines if l.startswith("LoadCredential=")]
    assert cred == ["LoadCredential=admin-token:/etc/corral/admin-token"]
    start = [l for l in lines if l.startswith("ExecStart=")]
    assert len(start) == 1 and start[0].endswith(" --admin-token-file %d/admin-token"), start
    assert "--admin-token " not in start[0] and "admin_token=" not in start[0]
