"""The guide's warning, "why am I seeing someone else's order?": responses with Set-Cookie are
never stored, requests with Cookie or Authorization are never answered from (or stored into)
the shared cache unless the response says so, and a route may strip tracking cookies."""


def test_set_cookie_response_is_never_served_to_someone_else(origin, proxy):
    origin.script("/order", body="order of {h:X-User}",
                  headers=[["Cache-Control", "max-age=60"], ["Set-Cookie", "session=s1"]])
    px = proxy()
    alice = px.get("/order", {"X-User": "alice"})
    bob = px.get("/order", {"X-User": "bob"})
    assert alice.body == b"order of alice"
    assert bob.body == b"order of bob"
    assert bob.cache == "PASS"
    assert origin.count("/order") == 2


def test_cookie_request_is_not_answered_from_the_shared_entry(origin, proxy):
    origin.script("/account", body="account of [{h:Cookie}]",
                  headers={"Cache-Control": "max-age=60"})
    px = proxy()
    anon = px.get("/account")
    alice = px.get("/account", {"Cookie": "session=alice"})
    bob = px.get("/account", {"Cookie": "session=bob"})
    assert anon.body == b"account of []"
    assert alice.body == b"account of [session=alice]"
    assert bob.body == b"account of [session=bob]"
    assert px.get("/account").body == b"account of []"
    assert origin.count("/account") == 3


def test_cookie_answer_is_not_stored_for_others(origin, proxy):
    origin.script("/mine", body="for [{h:Cookie}]", headers={"Cache-Control": "max-age=60"})
    px = proxy()
    assert px.get("/mine", {"Cookie": "session=alice"}).body == b"for [session=alice]"
    assert px.get("/mine").body == b"for []"
    assert origin.count("/mine") == 2


def test_authorization_request_is_not_answered_from_the_shared_entry(origin, proxy):
    origin.script("/me", body="me=[{h:Authorization}]", headers={"Cache-Control": "max-age=60"})
    px = proxy()
    px.get("/me")
    alice = px.get("/me", {"Authorization": "Bearer alice"})
    bob = px.get("/me", {"Authorization": "Bearer bob"})
    assert alice.body == b"me=[Bearer alice]"
    assert bob.body == b"me=[Bearer bob]"
    assert origin.count("/me") == 3


def test_public_response_varying_on_cookie_is_cached_per_cookie(origin, proxy):
    origin.script("/prefs", body="prefs [{h:Cookie}] #{n}",
                  headers={"Cache-Control": "public, max-age=60", "Vary": "Cookie"})
    px = proxy()
    a1 = px.get("/prefs", {"Cookie": "theme=dark"})
    b1 = px.get("/prefs", {"Cookie": "theme=light"})
    a2 = px.get("/prefs", {"Cookie": "theme=dark"})
    assert a1.body == a2.body == b"prefs [theme=dark] #1"
    assert a2.cache == "HIT"
    assert b1.body == b"prefs [theme=light] #2"
    assert origin.count("/prefs") == 2


def test_route_strips_tracking_cookies_so_pages_stay_shared(origin, proxy):
    origin.script("/shop/list", body="list [{h:Cookie}]", headers={"Cache-Control": "max-age=60"})
    px = proxy(config="[route:shop]\nprefix = /shop/\nstrip_cookies = _ga*, __utm*\n")
    first = px.get("/shop/list", {"Cookie": "_ga=GA1.1; __utmz=9"})
    second = px.get("/shop/list", {"Cookie": "_ga=GA1.2"})
    assert first.body == second.body == b"list []"
    assert second.cache == "HIT"
    session = px.get("/shop/list", {"Cookie": "_ga=GA1.3; sessionid=alice"})
    assert session.body == b"list [sessionid=alice]"
    assert origin.count("/shop/list") == 2


def test_route_keeping_only_named_cookies(origin, proxy):
    origin.script("/app/x", body="x [{h:Cookie}]", headers={"Cache-Control": "max-age=60"})
    px = proxy(args=["--route", "/app/ keep_cookies=sessionid"])
    assert px.get("/app/x", {"Cookie": "tracker=1"}).body == b"x []"
    assert px.get("/app/x", {"Cookie": "tracker=2"}).cache == "HIT"
    assert px.get("/app/x", {"Cookie": "tracker=2; sessionid=s"}).body == b"x [sessionid=s]"
