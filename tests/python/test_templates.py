"""Django's own caching machinery through corral's backend: cache_page and {% cache %}, with
the fragment key Django makes, and the surrogate-keys middleware and the metrics view."""
import pytest
from django.core.cache import caches
from django.core.cache.utils import make_template_fragment_key
from django.test import Client, override_settings

import urls


def test_cache_page_serves_the_second_request_from_corral(flush):
    c = Client()
    first = c.get("/page/")
    second = c.get("/page/")
    assert first.content == second.content == b"page 1"
    assert urls.rendered["page"] == 1
    assert any(k.startswith("views.decorators.cache")
               for p in caches["redis"].stats()["prefixes"] for k in [p["prefix"]])


def test_cache_tag_stores_the_fragment_under_djangos_key(flush):
    c = Client()
    before = urls.rendered["fragment"]
    a = c.get("/fragment/42/").content
    b = c.get("/fragment/42/").content
    assert a == b and urls.rendered["fragment"] == before + 1
    key = make_template_fragment_key("product_card", [42])
    assert caches["redis"].get(key) == a.decode()
    caches["redis"].delete(key)  # what a post_save receiver does
    c.get("/fragment/42/")
    assert urls.rendered["fragment"] == before + 2


@override_settings(MIDDLEWARE=["corral.django.SurrogateKeyMiddleware"])
def test_surrogate_keys_become_one_header():
    r = Client().get("/product/42/")
    assert r["Surrogate-Key"] == "product:42 products"


def test_metrics_view_serves_every_corral_cache_with_its_alias(flush):
    caches["redis"].get("featured_products")
    text = Client().get("/metrics").content.decode()
    assert 'corral_cache_misses_total{cache="redis",prefix="featured_products"}' in text
    assert text.count("# TYPE corral_cache_hits_total counter") == 1


def test_corral_stats_command_flags_a_cold_prefix(flush, capsys):
    from django.core.management import call_command

    caches["default"].get("cold:1")
    call_command("corral_stats")
    out = capsys.readouterr().out
    assert any(line.startswith("cold") and "under 90%" in line for line in out.splitlines())
