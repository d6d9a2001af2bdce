"""corral for Django: a ``CACHES`` backend over libcorral, and the guide's tools around it.

    CACHES = {"default": {"BACKEND": "corral.django.CorralCache",
                          "LOCATION": "redis://127.0.0.1:6379/1?near_cache=64MB",
                          "KEY_PREFIX": "djzen", "VERSION": 1, "TIMEOUT": 300,
                          "OPTIONS": {"stale_ttl": 30, "beta": 1.0}}}

- ``CorralCache``: Django's whole cache API with Django's semantics (``{% cache %}``,
  ``cache_page``, the per-site middleware and cached sessions work unchanged). Keys are made by
  libcorral with Django's scheme (``KEY_PREFIX:VERSION:key``), or by your ``KEY_FUNCTION``.
  On Redis, values are stored as Django's Redis backends store them (ints as their digits,
  everything else pickled), so django-redis and corral read each other's keys.
- ``get_or_set`` with a callable runs it once per key however many threads, processes and
  machines miss at once (single flight, a lease in the store, XFetch early refresh, grace and
  stale-if-error from ``OPTIONS`` or per call). ``set(..., tags=[...])``, ``bust_tag``,
  namespaces (``ns=``, ``bump_namespace``).
- ``bust_on(post_save, Product, keys=["product:{pk}"], tags=[...], when=...)``.
- ``metrics`` (a view: the Prometheus text of every corral cache of the process), the
  ``corral_stats`` management command (add ``"corral.django"`` to ``INSTALLED_APPS``).
- ``surrogate_keys`` (view decorator) with ``SurrogateKeyMiddleware``, and ``purge()``, which
  calls corral-proxy's admin listener.

OPTIONS: ``stale_ttl``, ``stale_if_error``, ``beta``, ``jitter``, ``wait_timeout`` (seconds),
``background`` (bool: refresh on corral's threads; these are the defaults for get_or_set),
``pickle_protocol`` (default pickle.HIGHEST_PROTOCOL; django-redis's ``PICKLE_VERSION`` is read
too), ``serializer`` (Redis only: ``"django"``, the default, is Django's format with no
envelope, so tags, grace, stale-if-error and XFetch need ``"corral"``, which only corral
reads), ``fast_path`` (default True: get, set and get_many are one C call each; False keeps
them in Python, for comparison).
"""
import pickle
import threading
import urllib.parse

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

import corral
from corral import _corral

__all__ = ["CorralCache", "bust_on", "metrics", "purge", "surrogate_keys",
           "SurrogateKeyMiddleware"]

_MISSING = object()

# One libcorral handle per distinct configuration, shared by the backend objects Django makes
# (one per thread): a memory store must be one store for the whole process.
_handles_lock = threading.Lock()
_handles = {}


def _handle(url, key_function):
    ident = (url, key_function)
    with _handles_lock:
        h = _handles.get(ident)
        if h is None:
            h = corral.Cache(url, key_function=key_function)
            _handles[ident] = h
        return h


def _add_params(location, params):
    """LOCATION with the query parameters in `params` added (those it has are kept)."""
    base, _, query = location.partition("?")
    have = {p.split("=", 1)[0] for p in query.split("&") if p}
    extra = ["%s=%s" % (k, urllib.parse.quote(str(v), safe="")) for k, v in params.items()
             if k not in have]
    query = "&".join([q for q in [query] + extra if q])
    return base + ("?" + query if query else "")


class CorralCache(BaseCache):
    """Django's cache API over one libcorral handle."""

    def __init__(self, location, params):
        super().__init__(params)
        options = dict(params.get("OPTIONS") or {})
        self._protocol = options.get("pickle_protocol",
                                     options.get("PICKLE_VERSION", pickle.HIGHEST_PROTOCOL))
        if self._protocol == -1:
            self._protocol = pickle.HIGHEST_PROTOCOL
        self._load_defaults = {
            "stale_ttl": options.get("stale_ttl", 0),
            "stale_if_error": options.get("stale_if_error", 0),
            "beta": float(options.get("beta", 1.0)),
            "jitter": float(options.get("jitter", 0.0)),
            "wait_timeout": options.get("wait_timeout", 10.0),
            "background": bool(options.get("background", False)),
        }
        location = location or "mem://"
        extra = {"key_prefix": self.key_prefix, "version": self.version}
        if location.startswith("redis"):
            serializer = options.get("serializer", "django")
            if serializer not in ("django", "corral"):
                raise ValueError("OPTIONS serializer: 'django' or 'corral'")
            extra["serializer"] = "bare" if serializer == "django" else "raw"
        extra["binary_keys"] = 1  # every key Django's backends take (spaces, long keys)
        custom = params.get("KEY_FUNCTION")
        self._url = _add_params(location, extra)
        self._c = _handle(self._url, self.key_func if custom else None)
        self._hdr_len = len(self.key_prefix) + len(str(self.version)) + 2
        self._prefix_ok = not any(ord(ch) < 33 or ord(ch) == 127 for ch in self.key_prefix)
        if not custom and options.get("fast_path", True):
            self._bind_fast_path()

    def _bind_fast_path(self):
        """Makes get, set and get_many one C call each (corral._corral.DjangoOps), unless a
        subclass overrides them, or what they stand on (keys, warnings, encoding). The C path
        takes the calls where it provably does what the Python methods below do, and hands the
        rest (keys Django warns about, tags, odd arguments) to them."""
        cls = CorralCache
        if any(getattr(type(self), name) is not getattr(cls, name)
               for name in ("_key", "_encode", "_decode", "make_key", "validate_key")):
            return
        ops = _corral.DjangoOps(self._c, self.key_prefix, self.version, self._protocol,
                                self.default_timeout, DEFAULT_TIMEOUT, cls.get.__get__(self),
                                cls.set.__get__(self), cls.get_many.__get__(self))
        for name in ("get", "set", "get_many"):
            if getattr(type(self), name) is getattr(cls, name):
                setattr(self, name, getattr(ops, name))

    # ---- values: Django's Redis wire format ----

    def _encode(self, value):
        if type(value) is int:
            return b"%d" % value
        return pickle.dumps(value, self._protocol)

    def _decode(self, data):
        if data[:1] == b"\x80":
            return pickle.loads(data)
        try:
            return int(data)
        except ValueError:
            return pickle.loads(data)

    # ---- keys ----

    def _key(self, key, version):
        """The user key for libcorral, with Django's warnings where Django warns."""
        if type(key) is not str:
            key = str(key)
        if (len(key) + self._hdr_len > 240 or not key.isprintable() or " " in key
                or (version is not None and version != self.version) or not self._prefix_ok):
            self.validate_key(self.make_key(key, version=version))
        return key

    def _ttl(self, timeout):
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        return timeout if timeout > 0 else 0

    # ---- Django's API ----

    def get(self, key, default=None, version=None, ns=None):
        data = self._c.get(self._key(key, version), version=version, ns=ns)
        return default if data is None else self._decode(data)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, tags=None, ns=None):
        self._c.set(self._key(key, version), self._encode(value), self._ttl(timeout),
                    version=version, tags=tags, ns=ns)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, tags=None, ns=None):
        return self._c.add(self._key(key, version), self._encode(value), self._ttl(timeout),
                           version=version, tags=tags, ns=ns)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None, ns=None):
        return self._c.touch(self._key(key, version), self._ttl(timeout), version=version, ns=ns)

    def delete(self, key, version=None, ns=None):
        return self._c.delete(self._key(key, version), version=version, ns=ns)

    def has_key(self, key, version=None, ns=None):
        return self._c.has(self._key(key, version), version=version, ns=ns)

    def get_many(self, keys, version=None, ns=None):
        made = {self._key(k, version): k for k in keys}
        found = self._c.get_many(list(made), version=version, ns=ns)
        return {made[k]: self._decode(v) for k, v in found.items()}

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None, tags=None, ns=None):
        self._c.set_many({self._key(k, version): self._encode(v) for k, v in data.items()},
                         self._ttl(timeout), version=version, tags=tags, ns=ns)
        return []

    def delete_many(self, keys, version=None, ns=None):
        self._c.delete_many([self._key(k, version) for k in keys], version=version, ns=ns)

    def incr(self, key, delta=1, version=None, ns=None):
        try:
            return self._c.incr(self._key(key, version), delta, version=version, ns=ns)
        except KeyError:
            raise ValueError("Key '%s' not found" % key) from None
        except corral.Error as e:
            if e.code in (corral.ENOTINT, corral.ERANGE):
                raise ValueError("Key '%s': %s" % (key, e.reason)) from None
            raise

    def incr_version(self, key, delta=1, version=None):
        if delta == 0:  # Django would set the key and delete it again
            self.delete(key, version=version)
            return version if version is not None else self.version
        try:
            return self._c.incr_version(self._key(key, version), delta, version=version)
        except KeyError:
            raise ValueError("Key '%s' not found" % key) from None

    def clear(self):
        """Django's clear: on Redis, FLUSHDB of the database (as Django's Redis backends)."""
        self._c.clear()

    def close(self, **kwargs):
        """Called by Django after every request: the handle is shared and stays open."""

    def get_or_set(self, key, default, timeout=DEFAULT_TIMEOUT, version=None, **load):
        """Django's get_or_set; with a callable, the producer runs once per key however many
        callers miss at once (threads, processes, machines). Extra keywords: stale_ttl, beta,
        stale_if_error, jitter, wait_timeout (seconds), background (early refreshes and those
        in grace run on corral's refresh threads; callers keep the value they have); OPTIONS
        give the defaults; tags, ns."""
        k = self._key(key, version)
        if not callable(default):
            value = self.get(key, _MISSING, version=version, ns=load.get("ns"))
            if value is _MISSING:
                self.add(key, default, timeout, version=version,
                         tags=load.get("tags"), ns=load.get("ns"))
                return self.get(key, default, version=version, ns=load.get("ns"))
            return value
        opts = dict(self._load_defaults)
        opts.update(load)
        data = self._c.get_or_set(k, lambda: self._encode(default()), self._ttl(timeout),
                                  version=version, **opts)
        return self._decode(data)

    # ---- corral's invalidation ----

    def bust_tag(self, tag):
        """Invalidates every value set with `tag`, in O(1)."""
        self._c.tag_bust(tag)

    def bump_namespace(self, ns):
        """Makes every key set with ns=`ns` unreachable, in O(1)."""
        self._c.ns_bump(ns)

    @property
    def corral(self):
        """The libcorral handle (corral.Cache) under this backend."""
        return self._c

    def metrics(self):
        return self._c.metrics()

    def stats(self):
        return self._c.stats()


def _corral_caches():
    """The configured CACHES aliases that use this backend, with their backends."""
    from django.conf import settings
    from django.core.cache import caches

    return [(alias, caches[alias]) for alias, conf in settings.CACHES.items()
            if conf.get("BACKEND") == "corral.django.CorralCache"]


def metrics_text():
    """The Prometheus text of every corral cache in CACHES, each sample labelled with its
    alias (cache="default"); HELP and TYPE lines once per metric."""
    seen_handles, seen_meta, out = set(), set(), []
    for alias, backend in _corral_caches():
        if id(backend._c) in seen_handles:
            continue
        seen_handles.add(id(backend._c))
        label = 'cache="%s"' % alias.replace("\\", "\\\\").replace('"', '\\"')
        for line in backend.metrics().splitlines():
            if not line:
                continue
            if line.startswith("#"):
                if line not in seen_meta:
                    seen_meta.add(line)
                    out.append(line)
                continue
            name, sep, rest = line.partition("{")
            if sep:
                out.append("%s{%s,%s" % (name, label, rest))
            else:
                name, _, value = line.partition(" ")
                out.append("%s{%s} %s" % (name, label, value))
    return "\n".join(out) + "\n"


def metrics(request):
    """A view: metrics_text() as text/plain for Prometheus."""
    from django.http import HttpResponse

    return HttpResponse(metrics_text(), content_type="text/plain; version=0.0.4; charset=utf-8")


from .signals import bust_on  # noqa: E402
from .proxy import SurrogateKeyMiddleware, purge, surrogate_keys  # noqa: E402
