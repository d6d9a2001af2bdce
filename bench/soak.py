#!/usr/bin/python3
"""The soak-and-chaos run of corral-proxy (issue 12, section 4); bench/soak.sh starts it.

    bench/soak.py PROXY [--seconds 300]     SOAK_SECONDS, split between the two stores

corral-proxy runs on the embedded memory store, then on a real redis-server, in front of an
origin of this process (asyncio, standard library only) that can fail on command. The time of
each store is cut in windows: quiet ones and fault ones, alternating, the faults in a fixed
order. During every window:
  - wrk (2 threads, 32 connections, bench/soak.lua) GETs the hot set /hot/0..199 (stored for
    hours, never purged), checks every body and reports the window's p99;
  - checkers GET stored objects (/obj/gJ/I, purged by the purger), one-off URLs that always
    miss (/obj/...?u=N), hot objects and large objects that expire every few seconds (/big/I),
    and check every 200 body exactly against the origin's generator (target and version);
  - a purger bumps an object's version at the origin, then purges it by URL, by surrogate key
    or by path prefix while fills of it are in flight; once a purge answered 200, any answer
    to a request sent later must carry the new version (a purged object served is counted).
Faults: origin resets mid-body, 5xx bursts, a stalling origin, interim 1xx answers, an origin
closing its idle connections, slowloris clients, a burst of 5,000 idle connections, keep-alive
requests with bodies, a second corral-proxy on the same port, purges racing fills; on Redis:
killed and restarted, SIGSTOPped for 3 s, full with noeviction.
At the end one table: requests and errors by kind per window, wrong bodies, purged objects
served, hit p99 in quiet and fault windows, RSS and open fds of the proxy at start, middle and
end, and whether it crashed. Exit status 0 only when the run is clean: no wrong body, no purged
object served, no crash, no error in a quiet window and no error of a kind its fault does not
explain (the "unexpected" column).
"""
import argparse
import asyncio
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
N_HOT, N_OBJ, N_BIG, N_GROUPS, N_KEYS = 200, 400, 16, 8, 20
CHECKERS = 8
IDLE_BURST = 5000
SLOWLORIS = 300
CLIENT_TIMEOUT_S = 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body_of(target, version):
    """The origin's body for `target` at `version`: a self-describing first line, repeated."""
    path = target.split("?")[0]
    n = int(path.rsplit("/", 1)[1]) if path.rsplit("/", 1)[1].isdigit() else 0
    if path.startswith("/hot/"):
        length = 1024 + (n * 37) % 7168
    elif path.startswith("/big/"):
        length = 65536 + n * 12288
    else:
        length = 512 + (n * 131) % 24576
    first = b"corral-soak %s %d %d\n" % (target.encode(), version, length)
    return (first * (length // len(first) + 1))[:length]


# ---- the origin -------------------------------------------------------------------------------

class Origin:
    """An HTTP/1.1 origin whose answers are generated from (target, version) and which fails
    as `mode` says: "reset" (head and half the body, then a reset), "5xx" (503), "stall" (no
    answer until the proxy gives up), "hints" (a 103 before the answer), "close_idle" (closes
    every connection 0-20 ms after its answer, without saying so)."""

    def __init__(self):
        self.versions = {}  # path -> version (1 when absent)
        self.mode = None
        self.requests = 0
        self.server = None
        self.port = None

    def version(self, path):
        return self.versions.get(path, 1)

    def bump(self, paths):
        for p in paths:
            self.versions[p] = self.version(p) + 1

    async def start(self):
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0, backlog=1024)
        self.port = self.server.sockets[0].getsockname()[1]

    async def serve(self, reader, writer):
        try:
            first = True
            while True:
                if self.mode == "close_idle" and not first:
                    # Closes an idle connection after 0-20 ms, as a short idle timeout would,
                    # without Connection: close: the proxy finds out when it reuses it.
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                                  random.random() * 0.02)
                else:
                    head = await reader.readuntil(b"\r\n\r\n")
                first = False
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                fields = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        fields[k.strip().lower()] = v.strip()
                if fields.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int((await reader.readline()).split(b";")[0], 16)
                        await reader.readexactly(size + 2)
                        if size == 0:
                            break
                elif int(fields.get("content-length", "0")):
                    await reader.readexactly(int(fields["content-length"]))
                self.requests += 1
                if not await self.answer(writer, method, target):
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def answer(self, writer, method, target):
        """Writes one answer; returns False when the connection must end."""
        path = target.split("?")[0]
        mode = self.mode if not path.startswith("/hot/") else None
        if path.startswith("/form"):
            writer.write(b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 2\r\n"
                         b"\r\nok")
            await writer.drain()
            return True
        if mode == "stall":
            await asyncio.sleep(8)  # past the proxy's origin_read_timeout (3 s)
            return False
        if mode == "5xx":
            writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 5\r\nX-Soak-Origin: 1\r\n"
                         b"Cache-Control: no-store\r\n\r\nbusy\n")
            await writer.drain()
            return True
        version = self.version(path)
        body = body_of(target, version)
        if path.startswith("/hot/"):
            cc, keys = "max-age=100000", "hot"
        elif path.startswith("/big/"):
            cc, keys = "max-age=3", "big"
        else:
            n = int(path.rsplit("/", 1)[1])
            cc, keys = "max-age=600", "k%d" % (n % N_KEYS)
            await asyncio.sleep(random.random() * 0.05)  # fills stay in flight a while
        if mode == "hints":
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
        head = ("HTTP/1.1 200 OK\r\nCache-Control: %s\r\nSurrogate-Key: %s\r\n"
                "Content-Length: %d\r\nX-Soak-Version: %d\r\n\r\n" % (cc, keys, len(body), version))
        writer.write(head.encode())
        if method == "HEAD":
            await writer.drain()
            return True
        if mode == "reset":
            writer.write(body[:len(body) // 2])
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            return False
        writer.write(body)
        await writer.drain()
        return True


# ---- a small HTTP/1.1 client --------------------------------------------------------------------

class Failure(Exception):
    """A request that got no complete answer; `kind` names how it failed."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


async def read_answer(reader, method="GET"):
    """Reads one final answer (interim 1xx heads are skipped): (status, fields, body)."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            raise Failure("closed without answer" if not e.partial else "head cut short")
        except ConnectionResetError:
            raise Failure("reset")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.strip()
        if status >= 200:
            break
    try:
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "content-length" in fields:
            body = await reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                body += await reader.readexactly(size)
                await reader.readexactly(2)
                if size == 0:
                    break
        else:
            body = await reader.read()
    except (asyncio.IncompleteReadError, ValueError):
        raise Failure("body cut short")
    except ConnectionResetError:
        raise Failure("body cut short")
    return status, fields, body


class Conn:
    def __init__(self, port):
        self.port = port
        self.reader = self.writer = None
        self.used = 0

    async def request(self, method, target, body=b"", fields=""):
        if self.writer is None or self.used >= 50:
            self.close()
            try:
                self.reader, self.writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port), CLIENT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError):
                raise Failure("connect failed")
            self.used = 0
        self.used += 1
        req = "%s %s HTTP/1.1\r\nHost: soak\r\n%s" % (method, target, fields)
        if body:
            req += "Content-Length: %d\r\n" % len(body)
        try:
            self.writer.write(req.encode() + b"\r\n" + body)
            r = await asyncio.wait_for(read_answer(self.reader, method), CLIENT_TIMEOUT_S)
        except asyncio.TimeoutError:
            self.close()
            raise Failure("client timeout")
        except (Failure, OSError) as e:
            self.close()
            raise e if isinstance(e, Failure) else Failure("reset")
        if r[1].get("connection", "").lower() == "close":
            self.close()
        return r

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# ---- the run ------------------------------------------------------------------------------------

class Tally:
    """Counts per window: requests, ok, and failures by kind."""

    def __init__(self):
        self.rows = {}  # window name -> {"requests": n, kind: n, ...}
        self.window = "warm-up"

    def count(self, kind=None, window=None):
        row = self.rows.setdefault(window or self.window, {"requests": 0})
        row["requests"] += 1
        if kind:
            row[kind] = row.get(kind, 0) + 1


# Each fault: the error kinds it explains (checkers and wrk); anything else is unexpected.
FAULTS = {
    "origin reset mid-body": {"502", "body cut short", "closed without answer"},
    "origin 5xx burst": {"503 from origin"},
    "origin stall": {"504", "body cut short"},
    "origin 1xx (103)": set(),
    "origin closes idle conns": set(),
    "slowloris x300": set(),
    "5000 idle conns": set(),
    "POST bodies keep-alive": set(),
    "second proxy same port": set(),
    "purges racing fills": set(),
    "redis killed+restarted": set(),
    "redis SIGSTOP 3s": set(),
    "redis full noeviction": set(),
}
REDIS_FAULTS = ("redis killed+restarted", "redis SIGSTOP 3s", "redis full noeviction")


class Soak:
    def __init__(self, proxy_bin, store, seconds, work):
        self.proxy_bin = proxy_bin
        self.store = store
        self.seconds = seconds
        self.work = work
        self.tally = Tally()
        self.origin = Origin()
        self.redis = None
        self.redis_port = None
        self.proxy = None
        self.floors = {}  # path -> (version, time its purge answered)
        self.wrong_bodies = []
        self.purged_served = []
        self.purges = {}
        self.samples = []  # (label, rss_kb, fds)
        self.wrk = []  # (window, json)
        self.stop = False
        self.seq = 0
        self.t0 = time.monotonic()
        self.log = open(os.path.join(work, "failures-%s.log" % store), "w")  # one line each

    # -- processes
    def start_redis(self):
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--save", "", "--appendonly", "no",
             "--bind", "127.0.0.1", "--maxclients", "2000"],
            stdout=subprocess.DEVNULL, cwd=self.work)

    async def redis_cmd(self, *args):
        r, w = await asyncio.open_connection("127.0.0.1", self.redis_port)
        w.write(b"*%d\r\n" % len(args) +
                b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args))
        line = await asyncio.wait_for(r.readline(), 10)
        if line.startswith(b"$"):
            line = await r.readline()
        w.close()
        return line.decode().strip()

    async def wait_port(self, port, proc):
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit("soak: a process exited at startup (%s)" % proc.args[0])
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise SystemExit("soak: port %d did not open" % port)

    def proxy_cmd(self, origin_port, listen_port, admin_port=None):
        cmd = [self.proxy_bin, "--origin", "http://127.0.0.1:%d" % origin_port, "--listen",
               "127.0.0.1:%d" % listen_port, "--threads", "2", "--access-log", "off",
               "--set", "limits.origin_read_timeout=3s", "--store", self.store_url]
        if admin_port:
            cmd += ["--admin", "127.0.0.1:%d" % admin_port]
        return cmd

    def sample(self, label):
        pid = self.proxy.pid
        try:
            with open("/proc/%d/status" % pid) as f:
                rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            fds = len(os.listdir("/proc/%d/fd" % pid))
        except (OSError, StopIteration):
            rss = fds = -1
        self.samples.append((label, rss, fds))
        self.log.write("%.3f sample %s rss_kb=%d fds=%d\n" % (time.monotonic() - self.t0, label,
                                                             rss, fds))

    # -- checks
    def check(self, target, sent_at, status, fields, body, window):
        path = target.split("?")[0]
        if status != 200:
            if status == 503 and fields.get("x-soak-origin"):
                return "503 from origin"
            return str(status)
        try:
            first = body.split(b"\n", 1)[0].split()
            version = int(first[2])
        except (IndexError, ValueError):
            version = -1
        if version < 1 or body != body_of(target, version):
            self.wrong_bodies.append((window, target, body[:80]))
            return "wrong body"
        floor = self.floors.get(path)
        if floor and floor[1] < sent_at and version < floor[0]:
            self.purged_served.append((window, target, version, floor[0]))
            return "purged object served"
        return None

    async def one(self, conn, method, target, body=b"", fields=""):
        """One request, counted in the window it was sent in, or in the fault that began
        while it was in flight."""
        sent_at, window = time.monotonic(), self.tally.window
        try:
            status, hdrs, data = await conn.request(method, target, body, fields)
            if method == "POST":
                kind = None if status == 200 else str(status)
            else:
                kind = self.check(target, sent_at, status, hdrs, data, window)
        except Failure as f:
            status, kind = None, f.kind
        if window == "quiet" and self.tally.window != "quiet":
            window = self.tally.window
        self.tally.count(kind, window)
        if kind:
            self.log.write("%.3f %s %s %s %s\n" % (time.monotonic() - self.t0, window, method,
                                                   target, kind))
        return status

    async def checker(self, k):
        conn = Conn(self.port)
        rnd = random.Random(k)
        last = None
        while not self.stop:
            window = self.tally.window
            if window != last:  # a new connection per window: none carries a fault's damage
                conn.close()
                last = window
            x = rnd.random()
            if x < 0.4:
                i = rnd.randrange(N_OBJ)
                target = "/obj/g%d/%d" % (i % N_GROUPS, i)
            elif x < 0.6:
                self.seq += 1
                i = rnd.randrange(N_OBJ)
                target = "/obj/g%d/%d?u=%d" % (i % N_GROUPS, i, self.seq)
            elif x < 0.85:
                target = "/hot/%d" % rnd.randrange(N_HOT)
            else:
                target = "/big/%d" % rnd.randrange(N_BIG)
            await self.one(conn, "GET", target)
            if window == "POST bodies keep-alive" and k % 2 == 0:
                await self.one(conn, "POST", "/form", b"field=%d" % rnd.randrange(1000))
        conn.close()

    async def purger(self):
        """Purges one object, one key or one group every ~100 ms; during "purges racing fills"
        also fires fills of what it purges first, so that they are in flight meanwhile."""
        conn = Conn(self.port)
        rnd = random.Random(99)
        while not self.stop:
            racing = self.tally.window == "purges racing fills"
            await asyncio.sleep(0.02 if racing else 0.1)
            kind = rnd.choice(("url", "key", "prefix"))
            if kind == "url":
                i = rnd.randrange(N_OBJ)
                paths = ["/obj/g%d/%d" % (i % N_GROUPS, i)]
                req = ("PURGE", paths[0], "")  # Host: soak, as the checkers ask
            elif kind == "key":
                k = rnd.randrange(N_KEYS)
                paths = ["/obj/g%d/%d" % (i % N_GROUPS, i) for i in range(k, N_OBJ, N_KEYS)]
                req = ("POST", "/purge/key/k%d" % k, "")
            else:
                g = rnd.randrange(N_GROUPS)
                paths = ["/obj/g%d/%d" % (g, i) for i in range(g, N_OBJ, N_GROUPS)]
                req = ("POST", "/purge/prefix/obj/g%d" % g, "")
            fills = []
            if racing:
                fills = [asyncio.ensure_future(self.fill(p)) for p in paths[:8]]
            self.origin.bump(paths)
            admin = Conn(self.admin_port)
            try:
                status, _, _ = await admin.request(req[0], req[1], fields=req[2])
            except Failure as f:
                status = f.kind
            admin.close()
            now = time.monotonic()
            self.purges[(kind, status)] = self.purges.get((kind, status), 0) + 1
            if status == 200:
                for p in paths:
                    self.floors[p] = (self.origin.version(p), now)
                await self.one(conn, "GET", paths[0])  # at once after the purge returned
            for f in fills:
                await f
        conn.close()

    async def fill(self, target):
        c = Conn(self.port)
        await self.one(c, "GET", target)
        c.close()

    # -- faults
    async def fault(self, name, seconds):
        end = time.monotonic() + seconds
        if name.startswith("origin"):
            self.origin.mode = {"origin reset mid-body": "reset", "origin 5xx burst": "5xx",
                                "origin stall": "stall", "origin 1xx (103)": "hints",
                                "origin closes idle conns": "close_idle"}[name]
            await asyncio.sleep(seconds)
            self.origin.mode = None
        elif name == "slowloris x300":
            await self.slowloris(end)
        elif name == "5000 idle conns":
            socks = []
            for n in range(IDLE_BURST):
                if n % 100 == 0:
                    await asyncio.sleep(0)  # the origin and the checkers run meanwhile
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect(("127.0.0.1", self.port))
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    self.tally.count("idle connect failed")
                    continue
                socks.append(s)
            await asyncio.sleep(max(0.0, end - time.monotonic()) / 2)
            self.sample("5000 idle conns open")
            await asyncio.sleep(max(0.0, end - time.monotonic()))
            for s in socks:
                s.close()
        elif name == "second proxy same port":
            dead = free_port()
            p = subprocess.Popen(self.proxy_cmd(dead, self.port), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            await asyncio.sleep(seconds)
            if p.poll() is None:
                self.tally.count("second proxy took the port")
                p.terminate()
            p.wait()
        elif name == "redis killed+restarted":
            self.redis.kill()
            self.redis.wait()
            await asyncio.sleep(min(3, seconds / 2))
            self.start_redis()
            await self.wait_port(self.redis_port, self.redis)
            await asyncio.sleep(max(0.0, end - time.monotonic()))
        elif name == "redis SIGSTOP 3s":
            self.redis.send_signal(signal.SIGSTOP)
            await asyncio.sleep(3)
            self.redis.send_signal(signal.SIGCONT)
            await asyncio.sleep(max(0.0, end - time.monotonic()))
        elif name == "redis full noeviction":
            info = await self.redis_info_used()
            await self.redis_cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
            await self.redis_cmd("CONFIG", "SET", "maxmemory", str(info + 256 * 1024))
            await asyncio.sleep(seconds)
            await self.redis_cmd("CONFIG", "SET", "maxmemory", "0")
        else:  # purges racing fills: the purger reads the window's name
            await asyncio.sleep(seconds)

    async def redis_info_used(self):
        r, w = await asyncio.open_connection("127.0.0.1", self.redis_port)
        w.write(b"*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n")
        n = int((await r.readline())[1:])
        text = (await r.readexactly(n + 2)).decode()
        w.close()
        return next(int(l.split(":")[1]) for l in text.splitlines() if l.startswith("used_memory:"))

    async def slowloris(self, end):
        """300 clients each sending a request head one byte per second."""
        head = b"GET /hot/1 HTTP/1.1\r\nHost: soak\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"

        async def one():
            while time.monotonic() < end:
                try:
                    r, w = await asyncio.open_connection("127.0.0.1", self.port)
                    for b in head:
                        if time.monotonic() >= end:
                            break
                        w.write(bytes([b]))
                        await w.drain()
                        await asyncio.sleep(1)
                    w.close()
                except OSError:
                    await asyncio.sleep(0.2)

        await asyncio.gather(*(one() for _ in range(SLOWLORIS)))

    async def run_wrk(self, window, seconds):
        env = dict(os.environ, SOAK_HOT=str(N_HOT))
        p = await asyncio.create_subprocess_exec(
            "wrk", "-t2", "-c32", "-d%ds" % max(1, int(seconds)), "--timeout", "10s", "-s",
            os.path.join(HERE, "soak.lua"), "http://127.0.0.1:%d/" % self.port,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env)
        out, _ = await p.communicate()
        for line in out.decode().splitlines():
            if line.startswith("{"):
                self.wrk.append((window, json.loads(line)))
                return
        self.wrk.append((window, None))

    async def window(self, name, seconds):
        self.log.write("%.3f window %s\n" % (time.monotonic() - self.t0, name))
        self.tally.window = name
        self.tally.rows.setdefault(name, {"requests": 0})
        wrk = asyncio.ensure_future(self.run_wrk(name, seconds))
        if name == "quiet":
            await asyncio.sleep(seconds)
        else:
            await self.fault(name, seconds)
            await asyncio.sleep(1)  # what the fault left in flight still counts as its own
        await wrk
        self.sample(None)

    async def main(self):
        await self.origin.start()
        self.port, self.admin_port = free_port(), free_port()
        if self.store == "redis":
            self.redis_port = free_port()
            self.start_redis()
            await self.wait_port(self.redis_port, self.redis)
            self.store_url = "redis://127.0.0.1:%d/0?key_prefix=soak" % self.redis_port
        else:
            self.store_url = "mem://?max_memory=32MB"
        self.err_path = os.path.join(self.work, "proxy-%s.err" % self.store)
        self.proxy = subprocess.Popen(
            self.proxy_cmd(self.origin.port, self.port, self.admin_port),
            stdout=subprocess.DEVNULL, stderr=open(self.err_path, "w"))
        await self.wait_port(self.port, self.proxy)
        await self.wait_port(self.admin_port, self.proxy)
        # Warm-up: every object once, so the windows start from a filled cache.
        conn = Conn(self.port)
        for i in range(N_HOT):
            await self.one(conn, "GET", "/hot/%d" % i)
        conn.close()
        tasks = [asyncio.ensure_future(self.checker(k)) for k in range(CHECKERS)]
        tasks.append(asyncio.ensure_future(self.purger()))
        await self.window("quiet", 3)
        self.sample("start")
        faults = [f for f in FAULTS if self.store == "redis" or f not in REDIS_FAULTS]
        slot = max(4.0, (self.seconds - 3) / (2 * len(faults)))
        begin = time.monotonic()
        i = 0
        sampled_mid = False
        while time.monotonic() - begin < self.seconds - 3 - slot or i < len(faults):
            await self.window(faults[i % len(faults)], slot * 1.3)
            await self.window("quiet", slot * 0.7)
            i += 1
            if not sampled_mid and time.monotonic() - begin >= (self.seconds - 3) / 2:
                self.sample("middle")
                sampled_mid = True
            if self.proxy.poll() is not None:
                break
        self.stop = True
        await asyncio.gather(*tasks)
        await asyncio.sleep(2)  # the proxy closes what the clients closed
        self.sample("end")
        alive = self.proxy.poll() is None
        if alive:
            self.proxy.send_signal(signal.SIGTERM)
            try:
                rc = self.proxy.wait(60)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                rc = "hung on SIGTERM"
        else:
            rc = self.proxy.returncode
        self.exit = (alive, rc)
        if self.redis:
            self.redis.send_signal(signal.SIGCONT)
            self.redis.terminate()
            self.redis.wait()
        self.origin.server.close()


def report(soaks):
    bad = False
    print()
    print("%-6s %-26s %8s %8s %8s  %s" % ("store", "window", "checked", "wrk req", "p99 ms",
                                          "errors by kind (checkers, wrk); * = not explained "
                                          "by the fault"))
    for s in soaks:
        names = list(s.tally.rows)
        for name in names:
            row = s.tally.rows[name]
            allowed = FAULTS.get(name, set())
            kinds = []
            for k, v in sorted(row.items()):
                if k == "requests":
                    continue
                star = "" if k in allowed else "*"
                bad |= bool(star) and name != "warm-up"
                kinds.append("%s%s=%d" % (star, k, v))
            wr = [w for n, w in s.wrk if n == name]
            wreq = sum(w["requests"] for w in wr if w)
            werr = {}
            for w in wr:
                if not w:
                    werr["wrk failed"] = werr.get("wrk failed", 0) + 1
                    continue
                for k in ("bad_body", "non200", "connect", "read", "write", "timeout"):
                    if w[k]:
                        werr[k] = werr.get(k, 0) + w[k]
            for k, v in sorted(werr.items()):
                kinds.append("*wrk %s=%d" % (k, v))
                bad = True
            p99 = max([w["p99_us"] for w in wr if w] or [0]) / 1e3
            print("%-6s %-26s %8d %8d %8.1f  %s" % (s.store, name, row["requests"], wreq, p99,
                                                   " ".join(kinds) or "-"))
    print()
    for s in soaks:
        quiet = [w["p99_us"] for n, w in s.wrk if w and n == "quiet"]
        fault = [w["p99_us"] for n, w in s.wrk if w and n != "quiet"]
        total = sum(r["requests"] for r in s.tally.rows.values()) + sum(
            w["requests"] for _, w in s.wrk if w)
        alive, rc = s.exit
        print("%s: %d requests served; wrong bodies %d; purged objects served after their purge "
              "returned %d" % (s.store, total, len(s.wrong_bodies), len(s.purged_served)))
        print("%s: purges %s" % (s.store, ", ".join(
            "%s %s=%d" % (k, st, n) for (k, st), n in sorted(s.purges.items(), key=str))))
        if quiet and fault:
            print("%s: hit p99 (wrk, /hot) outside faults: median %.1f ms, worst %.1f ms; during "
                  "faults: median %.1f ms, worst %.1f ms" % (
                      s.store, sorted(quiet)[len(quiet) // 2] / 1e3, max(quiet) / 1e3,
                      sorted(fault)[len(fault) // 2] / 1e3, max(fault) / 1e3))
        print("%s: RSS / open fds: %s" % (s.store, ", ".join(
            "%s %.1f MB / %d" % (lbl, rss / 1024, fds) for lbl, rss, fds in s.samples if lbl)) +
            "; peak %.1f MB / %d" % (max(x[1] for x in s.samples) / 1024,
                                     max(x[2] for x in s.samples)))
        print("%s: crash: %s; exit on SIGTERM: %s" % (s.store, "no" if alive else "YES", rc))
        bad |= bool(s.wrong_bodies or s.purged_served or not alive or rc != 0)
        for w in s.wrong_bodies[:5]:
            print("  wrong body: %r" % (w,))
        for p in s.purged_served[:5]:
            print("  purged object served: %r" % (p,))
        with open(s.err_path) as f:
            err = f.read()
        if "Sanitizer" in err or "runtime error" in err:
            print("%s: sanitizer report in %s" % (s.store, s.err_path))
            bad = True
    print()
    print("soak: %s" % ("FAILED (see * and the lines above)" if bad else "clean"))
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("proxy")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", "300")))
    ap.add_argument("--stores", default=os.environ.get("SOAK_STORES", "mem,redis"))
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = IDLE_BURST + 4 * SLOWLORIS + 2000
    if hard < need:
        sys.exit("soak: ulimit -n is %d; the idle burst needs %d" % (hard, need))
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the proxy inherits it
    work = tempfile.mkdtemp(prefix="corral-soak-")
    stores = args.stores.split(",")
    soaks = []
    for store in stores:
        s = Soak(os.path.abspath(args.proxy), store, args.seconds / len(stores), work)
        print("soak: %s store, %d s (logs in %s)" % (store, s.seconds, work), flush=True)
        asyncio.run(s.main())
        soaks.append(s)
    return report(soaks)


if __name__ == "__main__":
    sys.exit(main())
