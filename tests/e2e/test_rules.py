"""View-level rules per path prefix, from the INI file or flags: TTL override, bypass (extra
Vary and cookie rules are in test_vary.py and test_leaks.py); and the default, no config at
all, on the embedded memory store."""


def test_no_config_file_works_on_the_memory_store(origin, proxy):
    px = proxy()
    assert px.get("/plain").cache == "MISS"
    assert px.get("/plain").cache == "HIT"
    assert "store mem://" in px.errors()


def test_route_ttl_makes_an_origin_without_cache_headers_cacheable(origin, proxy):
    origin.script("/api/list", headers={}, body="list #{n}")
    origin.script("/plain", headers={}, body="plain #{n}")
    px = proxy(config="[route:api]\nprefix = /api/\nttl = 60s\n")
    px.get("/api/list")
    px.get("/plain")
    assert px.get("/api/list").cache == "HIT"
    assert px.get("/plain").cache != "HIT"
    assert origin.count("/api/list") == 1 and origin.count("/plain") == 2


def test_route_ttl_from_a_flag(origin, proxy):
    origin.script("/f/x", headers={}, body="x")
    px = proxy(args=["--route", "/f/ ttl=1m"])
    px.get("/f/x")
    assert px.get("/f/x").cache == "HIT"


def test_bypass_route_never_caches(origin, proxy):
    px = proxy(config="[route:admin]\nprefix = /admin/\nbypass = true\n")
    px.get("/admin/panel")
    r = px.get("/admin/panel")
    assert r.cache == "PASS"
    assert origin.count("/admin/panel") == 2


def test_longest_prefix_wins(origin, proxy):
    origin.script("/docs/live/x", headers={"Cache-Control": "max-age=60"})
    px = proxy(config="[route:docs]\nprefix = /docs/\n\n[route:live]\nprefix = /docs/live/\n"
                      "bypass = true\n")
    px.get("/docs/page")
    px.get("/docs/live/x")
    assert px.get("/docs/page").cache == "HIT"
    assert px.get("/docs/live/x").cache == "PASS"


def test_bad_config_is_refused_at_startup(origin, tmp_path):
    import subprocess
    from conftest import proxy_binary
    ini = tmp_path / "bad.ini"
    ini.write_text("[route:x]\nprefix = nope\n")
    r = subprocess.run([proxy_binary(), "--origin", "http://127.0.0.1:%d" % origin.port,
                        "--listen", "127.0.0.1:0", "--config", str(ini)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "%s:2: [route:x] prefix = 'nope': want a path starting with '/'" \
        % ini in r.stderr, r.stderr
