"""Issue 13, the review's defects of the corral CLI, each with the test that showed it: the admin
token went to every http target of stats and top; top spun on a terminal that hung up; a read
with --ns created the namespace; ttl on mem:// could only say "not found"; demo on a dead store
printed numbers instead of stopping."""
import contextlib
import http.server
import json
import os
import pty
import select
import subprocess
import threading
import time

from cli import cli_binary, corral, free_port, redis, resp  # noqa: F401 - redis is a fixture

METRICS = b'corral_cache_hits_total{prefix="p"} 3\ncorral_cache_misses_total{prefix="p"} 1\n'


@contextlib.contextmanager
def metrics_server():
    """A Prometheus endpoint that records the Authorization header of every request."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(METRICS)))
            self.end_headers()
            self.wfile.write(METRICS)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield "127.0.0.1:%d" % server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def with_token(*args):
    env = dict(os.environ, CORRAL_ADMIN_TOKEN="s3cret")
    return subprocess.run([cli_binary()] + list(args), capture_output=True, env=env, timeout=60)


def test_issue_13_stats_sends_the_token_only_where_asked():
    with metrics_server() as (a, seen_a), metrics_server() as (b, seen_b):
        ta, tb = "http://%s/metrics" % a, "http://%s/metrics" % b
        # Two http targets and no --token-to: neither was asked for, neither gets it.
        r = with_token("stats", ta, tb)
        assert r.returncode == 0, r.stderr
        assert seen_a == [None] and seen_b == [None]
        # --token-to names one: only it gets the token.
        r = with_token("stats", "--token-to", a, ta, tb)
        assert r.returncode == 0, r.stderr
        assert seen_a == [None, "Bearer s3cret"] and seen_b == [None, None]
        # top reads its targets the same way.
        r = with_token("top", "--count", "1", "--interval", "50", "--token-to", b, ta, tb)
        assert r.returncode == 0, r.stderr
        assert set(seen_a[2:]) == {None} and set(seen_b[2:]) == {"Bearer s3cret"}
        # One http target: it is the one asked for.
        r = with_token("stats", ta)
        assert r.returncode == 0 and seen_a[-1] == "Bearer s3cret"
        # A --token-to that names no target is a usage error, not a silent no-op.
        r = with_token("stats", "--token-to", "127.0.0.1:1", ta, tb)
        assert r.returncode == 2 and b"--token-to 127.0.0.1:1: no http target" in r.stderr


def test_issue_13_top_ends_when_its_terminal_hangs_up():
    # top on a pseudo-terminal that is not its controlling one: when the other end closes, no
    # SIGHUP comes, only POLLHUP and failing reads. It must end by itself (it used to spin).
    with metrics_server() as (a, _seen):
        master, slave = pty.openpty()
        proc = subprocess.Popen([cli_binary(), "top", "--interval", "100", "http://%s" % a],
                                stdin=slave, stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        try:
            screen, end = b"", time.monotonic() + 30
            while b"sort: requests" not in screen and time.monotonic() < end:
                if select.select([master], [], [], 1)[0]:
                    screen += os.read(master, 65536)
            assert b"sort: requests" in screen, screen
            os.close(master)
            master = None
            assert proc.wait(timeout=20) == 0, proc.stderr.read()
        finally:
            if master is not None:
                os.close(master)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()


def test_issue_13_reads_in_a_namespace_write_nothing(redis):
    url = "redis://127.0.0.1:%d/?key_prefix=shop" % redis
    assert corral("get", "--ns", "x", url, "k").returncode == 1
    assert resp(redis, "DBSIZE") == 0  # no generation key "shop:ns:x" was created
    for cmd in ("get", "ttl", "del", "incr", "touch"):
        extra = ("--ttl", "5") if cmd == "touch" else ()
        r = corral(cmd, "--ns", "x", url, "k", *extra)
        assert r.returncode == 1, (cmd, r)
        assert r.stderr == b"corral %s: k in namespace x (which has no generation): not found\n" \
            % cmd.encode()
    assert resp(redis, "DBSIZE") == 0  # no generation key "shop:ns:x" was created
    r = corral("get", "--json", "--ns", "x", url, "k")
    assert r.returncode == 1 and r.stdout == b'{"key":"k","physical_key":null,"found":false}\n'
    # A write makes the generation, and then reads find the key under it.
    r = corral("set", "--json", "--ns", "x", url, "k", "v")
    assert r.returncode == 0, r.stderr
    physical = json.loads(r.stdout)["physical_key"]
    assert physical.startswith("shop:1:x.") and physical.endswith(":k")
    assert resp(redis, "DBSIZE") == 2  # the value and the generation
    r = corral("get", "--json", "--ns", "x", url, "k")
    assert json.loads(r.stdout)["physical_key"] == physical and r.returncode == 0


def test_issue_13_demo_on_a_dead_store_stops_with_the_reason():
    dead = "redis://127.0.0.1:%d/?key_prefix=shop" % free_port()
    r = corral("demo", dead)
    assert r.returncode == 3
    assert r.stderr.decode() == "corral demo: %s: connection refused\n" % dead
    assert b"page views" not in r.stdout  # no numbers from a store that never answered


def test_issue_13_demo_never_prints_the_store_password(redis):
    # The demo names its store on every line; a password of the URL is hidden there, on the
    # error paths (a bad URL, a store that refuses the connection) and in the banner.
    secret = "pw-demo-5ecret"
    dead = free_port()
    for url in ("redis://:%s@127.0.0.1:%d/?bogus=1" % (secret, dead),
                "redis://:%s@127.0.0.1:%d/?key_prefix=shop" % (secret, dead)):
        r = corral("demo", url)
        out = (r.stdout + r.stderr).decode()
        assert r.returncode != 0 and "corral demo: redis://:***@" in out and secret not in out, out
    assert resp(redis, "CONFIG", "SET", "requirepass", secret) == "OK"
    r = corral("demo", "redis://127.0.0.1:%d/?key_prefix=shop&password=%s" % (redis, secret))
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0 and "demo on redis://" in out and secret not in out, out


def test_issue_13_stats_never_prints_a_redis_target_password(redis):
    # A redis:// target is named in errors, in notes and in --json: its password hidden.
    secret = "pw-stats-5ecret"
    dead = "redis://:%s@127.0.0.1:%d/" % (secret, free_port())
    for args in (("stats", dead), ("stats", "--json", dead)):
        r = corral(*args)
        out = (r.stdout + r.stderr).decode()
        assert r.returncode != 0 and "redis://:***@" in out and secret not in out, out
    assert resp(redis, "CONFIG", "SET", "requirepass", secret) == "OK"
    live = "redis://:%s@127.0.0.1:%d/" % (secret, redis)
    r = corral("stats", "--json", live)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 0 and "redis://:***@" in out and secret not in out, out


def test_issue_13_demo_stops_at_the_first_step_the_store_fails(redis):
    # A store that answers but refuses every write: the first step fails, with its reason.
    assert resp(redis, "CONFIG", "SET", "maxmemory-policy", "noeviction") == "OK"
    assert resp(redis, "CONFIG", "SET", "maxmemory", "1") == "OK"
    r = corral("demo", "redis://127.0.0.1:%d/?key_prefix=shop" % redis)
    assert r.returncode == 3
    assert r.stderr == b"corral demo: 1. page views: out of memory\n"
    assert b"page views" not in r.stdout
