"""The corral CLI's data and invalidation commands against a real redis-server: exit codes (0 ok,
1 miss, 2 usage, 3 failure), the library's key scheme and wire formats, --json, escaped binary
values, bust doing what the library's calls do, and one line with the reason when the store
fails. Redis is started on a free port per test; the CLI is the binary CMake names
(CORRAL_CLI)."""
import json

from cli import corral, free_port, redis, resp  # noqa: F401 - redis is a fixture


def test_version_and_help_and_usage_exit_codes():
    r = corral("--version")
    assert r.returncode == 0 and r.stdout.startswith(b"corral 0.")
    r = corral("help", "stats")
    assert r.returncode == 0 and b"usage: corral stats" in r.stdout
    assert corral("help", "nosuch").returncode == 2
    assert corral("get").returncode == 2
    assert corral("nosuch").returncode == 2
    assert corral("get", "redis://127.0.0.1/?nosuch=1", "k").returncode == 2
    r = corral("key", "--json", "mem://?key_prefix=djzen", "featured_products:v3")
    assert json.loads(r.stdout) == {"physical_key": "djzen:1:featured_products:v3"}
    r = corral("fragment", "--json", "product_card", "-1")
    assert r.returncode == 0 and json.loads(r.stdout)["key"].startswith(
        "template.cache.product_card.")


def test_set_get_ttl_through_the_key_scheme(redis):
    url = "redis://127.0.0.1:%d/2?key_prefix=shop&version=3" % redis
    r = corral("set", url, "featured", "1,5,9", "--ttl", "60")
    assert r.returncode == 0, r.stderr
    # The physical key is the library's: KEY_PREFIX:VERSION:key, in database 2.
    assert resp(redis, "GET", "shop:3:featured", db=2) == b"1,5,9"
    r = corral("get", url, "featured")
    assert r.returncode == 0 and r.stdout == b"1,5,9\n"
    r = corral("get", "--json", url, "featured")
    assert json.loads(r.stdout) == {"key": "featured", "physical_key": "shop:3:featured",
                                    "found": True, "bytes": 5, "utf8": True, "value": "1,5,9"}
    r = corral("ttl", "--json", url, "featured")
    ttl = json.loads(r.stdout)["ttl_ms"]
    assert r.returncode == 0 and 0 < ttl <= 60000
    assert corral("get", url, "featured", "--version", "2").returncode == 1


def test_miss_del_incr_touch_exit_codes(redis):
    url = "redis://127.0.0.1:%d/?key_prefix=t" % redis
    r = corral("get", url, "absent")
    assert r.returncode == 1 and b"t:1:absent: not found" in r.stderr
    assert corral("incr", url, "n").returncode == 1
    assert corral("set", url, "n", "41").returncode == 0
    r = corral("incr", url, "n")
    assert r.returncode == 0 and r.stdout == b"42\n"
    r = corral("incr", url, "n", "--", "-50")
    assert r.returncode == 0 and r.stdout == b"-8\n"
    assert corral("touch", url, "n", "--ttl", "none").returncode == 0
    assert corral("ttl", url, "n").stdout == b"none\n"
    assert corral("touch", url, "gone", "--ttl", "5").returncode == 1
    assert corral("del", url, "n").returncode == 0
    assert corral("del", url, "n").returncode == 1
    assert corral("ttl", url, "n").returncode == 1


def test_binary_values_are_escaped_unless_raw(redis):
    url = "redis://127.0.0.1:%d/" % redis
    value = b"a\x00b\n\xff\xc3\xa9\\"
    assert corral("set", url, "bin", "-", stdin=value).returncode == 0
    r = corral("get", url, "bin")
    assert r.stdout == b"a\\x00b\\n\\xff\xc3\xa9\\\\\n"
    assert corral("get", "--raw", url, "bin").stdout == value


def test_django_wire_format_as_the_url_says(redis):
    url = "redis://127.0.0.1:%d/?serializer=django" % redis
    assert corral("set", url, "title", "caf\xe9").returncode == 0
    assert corral("set", url, "count", "7").returncode == 0
    # Django's RedisCache: integers as digits, text as a pickled str.
    assert resp(redis, "GET", ":1:count") == b"7"
    assert resp(redis, "GET", ":1:title").startswith(b"\x80")
    assert corral("get", url, "title").stdout == "caf\xe9\n".encode()
    assert corral("incr", url, "count", "3").stdout == b"10\n"


def test_bust_does_what_the_library_calls_do(redis):
    url = "redis://127.0.0.1:%d/?key_prefix=shop" % redis
    for k in ("product:1", "product:2", "featured"):
        assert corral("set", url, k, "v").returncode == 0
    r = corral("bust", url, "--key", "product:1", "--tag", "category:3", "--ns", "products")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "key    product:1 (shop:1:product:1): deleted", "tag    category:3: busted",
        "ns     products: bumped"]
    assert corral("get", url, "product:1").returncode == 1
    # A tag's version is an internal key: the bust wrote one.
    assert resp(redis, "EXISTS", "shop:tag:category:3") == 1
    # An event with its rule: product.saved id=2 deletes product:{id}.
    r = corral("bust", url, "--event", "product.saved", "id=2", "--rule", "key=product:{id}",
               "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["actions"][0]["busted"] == 1
    assert corral("get", url, "product:2").returncode == 1
    # --prefix clears everything under the key prefix, and nothing else.
    assert resp(redis, "SET", "other:1:x", "keep") == "OK"
    assert corral("bust", url, "--prefix", "shop").returncode == 0
    assert corral("get", url, "featured").returncode == 1
    assert resp(redis, "GET", "other:1:x") == b"keep"


def test_bust_event_rules_from_a_file(redis, tmp_path):
    url = "redis://127.0.0.1:%d/" % redis
    rules = tmp_path / "rules"
    rules.write_text("# post_save receivers\nproduct.saved key product:{id}\n"
                     "product.saved key featured\n")
    for k in ("product:9", "featured", "product:8"):
        assert corral("set", url, k, "v").returncode == 0
    r = corral("bust", url, "--event", "product.saved", "id=9", "--rules", str(rules))
    assert r.returncode == 0 and r.stdout == b"event  product.saved: 2 busted\n"
    assert corral("get", url, "product:8").returncode == 0
    r = corral("bust", url, "--event", "product.saved", "--rules", str(rules))
    assert r.returncode == 2  # the template names a field the event lacks


def test_a_failing_redis_is_one_line_with_the_reason_and_exit_3(redis):
    dead = "redis://127.0.0.1:%d/" % free_port()
    for args in (("get", dead, "k"), ("set", dead, "k", "v"), ("bust", dead, "--tag", "t"),
                 ("ttl", dead, "k")):
        r = corral(*args)
        assert r.returncode == 3, (args, r)
        assert r.stderr.decode().strip() == "corral %s: %s: connection refused" % (args[0], dead)
    assert resp(redis, "CONFIG", "SET", "requirepass", "s3cret") == "OK"
    r = corral("get", "redis://127.0.0.1:%d/" % redis, "k")
    assert r.returncode == 3 and b"auth" in r.stderr.lower() and len(r.stderr.splitlines()) == 1
    r = corral("get", "redis://:wrong@127.0.0.1:%d/" % redis, "k")
    assert r.returncode == 3 and b"auth failed" in r.stderr
    assert corral("get", "redis://:s3cret@127.0.0.1:%d/" % redis, "k").returncode == 1
