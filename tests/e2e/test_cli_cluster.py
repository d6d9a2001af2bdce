"""The corral CLI on a real Redis Cluster (redis+cluster://), started by scripts/redis-cluster on
free ports: every data command and every bust reaches the node of its key's slot, `bust --prefix`
clears every primary, `stats` and `top` sample every primary (never a replica) and say so, a seed
that is down is skipped as the store skips it, a primary that is down is one line naming it while
the others are still shown, and the fleet view sums two proxies on the cluster with the cluster's
items per route. Skipped only when redis-server has no cluster support (the script's exit 2)."""
import json
import os
import re
import socket
import socketserver
import subprocess
import threading

import pytest

from cli import corral, encode, read_reply, resp
from cli import redis as redis_plain  # noqa: F401 (a fixture: one redis-server, its port)
from conftest import Proxy, free_port

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts",
                      "redis-cluster")


def keyslot(key):
    """Redis Cluster's slot of a key without a {hash tag}: CRC16-XMODEM modulo 16384."""
    crc = 0
    for b in key.encode():
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc % 16384


def pipeline_set(port, keys, value="x"):
    """SET key `value` for every key, pipelined on one connection to `port`."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"".join(encode("SET", k, value) for k in keys))
        f = s.makefile("rb")
        assert all(read_reply(f) == "OK" for _ in keys)


class Cluster:
    def __init__(self, tmp, nodes, replicas, node_timeout=2000):
        self.dir = str(tmp / "cluster")
        env = dict(os.environ, OWNER_PID=str(os.getpid()), NODE_TIMEOUT=str(node_timeout))
        r = subprocess.run([SCRIPT, "start", self.dir, str(nodes), str(replicas)], env=env,
                           capture_output=True, text=True, timeout=120)
        if r.returncode == 2:
            pytest.skip("redis-server has no cluster support: " + r.stderr.strip())
        assert r.returncode == 0, r.stderr
        self.seeds = r.stdout.strip()
        # The slot map, read once: no test moves a slot, and a primary killed stays in the map
        # until the node timeout.
        port = int(self.seeds.split(",")[0].split(":")[1])
        self.slots = [(e[0], e[1], e[2][1]) for e in resp(port, "CLUSTER", "SLOTS")]

    def script(self, what, *args):
        r = subprocess.run([SCRIPT, what, self.dir] + list(args), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    def primaries(self):
        return sorted({port for _, _, port in self.slots})

    def url(self, query="key_prefix=shop", seeds=None):
        return "redis+cluster://%s/?%s" % (seeds or self.seeds, query)

    def owner(self, key):
        """The port of the primary that serves `key`'s slot."""
        slot = keyslot(key)
        for first, last, port in self.slots:
            if first <= slot <= last:
                return port
        raise AssertionError("no owner of slot %d" % slot)

    def keys(self, port):
        return sorted(k.decode() for k in resp(port, "KEYS", "*"))

    def fill(self, keys, value="x"):
        """Writes the physical keys, each on its slot's primary (a pipeline per primary): the
        test's data, without a CLI run per key."""
        by_port = {}
        for k in keys:
            by_port.setdefault(self.owner(k), []).append(k)
        for port, ks in by_port.items():
            pipeline_set(port, ks, value)
        return by_port

    def flush(self):
        for p in self.primaries():
            resp(p, "FLUSHALL")

    def stop(self):
        subprocess.run([SCRIPT, "stop", self.dir], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    # A node timeout of 60 s: no test waits for a failover, and the module's last test kills a
    # primary that must stay in the slot map while it runs.
    c = Cluster(tmp_path_factory.mktemp("cl"), 6, 1, node_timeout=60000)
    c.broken = False
    yield c
    c.stop()


@pytest.fixture
def cluster(shared):
    """The module's cluster of 3 primaries with a replica each, emptied for the test."""
    assert not shared.broken, "a test ran after the one that kills a primary"
    shared.flush()
    return shared


@pytest.fixture
def cluster_to_break(cluster):
    """The module's cluster for its last test, which kills a primary: no test may follow."""
    yield cluster
    cluster.broken = True


def ok(*args):
    r = corral(*args)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout.decode()


def test_data_commands_reach_every_primary(cluster):
    url = cluster.url()
    for i in range(3):
        assert ok("set", url, "product:%d" % i, "v%d" % i) == "OK\n"
    # The three keys' slots are on three primaries: each key is on the one serving its slot
    # (the slot as the server computes it).
    assert keyslot("shop:1:product:2") == resp(cluster.primaries()[0], "CLUSTER", "KEYSLOT",
                                               "shop:1:product:2")
    assert sorted(p for p in cluster.primaries() for _ in cluster.keys(p)) == cluster.primaries()
    assert [cluster.keys(cluster.owner("shop:1:product:%d" % i)) for i in range(3)] == [
        ["shop:1:product:%d" % i] for i in range(3)]
    assert resp(cluster.owner("shop:1:product:2"), "GET", "shop:1:product:2") == b"v2"
    for i in range(3):
        assert ok("get", url, "product:%d" % i) == "v%d\n" % i
    r = corral("get", "--json", url, "product:2")
    assert json.loads(r.stdout) == {"key": "product:2", "physical_key": "shop:1:product:2",
                                    "found": True, "bytes": 2, "utf8": True, "value": "v2"}
    assert ok("touch", "--ttl", "none", url, "product:1") == "OK\n"
    assert ok("ttl", url, "product:1") == "none\n"
    assert ok("set", url, "hits", "41") == "OK\n"
    assert ok("incr", url, "hits") == "42\n"
    assert ok("del", url, "product:2") == "deleted shop:1:product:2\n"
    r = corral("get", url, "product:2")
    assert r.returncode == 1 and r.stderr == b"corral get: shop:1:product:2: not found\n"
    assert ok("key", url, "product:2") == "shop:1:product:2\n"


def test_bust_by_tag_namespace_key_and_event_across_slots(cluster):
    url = cluster.url()
    # A tag's version key hashes to another slot than the values it guards.
    assert ok("set", "--tag", "category:3", url, "page:1", "p1") == "OK\n"
    assert cluster.owner("shop:tag:category:3") != cluster.owner("shop:1:page:1")
    assert ok("get", url, "page:1") == "p1\n"
    assert ok("set", "--ns", "products", url, "product:1", "n1") == "OK\n"
    assert ok("set", url, "product:9", "x") == "OK\n"
    assert ok("get", "--ns", "products", url, "product:1") == "n1\n"
    out = ok("bust", url, "--tag", "category:3", "--ns", "products", "--key", "product:9")
    assert out.splitlines() == ["tag    category:3: busted", "ns     products: bumped",
                                "key    product:9 (shop:1:product:9): deleted"]
    assert corral("get", url, "page:1").returncode == 1
    assert corral("get", "--ns", "products", url, "product:1").returncode == 1
    assert corral("get", url, "product:9").returncode == 1
    assert resp(cluster.owner("shop:tag:category:3"), "EXISTS", "shop:tag:category:3") == 1
    assert ok("set", url, "product:5", "y") == "OK\n"
    r = corral("bust", url, "--event", "product.saved", "id=5", "--rule", "key=product:{id}",
               "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["actions"][0]["busted"] == 1
    assert corral("get", url, "product:5").returncode == 1


def test_bust_prefix_clears_every_primary_and_nothing_else(cluster):
    url, other = cluster.url(), cluster.url("key_prefix=other")
    cluster.fill("shop:1:product:%d" % i for i in range(30))
    cluster.fill("other:1:kept:%d" % i for i in range(9))
    assert ok("set", other, "kept:9", "k") == "OK\n"
    assert all(any(k.startswith("shop:") for k in cluster.keys(p)) for p in cluster.primaries())
    assert ok("bust", url, "--prefix", "shop") == "prefix shop: cleared\n"
    left = [k for p in cluster.primaries() for k in cluster.keys(p)]
    assert sorted(left) == sorted("other:1:kept:%d" % i for i in range(10))
    assert ok("get", other, "kept:9") == "k\n"


def test_stats_samples_every_primary_and_no_replica(cluster):
    url = cluster.url()
    cluster.fill(("shop:1:product:%d" % i for i in range(30)), "x" * 100)
    cluster.fill("shop:1:featured:v%d" % i for i in range(5))
    assert resp(cluster.owner("elsewhere:1:k"), "SET", "elsewhere:1:k", "not ours") == "OK"
    r = corral("stats", "--json", url)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    rows = {row["name"]: row for row in data["rows"]}
    assert set(rows) == {"product", "featured"}
    # Counted once: a replica's copies are not read.
    assert rows["product"]["items"] == 30 and rows["featured"]["items"] == 5
    assert rows["product"]["bytes"] > 30 * 100 and not rows["product"]["estimated"]
    assert data["targets"][0] == {"target": url, "ok": True, "error": None,
                                  "note": '3 primaries: 36 keys, 35 under "shop:"'}
    out = ok("stats", url)
    assert out.splitlines()[0] == '%s: 3 primaries: 36 keys, 35 under "shop:"' % url
    assert re.search(r"^product +prefix +0 +- .* 30 +", out, re.M), out


def test_a_stats_sample_is_bounded_and_scaled_per_primary(cluster):
    # 6000 keys under shop:1:product:, sent to each key's primary in one pipeline per primary.
    # A 1 ms bound reads one SCAN batch of each primary and scales it by that primary's DBSIZE.
    assert len(cluster.fill("shop:1:product:%d" % i for i in range(6000))) == 3
    r = corral("stats", "--json", "--sample-ms", "1", cluster.url())
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    note = data["targets"][0]["note"]
    m = re.match(r'3 primaries: sampled (\d+) of 6000 keys in 1 ms \(\1 under "shop:"\), scaled$',
                 note)
    assert m and int(m.group(1)) < 6000, note
    (row,) = data["rows"]
    assert row["name"] == "product" and row["estimated"] and round(row["items"]) == 6000


def test_top_shows_the_cluster_in_a_pipe(cluster):
    url = cluster.url()
    cluster.fill("shop:1:product:%d" % i for i in range(12))
    r = corral("top", "--count", "2", "--interval", "200", url)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert len(re.findall(r"^corral top .* 1 of 1 targets  rates over", out, re.M)) == 2
    assert re.search(r"^product +prefix +0\.0 +- +0\.0 .* 12 +", out, re.M), out
    assert "\033" not in out


def test_a_seed_that_is_down_is_skipped_and_no_seed_is_one_line(cluster):
    dead = "127.0.0.1:%d" % free_port()
    url = cluster.url(seeds=dead + "," + cluster.seeds)
    assert ok("set", url, "product:1", "v") == "OK\n"
    assert ok("get", url, "product:1") == "v\n"
    assert ok("stats", url).startswith("%s: 3 primaries: " % url)
    assert ok("bust", url, "--key", "product:1").startswith("key    product:1")
    dead2 = "127.0.0.1:%d" % free_port()
    url = "redis+cluster://%s,%s/" % (dead, dead2)
    want = "no seed answered: %s: connection refused; %s: connection refused" % (dead, dead2)
    for args in (("get", url, "k"), ("set", url, "k", "v"), ("bust", url, "--tag", "t"),
                 ("stats", url)):
        r = corral(*args)
        assert r.returncode == 3, (args, r)
        assert r.stderr.decode() == "corral %s: %s: %s\n" % (args[0], url, want)


def auth_resp(port, password, *args):
    """One command after AUTH, on a new connection to `port`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(encode("AUTH", password) + encode(*args))
        f = s.makefile("rb")
        assert read_reply(f) == "OK"
        return read_reply(f)


def test_a_password_reaches_every_primary_and_is_never_shown(cluster):
    secret = "pw-cluster-5ecret"
    nodes = [int(a.split(":")[1]) for a in cluster.seeds.split(",")]
    for p in nodes:
        assert resp(p, "CONFIG", "SET", "masterauth", secret) == "OK"
        assert resp(p, "CONFIG", "SET", "requirepass", secret) == "OK"
    try:
        url = "redis+cluster://:%s@%s/?key_prefix=shop" % (secret, cluster.seeds)
        shown = "redis+cluster://:***@%s/?key_prefix=shop" % cluster.seeds
        for i in range(3):  # one key on each primary
            assert ok("set", url, "product:%d" % i, "v") == "OK\n"
        r = corral("stats", "--json", url)
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert data["targets"][0]["target"] == shown
        assert data["targets"][0]["note"] == '3 primaries: 3 keys, 3 under "shop:"'
        assert secret not in r.stdout.decode()
        # No password, or a wrong one: the first seed's refusal, not every seed's.
        first = nodes[0]
        r = corral("get", cluster.url(), "product:1")
        assert r.returncode == 3
        assert r.stderr.decode() == ("corral get: %s: 127.0.0.1:%d: auth failed in PING: NOAUTH "
                                     "Authentication required.\n" % (cluster.url(), first))
        wrong = "redis+cluster://:nope@%s/?key_prefix=shop" % cluster.seeds
        r = corral("stats", wrong)
        assert r.returncode == 3 and "nope" not in r.stderr.decode()
        assert r.stderr.decode().startswith(
            "corral stats: redis+cluster://:***@%s/?key_prefix=shop: 127.0.0.1:%d: auth failed "
            "in AUTH: WRONGPASS" % (cluster.seeds, first)), r.stderr
    finally:
        for p in nodes:
            assert auth_resp(p, secret, "CONFIG", "SET", "requirepass", "") == "OK"
            assert resp(p, "CONFIG", "SET", "masterauth", "") == "OK"


def test_a_standalone_server_given_as_a_cluster_says_so(redis_plain):
    url = "redis+cluster://127.0.0.1:%d/" % redis_plain
    for args in (("get", url, "k"), ("stats", url)):
        r = corral(*args)
        assert r.returncode == 3
        assert r.stderr.decode() == (
            "corral %s: %s: 127.0.0.1:%d is not a cluster node (cluster support disabled): "
            "use redis://\n" % (args[0], url, redis_plain))


class FakeNode(socketserver.ThreadingTCPServer):
    """A server that answers as a cluster node (PING, CLUSTER MYID) and sends `slots` as its
    CLUSTER SLOTS reply: what a broken or hostile node could send."""
    daemon_threads = True
    slots = b"*0\r\n"

    def __init__(self):
        node = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                replies = {b"PING": b"+PONG\r\n", b"CLUSTER MYID": b"$4\r\nfake\r\n"}
                while True:
                    try:
                        cmd = b" ".join(read_reply(self.rfile)).upper()
                    except (RuntimeError, ValueError):
                        return
                    self.wfile.write(node.slots if cmd == b"CLUSTER SLOTS" else
                                     replies.get(cmd, b"-ERR unknown command\r\n"))

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]


@pytest.fixture
def fake_node():
    node = FakeNode()
    threading.Thread(target=node.serve_forever, daemon=True).start()
    yield node
    node.shutdown()
    node.server_close()


def test_a_malformed_slot_map_is_refused_with_the_reason(fake_node):
    # The store's parser reads it: a range past slot 16383, a primary whose endpoint is unknown,
    # a reply that is not an array. Nothing is sampled from what such a map names.
    url = "redis+cluster://127.0.0.1:%d/" % fake_node.port
    primary = b"*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$2\r\nid\r\n" % fake_node.port
    unknown = b"*3\r\n$1\r\n?\r\n:%d\r\n$2\r\nid\r\n" % fake_node.port
    for slots, why in ((b"*1\r\n*3\r\n:0\r\n:16384\r\n" + primary, "bad range 0-16384"),
                       (b"*1\r\n*3\r\n:0\r\n:16383\r\n" + unknown,
                        "range 0-16383 has a bad primary"),
                       (b":7\r\n", "not an array")):
        fake_node.slots = slots
        r = corral("stats", url)
        assert r.returncode == 3 and r.stdout == b"", r
        assert r.stderr.decode() == "corral stats: %s: CLUSTER SLOTS: %s\n" % (url, why)


# One site behind both proxies: the same Host (the cache key has it), as behind a load balancer.
HOST = {"Host": "fleet.example"}
ROUTES = "[route:products]\nprefix = /products/\n\n[route:search]\nprefix = /search/\n"


def test_the_fleet_view_sums_two_proxies_on_the_cluster(cluster, origin, tmp_path):
    store = cluster.url("key_prefix=site")
    a, b = (Proxy(origin.port, str(tmp_path), config=ROUTES, args=["--store", store])
            for _ in range(2))
    try:
        for p in ("/products/1", "/products/2", "/search/q"):
            assert a.get(p, HOST).cache == "MISS"
        for p in ("/products/1", "/products/2"):
            assert b.get(p, HOST).cache == "HIT"  # the page one proxy stored, from the cluster
        targets = ["http://127.0.0.1:%d/metrics" % p.admin_port for p in (a, b)] + [store]
        r = corral("stats", "--json", *targets)
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert [t["ok"] for t in data["targets"]] == [True, True, True]
        rows = {row["name"]: row for row in data["rows"]}
        assert (rows["products"]["requests"], rows["products"]["hits"]) == (4, 2)
        assert rows["products"]["hit_rate"] == 50.0
        assert (rows["search"]["requests"], rows["search"]["misses"]) == (1, 1)
        # The cluster's items per route: a vary record and an object per stored URL.
        assert rows["products"]["items"] == 4 and rows["search"]["items"] == 2
        out = corral("stats", *targets).stdout.decode()
        assert out.startswith("fleet: 3 of 3 targets\n%s: 3 primaries: " % store), out
        assert re.search(r"^products +route +4 +50\.0% +2 ", out, re.M), out
        # top over the same fleet: rates (no traffic now) and the cluster's items.
        r = corral("top", "--count", "2", "--interval", "200", *targets)
        assert r.returncode == 0, r.stderr
        out = r.stdout.decode()
        assert len(re.findall(r"^corral top .*  3 of 3 targets  rates over", out, re.M)) == 2
        assert re.search(r"^products +route +0\.0 +- +0\.0 .* 4 +", out, re.M), out
    finally:
        for p in (a, b):
            assert p.stop() == 0, p.errors()


def test_a_primary_down_is_named_and_the_others_still_shown(cluster_to_break):
    # The node timeout of 60 s keeps the dead primary in the slot map for the whole test (its
    # replica is not promoted), as in a cluster's failover window.
    c = cluster_to_break
    url = c.url()
    c.fill("shop:1:product:%d" % i for i in range(30))
    dead = int(c.script("kill-primary")[0].split(":")[1])
    on_dead = [i for i in range(30) if c.owner("shop:1:product:%d" % i) == dead]
    alive = [i for i in range(30) if i not in on_dead]
    assert on_dead and alive
    r = corral("stats", url)
    assert r.returncode == 3
    assert r.stderr.decode() == ("corral stats: %s: primary 127.0.0.1:%d: connection "
                                 "refused\n" % (url, dead))
    out = r.stdout.decode()
    assert out.startswith('%s: 2 of 3 primaries: %d keys, %d under "shop:"\n' %
                          (url, len(alive), len(alive))), out
    assert re.search(r"^product +prefix .* %d +" % len(alive), out, re.M), out
    r = corral("top", "--count", "1", "--interval", "100", url)
    assert r.returncode == 3
    assert "\n! %s: primary 127.0.0.1:%d: connection refused\n" % (url, dead) in \
        r.stdout.decode(), r.stdout
    assert r.stderr.decode() == ("corral top: %s: primary 127.0.0.1:%d: connection "
                                 "refused\n" % (url, dead))
    r = corral("stats", "--json", url)
    target = json.loads(r.stdout)["targets"][0]
    assert target["ok"] and target["error"] == "primary 127.0.0.1:%d: connection refused" % dead
    # A key on a live primary still answers; one on the dead primary is a failure, not a miss.
    assert ok("set", url, "product:%d" % alive[0], "v") == "OK\n"
    assert ok("get", url, "product:%d" % alive[0]) == "v\n"
    r = corral("get", url, "product:%d" % on_dead[0])
    assert r.returncode == 3
    assert r.stderr.decode() == ("corral get: %s: the store failed the read: 127.0.0.1:%d: "
                                 "connection refused (refused)\n" % (url, dead))
    # bust --prefix clears the primaries that answer and names the one that did not.
    r = corral("bust", url, "--prefix", "shop")
    assert r.returncode == 3 and r.stdout == b""
    assert r.stderr.decode() == ("corral bust: prefix shop: store failure: 127.0.0.1:%d: "
                                 "connection refused (refused)\n" % dead)
    for p in c.primaries():
        assert p == dead or c.keys(p) == []
