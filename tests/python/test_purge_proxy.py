"""corral.django.purge against the real corral-proxy (the binary CMake names in $CORRAL_PROXY)
in front of the end-to-end tests' origin (tests/e2e/origin.py), both on free ports: each kind
of purge empties what it names and nothing else, and a refused or unreachable admin listener
raises PurgeError."""
import importlib.util
import os

import pytest
from django.test import override_settings

from corral.django import purge
from corral.django.proxy import PurgeError

_E2E = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e")
_spec = importlib.util.spec_from_file_location("e2e_support", os.path.join(_E2E, "conftest.py"))
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)

TAGGED = {"Cache-Control": "max-age=60", "Surrogate-Key": "product:42 products"}


@pytest.fixture
def origin():
    o = e2e.Origin()
    yield o
    o.stop()


@pytest.fixture
def proxy(origin, tmp_path):
    started = []

    def start(**kw):
        p = e2e.Proxy(origin.port, str(tmp_path), **kw)
        started.append(p)
        return p

    yield start
    codes = [(p.stop(), p.errors()) for p in started]
    assert all(rc == 0 for rc, _ in codes), codes


def admin_url(px):
    return "http://127.0.0.1:%d" % px.admin_port


def cached(px, *paths):
    return [px.get(p).cache for p in paths]


def test_purge_by_surrogate_key_empties_the_tagged_pages_only(origin, proxy):
    origin.script("/p/42", headers=TAGGED)
    origin.script("/p/43", headers={"Cache-Control": "max-age=60", "Surrogate-Key": "product:43"})
    px = proxy()
    assert cached(px, "/p/42", "/p/43") == ["MISS", "MISS"]
    assert cached(px, "/p/42", "/p/43") == ["HIT", "HIT"]
    with override_settings(CORRAL_PROXY_ADMIN=admin_url(px)):
        assert purge(key="product:42").startswith("purged")
    assert cached(px, "/p/42", "/p/43") == ["MISS", "HIT"]
    assert origin.count("/p/42") == 2


def test_purge_by_url_sends_the_sites_host(origin, proxy):
    px = proxy()
    px.get("/about")
    body = purge(url="http://127.0.0.1:%d/about" % px.port, admin=admin_url(px))
    assert body == "purged 1\n"
    assert cached(px, "/about") == ["MISS"]


def test_purge_by_prefix_empties_the_paths_under_it(origin, proxy):
    px = proxy()
    for p in ("/blog/1", "/blog/2024/post", "/news/1"):
        px.get(p)
    assert purge(prefix="/blog", admin=admin_url(px)).startswith("purged")
    assert cached(px, "/blog/1", "/blog/2024/post", "/news/1") == ["MISS", "MISS", "HIT"]


def test_purge_sends_the_admin_token_and_a_refusal_raises(origin, proxy):
    px = proxy(args=["--admin-token", "s3cret"])
    px.get("/t")
    with pytest.raises(PurgeError) as refused:
        purge(url="http://127.0.0.1:%d/t" % px.port, admin=admin_url(px), token="wrong")
    assert refused.value.args[0] == 401
    assert cached(px, "/t") == ["HIT"]
    with override_settings(CORRAL_PROXY_ADMIN=admin_url(px), CORRAL_PROXY_ADMIN_TOKEN="s3cret"):
        assert purge(url="http://127.0.0.1:%d/t" % px.port) == "purged 1\n"
    assert cached(px, "/t") == ["MISS"]


def test_purge_of_an_unreachable_listener_raises():
    with pytest.raises(PurgeError) as e:
        purge(key="k", admin="http://127.0.0.1:%d" % e2e.free_port(), timeout=2)
    assert e.value.args[0] == 0


def test_purge_needs_exactly_one_target():
    with pytest.raises(ValueError):
        purge(key="a", prefix="/b", admin="http://127.0.0.1:1")
    with pytest.raises(ValueError):
        purge(admin="http://127.0.0.1:1")
