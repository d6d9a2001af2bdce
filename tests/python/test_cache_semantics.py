"""Django's cache semantics through corral's backend, case by case: the behaviours Django's own
cache tests (tests/cache/tests.py, BaseCacheTests) assert, in our words, on the memory store,
on Redis, and on Redis with the near cache."""
import datetime
import time
import urllib.parse
import warnings

import pytest
import redis as redis_py
from django.core.cache import CacheKeyWarning, caches

from conftest import REDIS
from corral.django import CorralCache

# "redis_py" is "redis" with the fast path off: the backend's Python methods (test_fast_path.py
# compares the two paths call by call).
ALIASES = ["default", "redis", "near", "redis_py"]


def redis_db(cache):
    """The Redis database of a backend, or None on the memory store."""
    url = urllib.parse.urlsplit(cache._url)
    return int(url.path.lstrip("/")) if url.scheme == "redis" else None


@pytest.fixture(params=ALIASES)
def cache(request, flush):
    return caches[request.param]


def eventually(check, deadline_s=10.0):
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)  # polling interval while time passes a TTL, not a wait for an effect
    return True


def test_get_returns_what_set_stored_and_default_on_a_miss(cache):
    cache.set("k", "v")
    assert cache.get("k") == "v"
    assert cache.get("absent") is None
    assert cache.get("absent", "dflt") == "dflt"


def test_none_is_a_value_that_is_stored(cache):
    cache.set("none", None)
    assert cache.get("none", "dflt") is None
    assert cache.has_key("none")


def test_add_stores_only_when_absent(cache):
    assert cache.add("k", "first") is True
    assert cache.add("k", "second") is False
    assert cache.get("k") == "first"


def test_delete_and_has_key_and_in(cache):
    cache.set("k", 1)
    assert cache.has_key("k") and "k" in cache
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert not cache.has_key("k") and "k" not in cache


def test_incr_and_decr_keep_ints_and_refuse_a_missing_key(cache):
    cache.set("n", 1)
    assert cache.incr("n") == 2
    assert cache.incr("n", 10) == 12
    assert cache.decr("n") == 11
    assert cache.decr("n", 10) == 1
    assert cache.get("n") == 1
    with pytest.raises(ValueError):
        cache.incr("absent")
    with pytest.raises(ValueError):
        cache.decr("absent")


@pytest.mark.parametrize("value", [
    {"a": [1, 2.5, "x"], "b": None}, [1, "2"], 3.25, "text é", b"\x00\xffbytes", True, 0, -7,
    2 ** 70, datetime.datetime(2026, 12, 6, 17, 0), ("t", 1), frozenset({1}),
])
def test_python_values_round_trip(cache, value):
    cache.set("v", value)
    got = cache.get("v")
    assert got == value and type(got) is type(value)


def test_unicode_keys_and_values(cache):
    cache.set("ключ-é-鍵", "значение")
    assert cache.get("ключ-é-鍵") == "значение"


def test_get_many_returns_only_the_hits_under_the_callers_keys(cache):
    cache.set_many({"a": 1, "b": "two", "c": [3]})
    assert cache.get_many(["a", "b", "missing"]) == {"a": 1, "b": "two"}
    assert cache.get_many([]) == {}


def test_set_many_returns_no_failed_keys_and_delete_many_removes(cache):
    assert cache.set_many({"a": 1, "b": 2}) == []
    cache.delete_many(["a", "b", "never"])
    assert cache.get_many(["a", "b"]) == {}


def test_clear_removes_everything(cache):
    cache.set_many({"a": 1, "b": 2})
    cache.clear()
    assert cache.get("a") is None and cache.get("b") is None


def test_timeout_expires_the_value(cache):
    cache.set("short", "v", 0.05)
    cache.add("short_add", "v", 0.05)
    assert eventually(lambda: cache.get("short") is None and cache.get("short_add") is None)


def test_timeout_zero_stores_nothing_and_removes_the_old_value(cache):
    cache.set("k", "old")
    cache.set("k", "new", 0)
    assert cache.get("k") is None
    cache.set("neg", "v", -1)
    assert cache.get("neg") is None


def test_timeout_none_never_expires(cache):
    cache.set("forever", "v", None)
    assert cache.get("forever") == "v"
    if redis_db(cache) is not None:
        r = redis_py.Redis(port=REDIS["port"], db=redis_db(cache))
        assert r.pttl(cache.make_key("forever")) == -1


def test_default_timeout_applies(cache):
    cache.set("k", "v")
    if redis_db(cache) == 1:
        r = redis_py.Redis(port=REDIS["port"], db=1)
        assert 299_000 < r.pttl("djzen:1:k") <= 300_000


def test_touch_sets_a_new_timeout_and_reports_absence(cache):
    cache.set("k", "v", 0.05)
    assert cache.touch("k", None) is True
    assert cache.touch("absent") is False
    cache.set("t", "v", None)
    assert cache.touch("t", 0.05) is True
    assert eventually(lambda: cache.get("t") is None)
    assert cache.get("k") == "v"


def test_versions_are_separate_keys(cache):
    cache.set("k", "v1", version=1)
    cache.set("k", "v2", version=2)
    assert cache.get("k") == "v1"
    assert cache.get("k", version=2) == "v2"
    assert cache.get_many(["k"], version=2) == {"k": "v2"}
    assert cache.has_key("k", version=2)
    cache.delete("k", version=2)
    assert cache.get("k", version=2) is None and cache.get("k") == "v1"
    cache.set("n", 1, version=3)
    assert cache.incr("n", version=3) == 2 and cache.get("n") is None


def test_incr_version_moves_the_value(cache):
    cache.set("k", "v")
    assert cache.incr_version("k") == 2
    assert cache.get("k") is None
    assert cache.get("k", version=2) == "v"
    assert cache.decr_version("k", version=2) == 1
    assert cache.get("k") == "v"
    with pytest.raises(ValueError):
        cache.incr_version("absent")


def test_keys_memcached_refuses_warn_and_still_work(cache):
    for key in ("key with spaces", "k" * 300, "tab\tkey"):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            cache.set(key, "v")
        assert any(issubclass(x.category, CacheKeyWarning) for x in w), key
        assert cache.get(key) == "v"


def test_keys_memcached_accepts_do_not_warn(cache):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.set("plain:key-é", "v")
        assert cache.get("plain:key-é") == "v"


def test_get_or_set_with_a_value_and_with_a_callable(cache):
    assert cache.get_or_set("k", "dflt") == "dflt"
    assert cache.get_or_set("k", "other") == "dflt"
    assert cache.get_or_set("c", lambda: {"made": 1}) == {"made": 1}
    assert cache.get_or_set("c", lambda: {"made": 2}) == {"made": 1}
    assert cache.get_or_set("v", lambda: "v2", version=2) == "v2"
    assert cache.get("v", version=2) == "v2" and cache.get("v") is None


def test_get_or_set_timeout_zero_returns_the_value_and_caches_nothing(cache):
    assert cache.get_or_set("z", lambda: "made", 0) == "made"
    assert cache.get("z") is None


def test_close_keeps_the_cache_usable(cache):
    cache.set("k", "v")
    cache.close()
    assert cache.get("k") == "v"


def test_key_prefix_and_version_make_djangos_physical_keys(flush):
    caches["redis"].set("featured_products:v3", [1])
    r = redis_py.Redis(port=REDIS["port"], db=1)
    assert r.exists("djzen:1:featured_products:v3")
    assert caches["redis"].make_key("featured_products:v3") == "djzen:1:featured_products:v3"


def test_a_custom_key_function_makes_the_keys():
    def key_func(key, key_prefix, version):
        return "custom-%s-%s-%s" % (key_prefix, version, key)

    url = "redis://127.0.0.1:%d/4" % REDIS["port"]
    c = CorralCache(url, {"KEY_PREFIX": "kp", "VERSION": 7, "KEY_FUNCTION": key_func})
    c.set("k", "v")
    r = redis_py.Redis(port=REDIS["port"], db=4)
    assert r.exists("custom-kp-7-k")
    assert c.get("k") == "v"


def test_every_backend_object_of_a_process_shares_one_store():
    a = CorralCache("mem://?max_memory=8MB", {"KEY_PREFIX": "shared"})
    b = CorralCache("mem://?max_memory=8MB", {"KEY_PREFIX": "shared"})
    a.set("k", "v")
    assert b.get("k") == "v"
