"""corral and django-redis on one Redis, one database, one KEY_PREFIX: each reads what the other
wrote, byte for byte as Django's Redis backends store values (ints as digits, else pickled)."""
import pickle

import redis as redis_py
from django.core.cache import caches

from conftest import REDIS

VALUES = {"dict": {"a": [1, 2.5], "b": "é"}, "int": 42, "neg": -7, "str": "text", "none": None,
          "bytes": b"\x00\xff", "float": 1.5, "bool": True, "big": 2 ** 70}


def test_django_redis_reads_what_corral_wrote(flush):
    corral, dr = caches["redis"], caches["django_redis"]
    for k, v in VALUES.items():
        corral.set(k, v)
    corral.set("key with spaces", "spaced")
    for k, v in VALUES.items():
        got = dr.get(k)
        assert got == v and type(got) is type(v), k
    assert dr.get("key with spaces") == "spaced"
    assert dr.incr("int") == 43  # a raw int: INCR works from both sides
    assert corral.get("int") == 43


def test_corral_reads_what_django_redis_wrote(flush):
    corral, dr = caches["redis"], caches["django_redis"]
    for k, v in VALUES.items():
        dr.set(k, v)
    for k, v in VALUES.items():
        got = corral.get(k)
        assert got == v and type(got) is type(v), k
    assert corral.get_many(["dict", "int", "absent"]) == {"dict": VALUES["dict"], "int": 42}
    assert corral.incr("int", 8) == 50
    assert dr.get("int") == 50
    dr.set("v", "two", version=2)
    assert corral.get("v", version=2) == "two"


def test_the_bytes_on_the_wire_are_djangos(flush):
    caches["redis"].set("n", 12)
    caches["redis"].set("d", {"x": 1})
    r = redis_py.Redis(port=REDIS["port"], db=1)
    assert r.get("djzen:1:n") == b"12"
    assert r.get("djzen:1:d") == pickle.dumps({"x": 1}, pickle.HIGHEST_PROTOCOL)


def test_deletes_and_timeouts_cross_backends(flush):
    corral, dr = caches["redis"], caches["django_redis"]
    dr.set("k", "v", 100)
    assert corral.delete("k") is True
    assert dr.get("k") is None
    corral.set("t", "v", 100)
    assert 0 < dr.ttl("t") <= 100
