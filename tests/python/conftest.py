"""Fixtures of the Python package's tests: a real redis-server on a free port, and Django
configured with corral's backend beside LocMemCache and django-redis on that server.

The server starts when pytest configures (Django's settings need its port before any test
module imports Django's cache), keeps its files in a temporary directory, saves nothing, and is
stopped at the end. CORRAL_PYTHONPATH or PYTHONPATH points at the build tree's python/ (CMake
sets it), so `import corral` is the extension just built.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

REDIS = {}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis():
    port = free_port()
    d = tempfile.mkdtemp(prefix="corral-py-redis-")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", d, "--databases", "16"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.02)  # polling interval of a readiness loop, not a wait for an effect
    return proc, port, d


def redis_url(db, query=""):
    return "redis://127.0.0.1:%d/%d%s" % (REDIS["port"], db, query)


def pytest_configure(config):
    proc, port, d = start_redis()
    REDIS.update(proc=proc, port=port, dir=d)
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="corral-tests",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["corral.django"],
        ROOT_URLCONF="urls",
        MIDDLEWARE=[],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                    "DIRS": [], "APP_DIRS": False, "OPTIONS": {}}],
        CACHES={
            "default": {"BACKEND": "corral.django.CorralCache",
                        "LOCATION": "mem://?max_memory=64MB", "KEY_PREFIX": "t"},
            "redis": {"BACKEND": "corral.django.CorralCache", "LOCATION": redis_url(1),
                      "KEY_PREFIX": "djzen"},
            "redis_py": {"BACKEND": "corral.django.CorralCache", "LOCATION": redis_url(1),
                         "KEY_PREFIX": "djzen", "OPTIONS": {"fast_path": False}},
            "django_redis": {"BACKEND": "django_redis.cache.RedisCache",
                             "LOCATION": redis_url(1), "KEY_PREFIX": "djzen"},
            "near": {"BACKEND": "corral.django.CorralCache",
                     "LOCATION": redis_url(2, "?near_cache=8MB"), "KEY_PREFIX": "near"},
            "tagged": {"BACKEND": "corral.django.CorralCache", "LOCATION": redis_url(3),
                       "KEY_PREFIX": "tg", "OPTIONS": {"serializer": "corral"}},
            "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        },
    )
    django.setup()


def pytest_unconfigure(config):
    proc = REDIS.get("proc")
    if proc:
        proc.kill()
        proc.wait()
        shutil.rmtree(REDIS["dir"], ignore_errors=True)


@pytest.fixture
def flush():
    """Empties the test server before the test."""
    from django.core.cache import caches

    for alias in ("redis", "near", "tagged"):
        caches[alias].clear()
    caches["default"].clear()
