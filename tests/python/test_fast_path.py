"""The backend's fast path (corral._corral.DjangoOps: get, set and get_many as one C call each)
against the Python methods it stands for: the same calls on a backend with the fast path and
one without give the same results, the same exceptions and the same CacheKeyWarnings. Edges the
C takes itself (defaults, versions, ns, ints raw, Django's key limits to the character) and
edges it hands to Python (keys Django warns about, non-str keys, tags, iterators, odd
arguments, a custom KEY_FUNCTION, a subclass's own get) are each here."""
import json
import pickle
import types
import warnings

import pytest
from django.core.cache import CacheKeyWarning, caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT

from conftest import redis_url
from corral.django import CorralCache


def backend(fast, prefix="fp", **params):
    # Different URLs, so the two backends have stores of their own.
    url = "mem://?max_memory=%dMB" % (8 if fast else 9)
    params = dict({"KEY_PREFIX": prefix}, **params)
    params["OPTIONS"] = dict(params.get("OPTIONS", {}), fast_path=fast)
    c = CorralCache(url, params)
    c.clear()
    return c


def outcome(cache, op, *args, **kw):
    """What a call did: ("ok", result) or ("raised", exception type), and its warnings."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            r = ("ok", getattr(cache, op)(*args, **kw))
        except Exception as e:  # noqa: BLE001 - compared between the two paths
            r = ("raised", type(e))
    return r, [str(x.message) for x in w if issubclass(x.category, CacheKeyWarning)]


# Each case: a list of calls (op, args, kwargs), run in order on both backends. (ITER, list) as
# the arguments stands for a fresh iterator over the list.
ITER = object()
LONG_OK = "k" * (250 - len("fp:1:"))  # a made key of exactly 250 characters: no warning
CASES = {
    "default on a miss": [("get", ("absent",), {}), ("get", ("absent", "dflt"), {}),
                          ("get", ("absent",), {"default": 0})],
    "None is a value": [("set", ("n", None), {}), ("get", ("n", "dflt"), {})],
    "versions": [("set", ("k", "v1"), {}), ("set", ("k", "v2"), {"version": 2}),
                 ("get", ("k",), {}), ("get", ("k", None, 2), {}),
                 ("get", ("k",), {"version": 2}), ("get", ("k",), {"version": 1}),
                 ("get_many", (["k"],), {"version": 2}),
                 ("set", ("neg", "v"), {"version": -3}), ("get", ("neg",), {"version": -3})],
    "ints are raw, the rest pickled": [("set", ("i", 42), {}), ("get", ("i",), {}),
                                       ("set", ("b", True), {}), ("get", ("b",), {}),
                                       ("set", ("big", 2 ** 70), {}), ("get", ("big",), {}),
                                       ("set", ("f", 1.5), {}), ("get", ("f",), {}),
                                       ("set", ("s", "12"), {}), ("get", ("s",), {}),
                                       ("incr", ("i",), {}), ("get", ("i",), {})],
    "timeouts": [("set", ("t0", "v", 0), {}), ("get", ("t0",), {}),
                 ("set", ("tn", "v", None), {}), ("get", ("tn",), {}),
                 ("set", ("td", "v", DEFAULT_TIMEOUT), {}), ("get", ("td",), {}),
                 ("set", ("tneg", "v"), {"timeout": -1}), ("get", ("tneg",), {}),
                 ("set", ("tf", "v", 30.5), {}), ("get", ("tf",), {}),
                 ("set", ("tbad", "v", "soon"), {})],
    "keys Django warns about still work": [
        ("set", ("with space", 1), {}), ("get", ("with space",), {}),
        ("set", ("tab\tkey", 1), {}), ("get", ("tab\tkey",), {}),
        ("set", ("del\x7fkey", 1), {}), ("get", ("del\x7fkey",), {}),
        ("set", (LONG_OK, 1), {}), ("get", (LONG_OK,), {}),
        ("set", (LONG_OK + "k", 1), {}), ("get", (LONG_OK + "k",), {}),
        ("get", (LONG_OK,), {"version": 10}),
        ("set", ("é" * 245, 1), {}), ("get", ("é" * 245,), {}),
        ("set", ("ключ-鍵", 1), {}), ("get", ("ключ-鍵",), {}),
        ("get_many", (["ok", "with space", LONG_OK + "k"],), {})],
    "non-str keys": [("set", (42, "v"), {}), ("get", ("42",), {}), ("get", (42,), {}),
                     ("get_many", ([42, "42"],), {})],
    "namespaces": [("set", ("k", "in ns"), {"ns": "products"}), ("get", ("k",), {}),
                   ("get", ("k",), {"ns": "products"}),
                   ("get_many", (["k"],), {"ns": "products"})],
    "get_many takes lists, tuples, iterators": [
        ("set_many", ({"a": 1, "b": [2]},), {}), ("get_many", (["a", "b", "c"],), {}),
        ("get_many", (("a", "a"),), {}), ("get_many", (ITER, ["b"]), {}),
        ("get_many", ([],), {})],
    "odd arguments raise as in Python": [
        ("get", (), {}), ("get", ("k",), {"nope": 1}), ("get", ("k", None, 1, None, 5), {}),
        ("get", ("k",), {"key": "k"}), ("set", ("k",), {}), ("get", ("k",), {"version": "2"}),
        ("get", ("k",), {"version": 2.5}), ("get", ("k",), {"ns": 3}),
        ("get_many", ("ab",), {}), ("set", ("k", object()), {})],
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_fast_path_does_what_the_python_methods_do(case):
    fast, slow = backend(True), backend(False)
    for op, args, kw in CASES[case]:
        def call(cache):
            if args and args[0] is ITER:
                return outcome(cache, op, iter(args[1]), **kw)
            return outcome(cache, op, *args, **kw)

        got_fast, got_slow = call(fast), call(slow)
        assert got_fast == got_slow, (op, args, kw)


def test_the_fast_path_is_one_c_call_and_off_when_asked():
    assert isinstance(backend(True).get, types.BuiltinMethodType)
    assert isinstance(backend(True).get_many, types.BuiltinMethodType)
    assert isinstance(backend(False).get, types.MethodType)
    assert isinstance(caches["redis"].set, types.BuiltinMethodType)


def test_a_custom_key_function_keeps_the_python_path():
    c = backend(True, KEY_FUNCTION=lambda key, prefix, version: "x-%s-%s" % (version, key))
    assert isinstance(c.get, types.MethodType)
    c.set("k", "v")
    assert c.get("k") == "v" and c.corral.make_key("k") == "x-1-k"


def test_a_subclass_keeps_its_own_get():
    class Counting(CorralCache):
        calls = 0

        def get(self, key, default=None, version=None, ns=None):
            Counting.calls += 1
            return super().get(key, default, version, ns)

    c = Counting("mem://?max_memory=8MB", {"KEY_PREFIX": "sub"})
    c.set("k", "v")  # set is not overridden: the C path
    assert isinstance(c.set, types.BuiltinMethodType)
    assert c.get("k") == "v" and Counting.calls == 1


def test_a_subclass_with_its_own_encoding_keeps_the_python_path():
    class Json(CorralCache):
        def _encode(self, value):
            return json.dumps(value).encode()

        def _decode(self, data):
            return json.loads(data)

    c = Json("mem://?max_memory=8MB", {"KEY_PREFIX": "json"})
    assert isinstance(c.get, types.MethodType) and isinstance(c.set, types.MethodType)
    c.set("k", {"a": 1})
    assert c.corral.get("k") == b'{"a": 1}' and c.get("k") == {"a": 1}


def test_a_key_prefix_django_warns_about_warns_for_every_key():
    for fast in (True, False):
        r, warned = outcome(backend(fast, prefix="my site"), "set", "k", 1)
        assert r == ("ok", None) and len(warned) == 1, fast


def test_values_on_the_wire_are_djangos():
    c = backend(True)
    c.set("n", 12)
    c.set("d", {"x": 1})
    assert c.corral.get("n") == b"12"
    assert c.corral.get("d") == pickle.dumps({"x": 1}, pickle.HIGHEST_PROTOCOL)
    c.corral.set("raw", b"7")  # as django-redis writes an int
    assert c.get("raw") == 7
    c.corral.set("junk", b"not a pickle")
    with pytest.raises(pickle.UnpicklingError):
        c.get("junk")


def test_tags_take_the_python_path_on_redis(flush):
    c = CorralCache(redis_url(3), {"KEY_PREFIX": "tgfp", "OPTIONS": {"serializer": "corral"}})
    c.set("k", "v", tags=["t"])
    assert c.get("k") == "v"
    c.bust_tag("t")
    assert c.get("k") is None
