"""Issue 12 §2: fields parsed as the RFCs say (Age lists, dates in any case, Vary on
Accept-Language / Accept-Encoding normalised), targeted cache control (RFC 9213:
CDN-Cache-Control and a configured field decide for the proxy and never reach the client) and
Surrogate-Key kept from clients."""
import email.utils
import time


def test_issue_12_age_as_a_list_counts_its_first_member(origin, proxy):
    origin.script("/age-list", headers=[["Cache-Control", "max-age=100"], ["Age", "30, 70"]])
    origin.script("/age-lines", headers=[["Cache-Control", "max-age=100"], ["Age", "30"],
                                         ["Age", "70"]])
    px = proxy()
    for path in ("/age-list", "/age-lines"):
        px.get(path)
        hit = px.get(path)
        assert hit.cache == "HIT"
        # RFC 9111 §5.1: the first member (30), not ignored (0) and not the last (70).
        assert 30 <= int(hit.headers["age"]) < 70, (path, hit.headers["age"])


def test_issue_12_expires_in_lower_case_is_a_date(origin, proxy):
    future = email.utils.formatdate(time.time() + 3600, usegmt=True).lower()
    origin.script("/exp", headers={"Expires": future})
    px = proxy()
    assert px.get("/exp").cache == "MISS"
    assert px.get("/exp").cache == "HIT"
    assert origin.count("/exp") == 1


def test_issue_12_equivalent_accept_language_and_encoding_share_a_variant(origin, proxy):
    origin.script("/lang", headers={"Cache-Control": "max-age=60", "Vary": "Accept-Language"})
    origin.script("/enc", headers={"Cache-Control": "max-age=60", "Vary": "Accept-Encoding"})
    px = proxy()
    assert px.get("/lang", {"Accept-Language": "fr, en;q=0.5"}).cache == "MISS"
    assert px.get("/lang", {"Accept-Language": "EN; q=0.50 ,FR"}).cache == "HIT"
    assert px.get("/lang", {"Accept-Language": "en, fr"}).cache == "MISS"
    assert px.get("/enc", {"Accept-Encoding": "gzip, deflate, br"}).cache == "MISS"
    assert px.get("/enc", {"Accept-Encoding": "BR,Deflate ,  gzip;q=1.0"}).cache == "HIT"
    assert origin.count("/lang") == 2 and origin.count("/enc") == 1


def test_issue_12_cdn_cache_control_decides_and_is_stripped(origin, proxy):
    origin.script("/cdn", headers={"Cache-Control": "no-store",
                                   "CDN-Cache-Control": "max-age=60"})
    px = proxy()
    miss, hit = px.get("/cdn"), px.get("/cdn")
    assert (miss.cache, hit.cache) == ("MISS", "HIT")
    for r in (miss, hit):
        assert r.headers["cache-control"] == "no-store"  # the client's, unchanged
        assert "cdn-cache-control" not in r.headers
    assert origin.count("/cdn") == 1


def test_issue_12_configured_target_field_comes_first(origin, proxy):
    origin.script("/own", headers={"Cache-Control": "max-age=60",
                                   "Corral-Cache-Control": "no-store",
                                   "CDN-Cache-Control": "max-age=60"})
    px = proxy(args=("--set", "proxy.targeted_cache_control=Corral-Cache-Control,CDN-Cache-Control"))
    first, second = px.get("/own"), px.get("/own")
    assert second.cache != "HIT" and origin.count("/own") == 2
    for r in (first, second):
        assert "corral-cache-control" not in r.headers
        assert "cdn-cache-control" not in r.headers
        assert r.headers["cache-control"] == "max-age=60"


def test_issue_12_targeted_cache_control_off_passes_it_through(origin, proxy):
    origin.script("/off", headers={"Cache-Control": "max-age=60", "CDN-Cache-Control": "no-store"})
    px = proxy(args=("--set", "proxy.targeted_cache_control=off"))
    px.get("/off")
    hit = px.get("/off")
    assert hit.cache == "HIT" and hit.headers["cdn-cache-control"] == "no-store"


def test_issue_12_surrogate_key_is_stripped_unless_kept(origin, proxy):
    origin.script("/sk", headers={"Cache-Control": "max-age=60", "Surrogate-Key": "a b"})
    origin.script("/sk-pass", headers={"Cache-Control": "private", "Surrogate-Key": "a"})
    px = proxy()
    for r in (px.get("/sk"), px.get("/sk"), px.get("/sk-pass")):
        assert "surrogate-key" not in r.headers, r
    assert px.admin("POST", "/purge/key/a").status == 200  # still a purge key
    assert px.get("/sk").cache == "MISS"
    kept = proxy(args=("--set", "proxy.keep_surrogate_key=true"))
    assert [kept.get("/sk").headers.get("surrogate-key") for _ in range(2)] == ["a b", "a b"]


def test_issue_12_purges_by_key_and_prefix_say_how_many_they_purged(origin, proxy):
    for p in ("/k/a", "/k/b"):
        origin.script(p, headers={"Cache-Control": "max-age=60", "Surrogate-Key": "list"})
    origin.script("/k/v", headers={"Cache-Control": "max-age=60", "Surrogate-Key": "list",
                                   "Vary": "Accept-Language"})
    px = proxy()
    for p in ("/k/a", "/k/b", "/k/a", "/other"):
        px.get(p)
    px.get("/k/v", {"Accept-Language": "de"})
    px.get("/k/v", {"Accept-Language": "fr"})
    # Objects (variants) carrying the key: /k/a, /k/b and two variants of /k/v; /k/a once.
    r = px.admin("POST", "/purge/key/list")
    assert (r.status, r.body, r.headers["x-purged"]) == (200, b"purged 4\n", "4")
    assert px.admin("POST", "/purge/key/list").body == b"purged 0\n"
    assert px.admin("POST", "/purge/key/nothing").body == b"purged 0\n"
    # Refilled, then purged by prefix: URLs (vary records), each with every variant.
    for p in ("/k/a", "/k/b", "/k/deep/c"):
        px.get(p)
    px.get("/k/v", {"Accept-Language": "de"})
    r = px.admin("POST", "/purge/prefix/k")
    assert (r.body, r.headers["x-purged"]) == (b"purged 4\n", "4")
    assert px.admin("POST", "/purge/prefix/k").body == b"purged 0\n"
    assert [px.get(p).cache for p in ("/k/a", "/other")] == ["MISS", "HIT"]
    r = px.purge("/k/a")
    assert (r.body, r.headers["x-purged"]) == (b"purged 1\n", "1")
    # Everything: the store's entries of the routes (objects and records, reachable or not).
    r = px.admin("POST", "/purge/prefix/")
    assert int(r.headers["x-purged"]) >= 4 and r.body == b"purged %s\n" % r.headers[
        "x-purged"].encode()
    assert px.admin("POST", "/purge/prefix/").body == b"purged 0\n"
