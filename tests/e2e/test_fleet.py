"""Coalescing across proxies sharing one redis-server (cmd/proxy/fleet.c): a cold herd spread
over two proxies makes one origin request, and a leader proxy killed mid-fetch is replaced by
another once its lease expires."""
import datetime
import signal
import socket
import subprocess
import threading

from conftest import Proxy, eventually, free_port, wait_port


# One site behind every proxy: the same Host (the cache key has it), as behind a load balancer.
HOST = {"Host": "fleet.example"}


def redis_command(port, *args):
    """Sends one command over RESP; returns the reply's lines (enough for short replies)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"*%d\r\n" % len(args) +
                  b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data.decode(errors="replace").split("\r\n")
            data += chunk


def log_ms(line):
    """The time of an access log line (its first field, ISO 8601 in UTC) in ms."""
    t = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


class Fleet:
    def __init__(self, origin, tmp_path, n, config=""):
        self.port = free_port()
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.port), "--save", "",
                                       "--appendonly", "no"],
                                      stdout=subprocess.DEVNULL, cwd=str(tmp_path))
        wait_port(self.port, self.redis)
        cfg = "[limits]\n" + config
        self.proxies = [Proxy(origin.port, str(tmp_path), config=cfg,
                              args=["--store", "redis://127.0.0.1:%d" % self.port])
                        for _ in range(n)]

    def subscribed(self):
        """Subscribers of the store's lease channel (one per proxy that has waited)."""
        lines = redis_command(self.port, "PUBSUB", "NUMSUB", "lease-released")
        return int(lines[-2][1:]) if len(lines) >= 2 and lines[-2].startswith(":") else 0

    def sets(self):
        """SET commands the store has run (INFO commandstats): lease attempts are SET ... NX."""
        for line in redis_command(self.port, "INFO", "commandstats"):
            if line.startswith("cmdstat_set:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    def stop(self):
        errors = []
        for p in self.proxies:
            if p.proc.poll() is None and p.stop() != 0:
                errors.append(p.errors()[-4000:])
        self.redis.terminate()
        self.redis.wait(10)
        assert not errors, "\n".join(errors)


def metric(proxy, name):
    """The sum of a metric's samples in the proxy's /metrics (0 when it has none)."""
    return sum(float(l.split()[-1]) for l in proxy.metrics().splitlines()
               if l.split("{")[0].split(" ")[0] == name)


def herd(proxies, n, path):
    barrier = threading.Barrier(n)
    results = [None] * n

    def client(i):
        barrier.wait()
        results[i] = proxies[i % len(proxies)].get(path, HOST, timeout=60)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_cold_herd_over_two_proxies_makes_one_origin_request(origin, tmp_path):
    # The origin holds its answer (a gate, not a delay) until the other proxy waits on the
    # leader's lease with its announcements live, so the release is what wakes it, however slow
    # the machine.
    origin.script("/cold", head_gate="g", body="cold #{n}",
                  headers={"Cache-Control": "max-age=60"})
    fleet = Fleet(origin, tmp_path, 2)
    results = []
    clients = threading.Thread(target=lambda: results.extend(herd(fleet.proxies, 50, "/cold")),
                               daemon=True)
    try:
        clients.start()
        eventually(lambda: origin.gate("g")["waiting"] == 1, what="the leader's fetch")
        # The other proxy subscribed: its watches made before were woken by the start (not a
        # release: lease_wakeups_total does not count them) and it tries the lease again.
        eventually(lambda: any(metric(p, "corral_redis_lease_subscribes_total") >= 1
                               for p in fleet.proxies), what="the other proxy's subscription")
        # Two lease attempts (SET NX) the server ran since: the first may be one whose watch was
        # made before the start; the second's was made after the first's answer, so it is live,
        # and it stays until the release or the next poll (1 s later, fleet_lease 10 s).
        sets = fleet.sets()
        eventually(lambda: fleet.sets() >= sets + 2, what="the other proxy's live watch")
        origin.open_gate("g")
        clients.join(60)
        assert len(results) == 50, "the herd did not finish"
        assert all(r.status == 200 and r.body == b"cold #1" for r in results), results
        assert origin.count("/cold") == 1
        caches = [r.cache for r in results]
        assert caches.count("MISS") == 1, caches
        # Measured, not asserted (docs/proxy.md, "Coalescing across proxies"): when the other
        # proxy's answers were complete, after the leader's own client's, from the access logs
        # (a line's time is when its answer was complete, in ms, one clock for both proxies).
        lead = fleet.proxies[caches.index("MISS") % 2]
        other = fleet.proxies[1 - caches.index("MISS") % 2]
        # The other proxy was woken by the leader's release, not by its poll alone.
        assert metric(other, "corral_redis_lease_wakeups_total") >= 1
        lines = {p: eventually(lambda p=p: [l for l in p.log_lines() if "/cold" in l]
                               if len([l for l in p.log_lines() if "/cold" in l]) == 25 else None,
                               what="the access log") for p in fleet.proxies}
        t_miss = min(log_ms(l) for l in lines[lead] if " MISS " in l)
        later = sorted(log_ms(l) - t_miss for l in lines[other])
        print("fleet: the other proxy's 25 answers were complete %d ms (first), %d ms (median), "
              "%d ms (last) after the leader's client's" % (later[0], later[12], later[-1]))
    finally:
        origin.open_gate("g")
        if clients.ident:
            clients.join(60)
        fleet.stop()


def test_a_leader_proxy_killed_mid_fetch_is_replaced_after_its_lease(origin, tmp_path):
    # coalesce_timeout far above the lease: only the lease's expiry can end b's wait, and b's
    # ten clients stay behind its one fetch (config.c refuses a lease over half of it).
    origin.script("/slow", head_gate="g", body="slow #{n}",
                  headers={"Cache-Control": "max-age=60"})
    fleet = Fleet(origin, tmp_path, 2, config="fleet_lease = 2s\ncoalesce_timeout = 5m\n")
    a, b = fleet.proxies
    try:
        def lead():
            try:
                a.get("/slow", HOST, timeout=30)
            except OSError:
                pass  # a is killed under it

        first = threading.Thread(target=lead, daemon=True)
        first.start()
        eventually(lambda: origin.gate("g")["waiting"] == 1, what="the leader's fetch")
        subscribed = fleet.subscribed()
        results = [None] * 10

        def wait_on_b(i):
            results[i] = b.get("/slow", HOST, timeout=60)

        clients = [threading.Thread(target=wait_on_b, args=(i,)) for i in range(10)]
        for t in clients:
            t.start()
        # b waits on a's lease: its subscriber joins the store's channel.
        eventually(lambda: fleet.subscribed() > subscribed, what="the second proxy waiting")
        eventually(lambda: b.connections() == 10, what="b's ten clients")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        origin.open_gate("g")  # a's held answer goes nowhere; b's fetch passes at once
        for t in clients:
            t.join(60)
        assert all(r is not None and r.status == 200 and r.body == b"slow #2" for r in results), \
            results
        stats = origin.stats("/slow")
        assert stats["count"] == 2  # a's dead fetch and b's one, for its ten clients
        assert stats["max_in_flight"] == 1  # b fetched only after a's lease was gone
    finally:
        fleet.stop()


def test_grace_over_two_proxies_refreshes_once(origin, tmp_path):
    # Stale on arrival (Age 20 > max-age 10) and inside stale-while-revalidate: every request
    # on either proxy is answered stale at once, and one background refresh runs for the fleet
    # (the proxy that finds the lease taken does not refresh).
    origin.script("/news", sequence=[
        {"headers": {"Cache-Control": "max-age=10, stale-while-revalidate=60", "Age": "20"},
         "body": "news #{n}"},
        {"delay": 2, "headers": {"Cache-Control": "max-age=60"}, "body": "news #{n}"}])
    fleet = Fleet(origin, tmp_path, 2)
    try:
        a, b = fleet.proxies
        assert a.get("/news", HOST).cache == "MISS"
        results = herd(fleet.proxies, 20, "/news")
        assert [(r.cache, r.body) for r in results] == [("STALE", b"news #1")] * 20
        # The refresh runs in the background: it may reach the origin after the last answer.
        eventually(lambda: origin.stats("/news")["count"] == 2, what="the background refresh")
        assert origin.stats("/news")["in_flight"] == 1  # one refresh, still running (2 s)
        for px in fleet.proxies:
            eventually(lambda px=px: px.get("/news", HOST).body == b"news #2",
                       what="the refreshed object")
        assert origin.count("/news") == 2
    finally:
        fleet.stop()


def test_stale_hits_during_another_proxys_refresh_cost_no_lease_attempt_each(origin, tmp_path):
    # a refreshes (3 s at the origin) holding the lease; b serves 200 stale hits meanwhile. b's
    # refresh flight stays open while a's lease is held (a poll's time, 1 s), so its stale hits
    # join it instead of each sending the store a lease attempt (SET ... NX).
    origin.script("/hot", sequence=[
        {"headers": {"Cache-Control": "max-age=10, stale-while-revalidate=60", "Age": "20"},
         "body": "hot #{n}"},
        {"delay": 3, "headers": {"Cache-Control": "max-age=60"}, "body": "hot #{n}"}])
    fleet = Fleet(origin, tmp_path, 2)
    a, b = fleet.proxies
    try:
        assert a.get("/hot", HOST).cache == "MISS"
        assert a.get("/hot", HOST).cache == "STALE"  # a's refresh starts
        eventually(lambda: origin.stats("/hot")["in_flight"] == 1, what="a's refresh")
        before = fleet.sets()
        for _ in range(200):
            r = b.get("/hot", HOST)
            assert (r.cache, r.body) == ("STALE", b"hot #1"), r
        sets = fleet.sets() - before
        stats = origin.stats("/hot")
        assert stats["in_flight"] == 1 and stats["count"] == 2  # all during a's refresh
        print("fleet: 200 stale hits on the other proxy during a refresh sent %d SETs" % sets)
        assert sets <= 8, sets  # a few per worker of b's, not one per hit
    finally:
        fleet.stop()
