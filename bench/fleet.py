#!/usr/bin/python3
"""The fleet benchmark (issue 16, section 3); bench/fleet.sh starts it, `make bench-fleet` runs it.

    bench/fleet.py PROXY        BENCH_SECONDS=10 (each measured run), BENCH_RUNS=1 (hits: the
                                median of this many runs), FLEET_SIZES=2,4,
                                FLEET_KINDS=redis,redis-far,cluster,varnish,nginx

One origin (tests/e2e/origin.py, 200 ms per answer on the herd paths) behind fleets of 2, then 4:
  - corral-proxy instances (1 thread each, access log off) on one redis-server, with the near
    cache (redis://...?near_cache=64MB: "redis"), then without it ("redis-far");
  - corral-proxy instances on a 3-primary Redis Cluster with a replica each (started by
    scripts/redis-cluster), with the near cache, or without it when the store refuses it there
    (the row says why); "n/a" with the reason when the script or the cluster store is missing
    (the URL is tried with `corral get` before anything is measured);
  - Varnish instances and nginx proxy_cache instances, each with its own cache as they are
    deployed (the setups of bench/proxy.sh).
Each instance is set up to use one core: corral-proxy --threads 1 (one event loop), nginx 1
worker, Varnish -p thread_pools=1 (one pool; its worker threads are still one per connection,
so it alone can spread over more than one core). The clients are spread evenly over a fleet's
instances (client i on instance i mod N; wrk runs one thread per instance, 2 for a fleet of 1,
and thread i sends to instance i mod N, bench/fleet.lua). For each fleet one table row:
  - cold herd: each instance first fetches an object of its own (its store and origin
    connections open, as in a fleet that serves); then 3 times 100 clients released together
    on a never-cached object: origin requests per herd (target for corral: 1, whatever the
    fleet's size); the last answer, ms from the release (answers timed by the kernel,
    benchlib.herd), the median herd's and each herd's, and the median's over the origin alone
    (one request straight to it, same client, the least of 5; target: 10 at most); for
    corral, in the median herd, when the origin read the request and the last answer to the
    leader's client (MISS), to the rest of its proxy, and to the other proxies;
  - steady herd: one request per instance, sent together, stores an object with max-age=1
    everywhere; then 200 connections for BENCH_SECONDS: origin requests per expiry (target for
    corral: at most 1.2), counting only the origin requests from the start of that run (`begin`
    leaves the warm-up's out). A copy's age counts from the origin's Date, in whole seconds, so
    the first refetch comes less than 1 s after the warm-up (0.6-0.8 s in runs here), the later
    ones on the origin's whole seconds, the instances in step. expiries() groups the request
    times: a request more than 0.5 s after its group's first begins a new group, an expiry;
  - hits: 64 connections for BENCH_SECONDS over 64 stored 1 KB objects: requests/s of the
    fleet and p99;
  - store node killed (corral only): the hits run again (for BENCH_SECONDS, at least 10: a
    cluster's failover takes about 3 s), and a third of the way in the redis-server is killed
    (SIGKILL) and started again at once on its port, empty (as systemd's Restart= would), or one
    cluster primary is killed (its replica takes over): errors (non-2xx answers, failed and
    timed-out requests, of wrk and of the probe), p99, and the time to recover: from the kill to
    the last answer, of a probe asking each instance in turn every few ms, that was not a HIT.
Everything runs on loopback on the machine's cores; the numbers compare, they do not bound.
"""
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ROOT, Bench, Stopped, free_port, herd, request, versions,  # noqa: E402
                      wrk)

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "1"))
KILL_SECONDS = max(SECONDS, 10)  # a cluster fails over in ~3 s (scripts/redis-cluster)
SIZES = [int(n) for n in os.environ.get("FLEET_SIZES", "2,4").split(",")]
KINDS = os.environ.get("FLEET_KINDS", "redis,redis-far,cluster,varnish,nginx").split(",")
ORIGIN_S = 0.2
COLD_CLIENTS = 100
COLD_HERDS = 3
STEADY_CONNS = 200
HIT_CONNS = 64
HOT = 64
EXPIRY_WINDOW_S = 0.5
LUA = os.path.join(ROOT, "bench", "fleet.lua")
NEAR = "near_cache=64MB"
HOST = {"Host": "fleet"}  # one Host everywhere, whichever instance is asked: one cache key


class NotAvailable(Exception):
    """A fleet that cannot run here; its message goes in the table."""


class FleetFailed(Exception):
    """A fleet whose run went wrong (a process exited, the store's kill failed): the table so far
    is printed and the bench exits 1."""


def describe(e):
    """One exception as one line or a few: what the bench says about a failure."""
    if isinstance(e, SystemExit):
        return str(e.code)
    if isinstance(e, subprocess.CalledProcessError):
        return "%s exited with code %d: %s" % (e.cmd[0], e.returncode,
                                                last_line(e.stderr or e.stdout or "", e.returncode))
    return "%s: %s" % (type(e).__name__, e)


# ---- the stores -----------------------------------------------------------------------------

class Redis:
    """One redis-server on a free port, used with the near cache or without it; kill() kills it
    and starts it again at once."""

    def __init__(self, bench, near):
        self.bench = bench
        self.port = free_port()
        self.start()
        self.name = "redis-server" + (" + near cache" if near else ", no near cache")
        self.url = "redis://127.0.0.1:%d/0?key_prefix=fleet" % self.port + ("&" + NEAR if near
                                                                          else "")

    def start(self):
        self.proc = self.bench.start("redis-%d" % self.port, [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no"])
        self.bench.wait_port(self.port, self.proc, "redis-%d" % self.port)

    def procs(self):
        return [self.proc]

    def kill(self):
        """Raises SystemExit (bench.wait_port's) when the new redis-server does not start."""
        self.proc.kill()
        self.proc.wait()
        self.bench.procs.remove(self.proc)
        self.start()
        return "redis-server killed (SIGKILL), started again at once, empty"

    def stop(self):
        self.bench.stop([self.proc])


class Cluster:
    """A Redis Cluster of 3 primaries with a replica each, started by scripts/redis-cluster (which
    prints the seed list; OWNER_PID: its nodes go with this process), tried with the near cache
    and then without it. NotAvailable when the script or the cluster store is missing. Once
    started it is one of the bench's cleanups, so stop_all stops it whatever fails after."""

    def __init__(self, bench, cli):
        self.script = os.path.join(ROOT, "scripts", "redis-cluster")
        if not os.access(self.script, os.X_OK):
            raise NotAvailable("n/a (cluster store not built: no scripts/redis-cluster)")
        self.dir = os.path.join(bench.work, "cluster-%d" % free_port())
        r = subprocess.run([self.script, "start", self.dir, "6", "1"], capture_output=True,
                           text=True, timeout=180, env=dict(os.environ, OWNER_PID=str(os.getpid())))
        if r.returncode != 0:
            raise NotAvailable("n/a (scripts/redis-cluster: %s)"
                               % last_line(r.stderr, r.returncode))
        bench.cleanups.append(self.stop)
        self.bench = bench
        seeds = r.stdout.strip()
        self.name = "3-primary cluster + near cache"
        self.url = "redis+cluster://%s/?key_prefix=fleet&%s" % (seeds, NEAR)
        why = self.try_url(cli)
        if why:
            self.name = "3-primary cluster, no near cache (%s)" % why
            self.url = "redis+cluster://%s/?key_prefix=fleet" % seeds
            why = self.try_url(cli)
            if why:
                self.stop()
                raise NotAvailable("n/a (cluster store not built: %s)" % why)

    def try_url(self, cli):
        """None when `corral get` through the URL answers (a miss), else why not."""
        r = subprocess.run([cli, "get", self.url, "fleet-probe"], capture_output=True, text=True,
                           timeout=30)
        if r.returncode == 1:
            return None
        why = last_line(r.stderr, r.returncode)  # "corral get: URL: url: unknown scheme ..."
        return why.split(": url: ")[-1].split(" (known:")[0]

    def procs(self):
        return []  # the nodes are the script's (it kills them when this process is gone)

    def kill(self):
        r = subprocess.run([self.script, "kill-primary", self.dir], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("scripts/redis-cluster kill-primary: %s"
                               % last_line(r.stderr, r.returncode))
        return "a primary killed (SIGKILL), its replica takes over"

    def stop(self):
        if self.stop in self.bench.cleanups:
            self.bench.cleanups.remove(self.stop)
            subprocess.run([self.script, "stop", self.dir], capture_output=True, timeout=60)


def last_line(text, rc):
    lines = text.strip().splitlines()
    return lines[-1] if lines else "exit %d" % rc


# ---- the fleets -----------------------------------------------------------------------------

class Fleet:
    def __init__(self, kind, n, ports, procs, store=None):
        self.kind, self.n, self.ports, self.procs, self.store = kind, n, ports, procs, store

    def needs(self, origin):
        """The processes the fleet needs: its instances, its redis-server, the origin."""
        return self.procs + (self.store.procs() if self.store else []) + [origin.proc]

    def check(self, bench, origin, after):
        """FleetFailed when one of the processes it needs has exited (bench.exited says how)."""
        why = bench.exited(self.needs(origin))
        if why:
            raise FleetFailed("after %s: %s" % (after, why))


def start_corral(bench, proxy, origin, n, store):
    ports, procs = [], []
    for i in range(n):
        port = free_port()
        name = "corral-%d" % port
        p = bench.start(name, [proxy, "--origin", "http://127.0.0.1:%d" % origin.port,
                               "--listen", "127.0.0.1:%d" % port, "--threads", "1",
                               "--access-log", "off", "--store", store.url])
        bench.wait_port(port, p, name)
        ports.append(port)
        procs.append(p)
    return ports, procs


def start_fleet(bench, proxy, cli, origin, kind, n):
    """The fleet of `kind` and size n, or NotAvailable."""
    if kind in ("redis", "redis-far", "cluster"):
        store = Cluster(bench, cli) if kind == "cluster" else Redis(bench, kind == "redis")
        ports, procs = start_corral(bench, proxy, origin, n, store)
        return Fleet(kind, n, ports, procs, store)
    ports = [free_port() for _ in range(n)]
    if kind == "varnish":
        procs = [bench.start_varnish("varnish-%d" % p, p, origin.port, "64m", ["thread_pools=1"])
                 for p in ports]
    else:
        procs = [bench.start_nginx("nginx-%d" % p, p, origin.port, workers=1) for p in ports]
    return Fleet(kind, n, ports, procs)


def stop_fleet(bench, fleet):
    bench.stop(fleet.procs)
    if fleet.store:
        fleet.store.stop()


# ---- the measurements -----------------------------------------------------------------------

def fleet_wrk(fleet, path, conns, paths=1, seconds=SECONDS):
    threads = fleet.n * max(1, 2 // fleet.n)
    return wrk("http://127.0.0.1:%d/" % fleet.ports[0], conns, seconds, threads=threads,
               script=LUA, timeout="10s",
               env={"FLEET_PORTS": ",".join(map(str, fleet.ports)), "FLEET_PATH": path,
                    "FLEET_PATHS": str(paths)})


def expiries(times):
    """The origin request times grouped into expiries (see the opening comment)."""
    groups = []
    for t in sorted(times):
        if not groups or t - groups[-1][0] > EXPIRY_WINDOW_S:
            groups.append([t])
        else:
            groups[-1].append(t)
    return groups


class Probe(threading.Thread):
    """Asks each instance in turn for one of the hot objects, every few ms, until stopped;
    keeps (time answered, ok, X-Cache)."""

    def __init__(self, fleet, tag):
        super().__init__(daemon=True)
        self.fleet, self.tag = fleet, tag
        self.samples = []
        self.halt = threading.Event()

    def run(self):
        conns = {}
        k = 0
        while not self.halt.is_set():
            port = self.fleet.ports[k % self.fleet.n]
            path = "/%s/hot/%d" % (self.tag, k % HOT)
            k += 1
            try:
                c = conns.get(port) or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conns[port] = c
                c.request("GET", path, headers=HOST)
                r = c.getresponse()
                r.read()
                self.samples.append((time.monotonic(), r.status == 200, r.getheader("X-Cache")))
            except (OSError, http.client.HTTPException):
                conns.pop(port, None)
                self.samples.append((time.monotonic(), False, None))
            time.sleep(0.005)


def warm_up(fleet, tag):
    """One request per instance, each for an object of its own: the instance connects to its
    store (and starts its lease subscriber) and to the origin, as a fleet that serves has done
    long before a herd comes. Without it the herd's leader opens the origin connection while
    its proxy looks up the rest of the herd, one store read each, and asks the origin only
    after them (docs/deployment.md measures that case)."""
    for i, port in enumerate(fleet.ports):
        request(port, "GET", "/%s/warm/%d" % (tag, i), headers=HOST)


def origin_alone(origin):
    """The origin's time as the herd's client sees it: one request straight to the origin, the
    least of 5, in ms (its 200 ms and its and the client's overhead; the least, since a floor
    taken while the machine was busy would hide the fleet's own time)."""
    times = []
    for i in range(5):
        path = "/alone/%d" % i
        origin.script(path, body_size=1024, delay=ORIGIN_S)
        times.append(herd([origin.port], path, 1)[1][0][1])
    return min(times)


def herd_parts(fleet, t0, asked, answers):
    """For a fleet of corral-proxy, ms from the herd's release: when the origin read the
    request, and when the last answer came to the leader's client (its X-Cache is MISS), to
    the other clients of the leader's proxy, and to the clients of the other proxies."""
    if not fleet.store:
        return "n/a (own caches)"
    leaders = [a for a in answers if a[2] == "MISS"]
    if len(leaders) != 1 or not asked:
        return "n/a (%d MISS answers)" % len(leaders)
    lead = leaders[0]
    own = [a[1] for a in answers if a[0] == lead[0] and a is not lead]
    others = [a[1] for a in answers if a[0] != lead[0]]
    at = (min(r["time"] for r in asked) - t0) * 1000  # the origin's clock is this machine's
    return "%.0f / %.0f / %s / %s" % (at, lead[1], "%.0f" % max(own) if own else "none",
                                      "%.0f" % max(others) if others else "none")


def measure(bench, origin, fleet, tag, alone):
    res = {}
    hdr = {"Cache-Control": "max-age=3600"}

    # The cold herds, on a fleet that serves (warm_up), each on an object of its own: one herd
    # is one sample of a shared machine's scheduling; the median herd (by its last answer)
    # fills the row.
    warm_up(fleet, tag)
    herds = []
    for k in range(COLD_HERDS):
        cold = "/%s/cold/%d" % (tag, k)
        origin.script(cold, body_size=1024, delay=ORIGIN_S, headers=hdr)
        t0, answers = herd(fleet.ports, cold, COLD_CLIENTS)
        fleet.check(bench, origin, "the cold herd")
        asked = origin.stats(cold)["requests"]
        herds.append((max(a[1] for a in answers), len(asked), t0, asked, answers))
    herds.sort(key=lambda h: h[0])
    last, _, t0, asked, answers = herds[len(herds) // 2]
    counts = sorted(set(h[1] for h in herds))
    res["cold"] = " or ".join("%d" % c for c in counts)
    res["cold_last"] = "%.0f (%s)" % (last, " ".join("%.0f" % h[0] for h in herds))
    res["cold_over"] = "%.0f" % (last - alone)
    res["cold_parts"] = herd_parts(fleet, t0, asked, answers)

    # The steady herd: every instance has the object, then 200 connections for SECONDS.
    steady = "/%s/steady" % tag
    origin.script(steady, body_size=1024, delay=ORIGIN_S, headers={"Cache-Control": "max-age=1"})
    warm = [threading.Thread(target=request, args=(port, "GET", steady), kwargs={"headers": HOST})
            for port in fleet.ports]  # together: caches of their own begin in step
    for t in warm:
        t.start()
    for t in warm:
        t.join()
    begin = time.monotonic()
    fleet_wrk(fleet, steady, STEADY_CONNS)
    fleet.check(bench, origin, "the steady herd")
    times = [r["time"] for r in origin.stats(steady)["requests"] if r["time"] >= begin]
    groups = expiries(times)
    res["steady"] = "%.2f (%d/%d)" % (len(times) / len(groups), len(times), len(groups)) \
        if groups else "no expiry"

    # Hits over 64 objects, each stored on every instance first.
    hot = "/%s/hot/%%d" % tag
    for i in range(HOT):
        origin.script(hot % i, body_size=1024, headers=hdr)
        for port in fleet.ports:
            request(port, "GET", hot % i, headers=HOST)
    runs = [fleet_wrk(fleet, hot, HIT_CONNS, HOT) for _ in range(RUNS)]
    fleet.check(bench, origin, "the hits")
    res["rps"] = "%.0f" % statistics.median(r["rps"] for r in runs)
    res["p99"] = "%.2f" % statistics.median(r["p99"] for r in runs)

    # The same with a store node killed a third of the way in.
    if not fleet.store:
        res["kill"] = res["kill_p99"] = res["recover"] = "n/a (own caches)"
        return res
    probe = Probe(fleet, tag)
    killed = {}
    cancel = threading.Event()

    def kill():
        if cancel.wait(KILL_SECONDS / 3):
            return
        killed["at"] = time.monotonic()
        try:
            killed["what"] = fleet.store.kill()
        except BaseException as e:  # SystemExit too: a redis-server that did not start again
            killed["error"] = describe(e)

    killer = threading.Thread(target=kill, daemon=True)
    probe.start()
    killer.start()
    try:
        r = fleet_wrk(fleet, hot, HIT_CONNS, HOT, KILL_SECONDS)
    except BaseException:
        cancel.set()  # no kill (nor a restarted store) after the bench has moved on
        raise
    finally:
        killer.join()
        probe.halt.set()
        probe.join()
    if "error" in killed:
        raise FleetFailed("killing the store node: %s" % killed["error"])
    if "at" not in killed:
        raise FleetFailed("the store node was not killed within the %d s run" % KILL_SECONDS)
    fleet.check(bench, origin, "the run with the store node killed")
    after = [s for s in probe.samples if s[0] >= killed["at"]]
    bad = [s for s in after if not (s[1] and s[2] == "HIT")]
    probe_errors = sum(1 for s in probe.samples if not s[1])
    res["kill"] = "%d" % (r["non2xx"] + r["socket_errors"] + probe_errors)
    res["kill_p99"] = "%.1f" % r["p99"]
    if not after:
        res["recover"] = "n/a (no probe answer after the kill)"
    elif not bad:
        res["recover"] = "0 (no miss)"
    elif bad[-1] is after[-1]:
        res["recover"] = "not in %.1f s" % (after[-1][0] - killed["at"])
    else:
        res["recover"] = "%.2f" % (bad[-1][0] - killed["at"])
    res["killed"] = killed["what"]
    return res


def main():
    proxy = os.path.abspath(sys.argv[1])
    cli = os.path.join(os.path.dirname(proxy), "corral")
    nginx_v, varnish_v = versions()
    label = {
        "redis": "corral-proxy, redis-server + near cache",
        "redis-far": "corral-proxy, redis-server, no near cache",
        "cluster": "corral-proxy, 3-primary cluster",
        "varnish": "Varnish %s, own caches" % varnish_v,
        "nginx": "nginx %s proxy_cache, own caches" % nginx_v,
    }
    unknown = [k for k in KINDS if k not in label]
    if unknown:
        sys.exit("bench/fleet.py: FLEET_KINDS: unknown %s (known: %s)" % (
            ", ".join(unknown), ",".join(label)))
    rows = []
    notes = set()
    failed = None
    bench = Bench("corral-fleet-")
    try:
        origin = bench.start_origin()
        alone = origin_alone(origin)
        for n, kind in [(n, kind) for n in SIZES for kind in KINDS]:
            name = "%d x %s" % (n, label[kind])
            print("fleet: %s" % name, file=sys.stderr, flush=True)
            fleet = None
            try:
                fleet = start_fleet(bench, proxy, cli, origin, kind, n)
                if fleet.store:
                    name = "%d x corral-proxy, %s" % (n, fleet.store.name)
                res = measure(bench, origin, fleet, "%s%d" % (kind, n), alone)
            except NotAvailable as e:
                rows.append((name, None, str(e)))
                continue
            except Stopped:
                raise
            except (Exception, SystemExit) as e:
                # A process that exited explains a failed request better than the request does.
                dead = fleet and bench.exited(fleet.needs(origin))
                if isinstance(e, FleetFailed):
                    failed = str(e)
                elif dead:
                    failed = "%s\n(what the bench saw: %s)" % (dead, describe(e))
                else:
                    if not isinstance(e, SystemExit):  # not one of the bench's own messages
                        traceback.print_exc()
                    failed = describe(e)
                bench.keep_work()
                rows.append((name, None, "FAILED: " + failed.splitlines()[0]))
                break
            finally:
                if fleet:
                    stop_fleet(bench, fleet)
            if "killed" in res:
                notes.add("%s: %s" % (fleet.store.name.split(" (")[0], res["killed"]))
            rows.append((name, res, None))
    finally:
        bench.stop_all()

    cols = [("cold herd: origin requests", "cold"),
            ("cold herd: last answer ms, median (each herd)", "cold_last"),
            ("cold herd: the median's last answer over the origin alone ms", "cold_over"),
            ("cold herd, the median: origin asked / leader / leader's proxy / other proxies ms",
             "cold_parts"),
            ("steady herd: origin req. per expiry (req/expiries)", "steady"),
            ("hits/s", "rps"), ("hit p99 ms", "p99"),
            ("node killed: errors", "kill"), ("killed: p99 ms", "kill_p99"),
            ("time to recover s", "recover")]
    print("The fleet: origin %d ms per answer (%.1f ms alone: one request straight to it); %d s "
          "per run (hits: median of %d); %d cores"
          % (ORIGIN_S * 1000, alone, SECONDS, RUNS, os.cpu_count()))
    print()
    print("| fleet | " + " | ".join(c[0] for c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, res, why in rows:
        cells = [why] + [""] * (len(cols) - 1) if res is None else [res[k] for _, k in cols]
        print("| %s | %s |" % (name, " | ".join(cells)))
    print()
    for note in sorted(notes):
        print("node killed, %s" % note)
    print("targets for corral: 1 origin request per cold herd whatever the fleet's size, every "
          "client answered within the origin's time + 10 ms (over the origin alone: 10 at most); "
          "at most 1.2 origin requests per expiry")
    if failed:
        sys.exit("bench/fleet.py: %s: %s" % (rows[-1][0], failed))


if __name__ == "__main__":
    main()
