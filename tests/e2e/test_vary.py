"""Vary isolation: the guide's "forgetting Accept-Language is how you ship the German version to
French users". Each variant is keyed by the normalised values of the headers the response
varies on (plus a route's extra Vary names)."""


def test_vary_accept_language_keeps_variants_apart(origin, proxy):
    origin.script("/pricing", body="lang={h:Accept-Language} #{n}",
                  headers={"Cache-Control": "max-age=60", "Vary": "Accept-Language"})
    px = proxy()
    de1 = px.get("/pricing", {"Accept-Language": "de"})
    fr1 = px.get("/pricing", {"Accept-Language": "fr"})
    de2 = px.get("/pricing", {"Accept-Language": "de"})
    fr2 = px.get("/pricing", {"Accept-Language": "fr"})
    assert (de1.cache, de1.body) == ("MISS", b"lang=de #1")
    assert (fr1.cache, fr1.body) == ("MISS", b"lang=fr #2")
    assert (de2.cache, de2.body) == ("HIT", b"lang=de #1")
    assert (fr2.cache, fr2.body) == ("HIT", b"lang=fr #2")
    assert origin.count("/pricing") == 2


def test_equivalent_accept_language_values_share_a_variant(origin, proxy):
    origin.script("/norm", headers={"Cache-Control": "max-age=60", "Vary": "Accept-Language"})
    px = proxy()
    assert px.get("/norm", {"Accept-Language": "de-DE, en;q=0.5"}).cache == "MISS"
    assert px.get("/norm", {"Accept-Language": "de-de,en;q=0.5"}).cache == "HIT"
    assert origin.count("/norm") == 1


def test_absent_header_is_its_own_variant(origin, proxy):
    origin.script("/abs", body="lang={h:Accept-Language}",
                  headers={"Cache-Control": "max-age=60", "Vary": "Accept-Language"})
    px = proxy()
    assert px.get("/abs").body == b"lang="
    assert px.get("/abs", {"Accept-Language": "fr"}).body == b"lang=fr"
    assert px.get("/abs").cache == "HIT"
    assert origin.count("/abs") == 2


def test_route_rule_adds_vary_headers_the_origin_forgot(origin, proxy):
    origin.script("/themed/page", body="theme={h:X-Theme}",
                  headers={"Cache-Control": "max-age=60"})
    px = proxy(config="[route:themed]\nprefix = /themed/\nvary = X-Theme\n")
    dark = px.get("/themed/page", {"X-Theme": "dark"})
    light = px.get("/themed/page", {"X-Theme": "light"})
    assert (dark.body, light.body) == (b"theme=dark", b"theme=light")
    assert px.get("/themed/page", {"X-Theme": "dark"}).cache == "HIT"
    assert origin.count("/themed/page") == 2


def test_vary_star_is_never_stored(origin, proxy):
    origin.script("/star", headers={"Cache-Control": "max-age=60", "Vary": "*"})
    px = proxy()
    px.get("/star")
    assert px.get("/star").cache == "PASS"
    assert origin.count("/star") == 2
