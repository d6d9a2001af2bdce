"""corral: libcorral for Python.

``corral.Cache(url)`` is a handle on one libcorral cache (``mem://`` or ``redis://``); values
are bytes, TTLs seconds. ``corral.django.CorralCache`` is the Django cache backend built on it.
Every semantic (single flight, leases, XFetch, tags, metrics) lives in the C library.
"""
from ._corral import (  # noqa: F401
    Cache,
    Error,
    fragment_key,
    strerror,
    __libcorral_version__,
    OK, MISS, EXISTS, STALE, EINVAL, ENOMEM, EBADKEY, ETOOBIG, ENOTINT, ERANGE, EBADURL,
    ESTORE, ENOTSUP, ETIMEDOUT, EFORMAT,
)

__version__ = __libcorral_version__
__all__ = ["Cache", "Error", "fragment_key", "strerror"]
