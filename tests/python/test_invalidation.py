"""Tags, namespaces and bust_on through the Django backend: a save busts what the rule names."""
import pytest
from django.core.cache import caches
from django.db.models.signals import post_save

import corral
from corral.django import bust_on


class Product:
    """Stands in for a model instance: bust_on reads pk and _meta's concrete fields."""

    class _meta:
        concrete_fields = []

    def __init__(self, pk, featured):
        self.pk, self.is_featured = pk, featured


def test_tags_bust_every_value_that_carries_them(flush):
    cache = caches["tagged"]  # serializer "corral": values carry their tags
    cache.set("card:1", "a", tags=["category:3"])
    cache.set("card:2", "b", tags=["category:4"])
    cache.bust_tag("category:3")
    assert cache.get("card:1") is None and cache.get("card:2") == "b"


def test_tags_on_djangos_wire_format_are_refused_not_lost(flush):
    with pytest.raises(corral.Error) as e:
        caches["redis"].set("card:1", "a", tags=["category:3"])
    assert e.value.code == corral.ENOTSUP


def test_namespaces_bump_in_one_call(flush):
    for alias in ("default", "redis"):
        cache = caches[alias]
        cache.set("list", [1], ns="products")
        cache.bump_namespace("products")
        assert cache.get("list", ns="products") is None


def test_bust_on_deletes_the_keys_a_save_names_when_the_rule_says_so(flush):
    cache = caches["redis"]
    receiver = bust_on(post_save, Product, keys=["product:{pk}", "featured_products"],
                       when=lambda p, created=False, **kw: p.is_featured or created,
                       cache="redis")
    try:
        cache.set("product:7", "page")
        cache.set("featured_products", [7])
        post_save.send(Product, instance=Product(7, False), created=False)
        assert cache.get("product:7") == "page"
        post_save.send(Product, instance=Product(7, True), created=False)
        assert cache.get("product:7") is None and cache.get("featured_products") is None
        # On Redis every process sees it: django-redis reads nothing either.
        assert caches["django_redis"].get("product:7") is None
    finally:
        post_save.disconnect(receiver, sender=Product)
