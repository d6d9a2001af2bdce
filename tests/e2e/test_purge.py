"""Invalidation on the admin listener: PURGE <url> (every variant), purge by surrogate key
(Surrogate-Key response header -> libcorral tags) and by path prefix; the bearer token."""

VARY = {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}


def test_purge_url_removes_every_variant(origin, proxy):
    origin.script("/v", headers=VARY, body="{h:Accept-Language} #{n}")
    px = proxy()
    px.get("/v", {"Accept-Language": "de"})
    px.get("/v", {"Accept-Language": "fr"})
    r = px.purge("/v")
    assert (r.status, r.body) == (200, b"purged 1\n")
    de = px.get("/v", {"Accept-Language": "de"})
    fr = px.get("/v", {"Accept-Language": "fr"})
    assert (de.cache, de.body) == ("MISS", b"de #3")
    assert (fr.cache, fr.body) == ("MISS", b"fr #4")
    assert px.purge("/nothing-here").body == b"purged 0\n"


def test_purge_with_the_admin_address_as_host_means_the_proxy_site(origin, proxy):
    px = proxy()
    px.get("/site")
    assert px.admin("PURGE", "/site").body == b"purged 1\n"
    assert px.get("/site").cache == "MISS"


def test_purge_by_surrogate_key(origin, proxy):
    origin.script("/a", headers={"Cache-Control": "max-age=60", "Surrogate-Key": "product-1 list"})
    origin.script("/b", headers={"Cache-Control": "max-age=60", "Surrogate-Key": "list"})
    origin.script("/c", headers={"Cache-Control": "max-age=60", "Surrogate-Key": "product-2"})
    px = proxy()
    for p in ("/a", "/b", "/c"):
        px.get(p)
    assert px.admin("POST", "/purge/key/product-1").status == 200
    assert [px.get(p).cache for p in ("/a", "/b", "/c")] == ["MISS", "HIT", "HIT"]
    assert px.admin("POST", "/purge/key/list").status == 200
    assert [px.get(p).cache for p in ("/a", "/b", "/c")] == ["MISS", "MISS", "HIT"]


def test_purge_by_prefix(origin, proxy):
    px = proxy()
    for p in ("/blog/1", "/blog/2024/post?page=2", "/blogroll", "/news/1"):
        px.get(p)
    assert px.admin("POST", "/purge/prefix/blog").status == 200
    caches = [px.get(p).cache for p in ("/blog/1", "/blog/2024/post?page=2", "/blogroll",
                                        "/news/1")]
    assert caches == ["MISS", "MISS", "HIT", "HIT"]


def test_purge_prefix_deeper_than_tagged_purges_its_ancestor(origin, proxy):
    px = proxy(config="[cache]\npath_tag_depth = 1\n")
    for p in ("/docs/a/b", "/docs/x", "/other"):
        px.get(p)
    assert px.admin("POST", "/purge/prefix/docs/a").status == 200
    assert [px.get(p).cache for p in ("/docs/a/b", "/docs/x", "/other")] == \
        ["MISS", "MISS", "HIT"]


def test_purge_everything_with_the_root_prefix(origin, proxy):
    px = proxy()
    px.get("/one")
    px.get("/two/three")
    assert px.admin("POST", "/purge/prefix/").status == 200
    assert [px.get(p).cache for p in ("/one", "/two/three")] == ["MISS", "MISS"]


def test_admin_requires_the_bearer_token_when_configured(origin, proxy):
    px = proxy(args=["--admin-token", "s3cret"])
    px.get("/t")
    assert px.purge("/t").status == 401
    assert px.admin("GET", "/metrics").status == 401
    ok = px.purge("/t", {"Authorization": "Bearer s3cret"})
    assert (ok.status, ok.body) == (200, b"purged 1\n")
    assert px.get("/t").cache == "MISS"


def test_admin_refuses_a_non_loopback_address_without_permission(origin, tmp_path):
    import subprocess
    from conftest import proxy_binary
    r = subprocess.run([proxy_binary(), "--origin", "http://127.0.0.1:%d" % origin.port,
                        "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "loopback-only" in r.stderr


def redis_command(port, *args):
    """Sends one command to Redis over RESP; returns the first line of the reply."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"*%d\r\n" % len(args) +
                  b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args))
        return s.makefile("rb").readline().decode().strip()


def test_issue_5_a_purge_whose_stamp_cannot_be_written_answers_503(origin, tmp_path):
    # Redis full with noeviction refuses writes and allows deletes: the purge removes the URL
    # but cannot write its stamp, which would protect it from a fill in flight. The caller is
    # told, so that it retries, instead of a 200.
    import subprocess
    from conftest import Proxy, free_port, wait_port
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                              "--appendonly", "no", "--maxmemory-policy", "noeviction"],
                             stdout=subprocess.DEVNULL, cwd=str(tmp_path))
    px = None
    try:
        wait_port(port, redis)
        px = Proxy(origin.port, str(tmp_path), args=["--store", "redis://127.0.0.1:%d" % port])
        assert [px.get("/full").cache for _ in range(2)] == ["MISS", "HIT"]
        assert redis_command(port, "CONFIG", "SET", "maxmemory", "1") == "+OK"
        r = px.purge("/full")
        assert r.status == 503 and b"purge stamp could not be written" in r.body, r
        assert px.admin("POST", "/purge/key/k").status == 503
        assert px.admin("POST", "/purge/prefix/full").status == 503
        assert redis_command(port, "CONFIG", "SET", "maxmemory", "0") == "+OK"
        # The URL itself was purged.
        assert px.get("/full").cache == "MISS"
    finally:
        if px is not None:
            assert px.stop() == 0, px.errors()[-4000:]
        redis.terminate()
        redis.wait(10)
