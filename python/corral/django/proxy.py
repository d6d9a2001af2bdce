"""corral-proxy from Django: Surrogate-Key headers and purges.

    @surrogate_keys("product:{pk}", "category:{category}")
    def product(request, pk, category): ...

    MIDDLEWARE = ["corral.django.SurrogateKeyMiddleware", ...]
    CORRAL_PROXY_ADMIN = "http://127.0.0.1:8081"
    CORRAL_PROXY_ADMIN_TOKEN = "s3cret"      # when the proxy has admin_token set

    purge(key="product:42")                  # POST /purge/key/product:42
    purge(url="https://shop.example/p/42")   # PURGE /p/42 with Host: shop.example
    purge(prefix="/blog/2024")               # POST /purge/prefix/blog/2024

The decorator formats its templates with the view's keyword arguments and keeps the keys on
the response; the middleware writes them, with any the view set itself, as one space-separated
``Surrogate-Key`` header, which corral-proxy turns into tags of the cached page
(docs/proxy.md, "Invalidation").
"""
import functools
import http.client
import urllib.parse

HEADER = "Surrogate-Key"


def surrogate_keys(*templates):
    """A view decorator: the response carries these surrogate keys."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            response = view(request, *args, **kwargs)
            keys = getattr(response, "corral_surrogate_keys", [])
            keys.extend(t.format(*args, **kwargs) for t in templates)
            response.corral_surrogate_keys = keys
            return response

        return wrapped

    return decorate


class SurrogateKeyMiddleware:
    """Writes the keys of @surrogate_keys into the Surrogate-Key header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        keys = getattr(response, "corral_surrogate_keys", None)
        if keys:
            have = response.get(HEADER, "").split()
            merged = have + [k for k in keys if k not in have]
            response[HEADER] = " ".join(merged)
        return response


class PurgeError(Exception):
    """The admin listener refused a purge or could not be reached (status, body)."""


def purge(key=None, url=None, prefix=None, admin=None, timeout=5.0, token=None):
    """Purges corral-proxy's page cache by surrogate key, URL or path prefix (exactly one),
    through its admin listener (`admin`, default settings.CORRAL_PROXY_ADMIN), sending the
    bearer `token` (default settings.CORRAL_PROXY_ADMIN_TOKEN, if set). Returns the answer's
    body ("purged N\n"); raises PurgeError unless the listener answers 200 (503 means retry)."""
    if sum(x is not None for x in (key, url, prefix)) != 1:
        raise ValueError("purge: exactly one of key=, url=, prefix=")
    from django.conf import settings

    if admin is None:
        admin = settings.CORRAL_PROXY_ADMIN
    if token is None and settings.configured:
        token = getattr(settings, "CORRAL_PROXY_ADMIN_TOKEN", None)
    a = urllib.parse.urlsplit(admin)
    headers = {"Authorization": "Bearer " + token} if token else {}
    if key is not None:
        method, path = "POST", "/purge/key/" + urllib.parse.quote(key, safe=":")
    elif prefix is not None:
        method, path = "POST", "/purge/prefix/" + urllib.parse.quote(prefix.lstrip("/"), safe="/")
    else:
        u = urllib.parse.urlsplit(url)
        method = "PURGE"
        path = (u.path or "/") + ("?" + u.query if u.query else "")
        if u.netloc:
            headers["Host"] = u.netloc
    conn = http.client.HTTPConnection(a.hostname, a.port or 80, timeout=timeout)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
    except OSError as e:
        raise PurgeError(0, str(e)) from e
    finally:
        conn.close()
    if resp.status != 200:
        raise PurgeError(resp.status, body)
    return body
