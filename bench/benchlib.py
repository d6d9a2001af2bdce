"""What the proxy benchmarks share (bench/proxy.sh, bench/fleet.py): processes on free ports, the
test origin (tests/e2e/origin.py), nginx proxy_cache and Varnish set up as bench/proxy.sh
describes, wrk's report parsed, and the cold herd driven from one thread.

Every process started through a Bench is stopped by Bench.stop_all (SIGTERM, then SIGKILL after
15 s), and its output goes to WORK/<name>.err, named in the error when it exits at startup;
Bench.exited() says whether one has exited since. A Bench turns SIGTERM and SIGHUP into
SystemExit, so a bench stopped that way still runs its stop_all (the processes, WORK and the
caches on /dev/shm go with it); WORK is kept when keep_work() was called, to read the logs.
"""
import http.client
import json
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's number, unnamed in some Pythons
TIMESPEC = struct.Struct("@ll")  # its timestamp: C longs tv_sec, tv_nsec (32 bits on 32-bit Linux)
ROOT = os.path.dirname(HERE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, timeout=30, headers=None):
    """One request on a new connection: (status, headers as a dict of lower-case names, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


class Stopped(SystemExit):
    """SIGTERM or SIGHUP arrived: a SystemExit, so the `finally` that calls stop_all runs."""


def _exit_on_signal(signum, _frame):
    raise Stopped(128 + signum)


class Bench:
    def __init__(self, prefix):
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.procs = []
        self.names = {}  # process -> its name (WORK/<name>.err)
        self.dirs = []
        self.cleanups = []  # callables stop_all calls, for what is not a process of ours
        self.keep = False
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _exit_on_signal)

    def start(self, what, cmd, **kw):
        err = open(os.path.join(self.work, what + ".err"), "w")
        p = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT, **kw)
        self.procs.append(p)
        self.names[p] = what
        return p

    def exited(self, procs):
        """None while every one of procs runs; else the first in the list that exited: a line
        with its name and exit code (negative: the signal that ended it), then its log's end."""
        for p in procs:
            if p.poll() is not None:
                what = self.names.get(p, "pid %d" % p.pid)
                head = "%s (pid %d) exited with code %d" % (what, p.pid, p.returncode)
                if not os.path.exists(os.path.join(self.work, what + ".err")):
                    return head + " (its output went to the bench's stderr)"
                lines = self.log(what).strip().splitlines()[-10:]
                tail = "\n".join("    " + line for line in lines) or "    (empty)"
                return "%s\nthe end of %s/%s.err:\n%s" % (head, self.work, what, tail)
        return None

    def keep_work(self):
        """stop_all leaves WORK (the logs) in place and names it."""
        self.keep = True

    def wait_port(self, port, proc, what, seconds=30):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if proc.poll() is not None:
                sys.exit("bench: %s exited:\n%s" % (what, self.log(what)))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit("bench: %s did not start" % what)

    def log(self, what):
        try:
            with open(os.path.join(self.work, what + ".err")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, procs):
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = [p for p in self.procs if p not in procs]

    def stop_all(self):
        old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:  # a second SIGTERM does not cut the cleanup short
            for cleanup in list(self.cleanups):
                cleanup()
            self.stop(list(self.procs))
            if self.keep:
                print("bench: the logs are kept in %s" % self.work, file=sys.stderr)
            else:
                shutil.rmtree(self.work, ignore_errors=True)
            for d in self.dirs:
                shutil.rmtree(d, ignore_errors=True)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    # ---- the origin: tests/e2e/origin.py, scripted per path ----
    def start_origin(self):
        origin = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(ROOT, "tests/e2e/origin.py"), "--port", "0"],
            stdout=subprocess.PIPE, text=True)  # its stderr is the bench's
        self.procs.append(origin)
        self.names[origin] = "origin"
        return Origin(int(origin.stdout.readline().split()[1]), origin)

    # ---- nginx proxy_cache, its best setup (bench/proxy.sh) ----
    def start_nginx(self, name, port, oport, workers=2):
        cache = tempfile.mkdtemp(prefix="corral-bench-%s-" % name, dir="/dev/shm")  # in memory
        self.dirs.append(cache)
        prefix = os.path.join(self.work, name)
        os.makedirs(prefix, exist_ok=True)
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF % {"work": prefix, "cache": cache, "oport": oport, "port": port,
                                  "workers": workers})
        p = self.start(name, ["nginx", "-c", conf, "-p", prefix])
        self.wait_port(port, p, name)
        return p

    # ---- Varnish: -s malloc, the builtin VCL, default grace; params: more -p NAME=VALUE ----
    def start_varnish(self, name, port, oport, malloc="256m", params=()):
        p = self.start(name, ["varnishd", "-F", "-j", "none", "-n", os.path.join(self.work, name),
                              "-a", "127.0.0.1:%d" % port, "-b", "127.0.0.1:%d" % oport,
                              "-s", "malloc," + malloc]
                       + [a for param in params for a in ("-p", param)])
        self.wait_port(port, p, name)
        return p


class Origin:
    def __init__(self, port, proc):
        self.port, self.proc = port, proc

    def script(self, path, **spec):
        spec["path"] = path
        assert request(self.port, "POST", "/__ctl/script", json.dumps(spec))[0] == 200

    def stats(self, path):
        return json.loads(request(self.port, "GET", "/__ctl/stats?path=" + path)[2])

    def count(self, path):
        return self.stats(path)["count"]


NGINX_CONF = """
daemon off;
worker_processes %(workers)d;
pid %(work)s/nginx.pid;
error_log %(work)s/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(work)s/body;
    proxy_temp_path %(work)s/proxy;
    fastcgi_temp_path %(work)s/fastcgi;
    uwsgi_temp_path %(work)s/uwsgi;
    scgi_temp_path %(work)s/scgi;
    proxy_cache_path %(cache)s levels=1:2 keys_zone=bench:64m max_size=1g inactive=60m
                     use_temp_path=off;
    upstream origin { server 127.0.0.1:%(oport)d; keepalive 64; }
    server {
        listen 127.0.0.1:%(port)d;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_cache bench;
            proxy_cache_lock on;
            proxy_cache_use_stale updating error timeout;
            proxy_cache_background_update on;
        }
    }
}
"""


def versions():
    """(nginx's version, Varnish's version), "?" when unknown."""
    n = re.search(r"nginx/(\S+)", subprocess.run(["nginx", "-v"], capture_output=True,
                                                  text=True).stderr)
    v = re.search(r"varnish-(\S+)", subprocess.run(["varnishd", "-V"], capture_output=True,
                                                    text=True).stderr)
    return n.group(1) if n else "?", v.group(1) if v else "?"


def _ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, conns, seconds, threads=2, script=None, env=None, timeout=None):
    """Runs wrk --latency; returns a dict: rps, p99 and max (ms), requests, non2xx, and
    socket_errors (connect + read + write + timeout; wrk's own timeout is 2 s unless
    `timeout` says otherwise, e.g. "10s")."""
    cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds, "--latency"]
    if timeout:
        cmd += ["--timeout", timeout]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True,
                         env=dict(os.environ, **(env or {}))).stdout
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p99": _ms(*re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out).groups()),
        "max": _ms(*re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", out).groups()),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, socket_errors.groups())) if socket_errors else 0,
    }


def herd(ports, path, n=100):
    """n clients released together on `path`, client i on ports[i % len(ports)]: (the release's
    time.monotonic(), and for each client in order (i % len(ports), ms from the release to its
    answer's last byte, its X-Cache or None)).

    One thread drives the clients with non-blocking sockets: connected first, requests sent
    back to back, each answer timestamped when its last byte arrives: by the kernel as it
    received it (SO_TIMESTAMPNS, Linux), so the time this loop takes to read and parse the
    answers before it is not counted (1 to 4 ms for the last of 100 in runs here); elsewhere
    when this loop reads it. (100 Python threads parsing answers under the GIL would
    themselves spread the timestamps by ~10 ms.)"""
    socks = []
    for i in range(n):
        so = socket.create_connection(("127.0.0.1", ports[i % len(ports)]), timeout=60)
        if sys.platform.startswith("linux"):
            so.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        so.setblocking(False)
        socks.append(so)
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode()
    sel = selectors.DefaultSelector()
    bufs = {}
    t0 = time.monotonic()
    wall0 = time.time()  # the kernel's timestamps are on the wall clock
    for i, so in enumerate(socks):
        so.sendall(req)
        sel.register(so, selectors.EVENT_READ, i)
        bufs[i] = b""
    done = [None] * n
    left = n
    while left:
        ready = sel.select(timeout=60)
        if not ready:
            raise SystemExit("cold herd: no answer within 60 s on %s" % path)
        for key, _ in ready:
            i = key.data
            chunk, anc, _, _ = key.fileobj.recvmsg(65536, 64)
            at = (time.monotonic() - t0) * 1000
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, ns = TIMESPEC.unpack(data[:TIMESPEC.size])
                    at = (sec + ns / 1e9 - wall0) * 1000
            if chunk:
                bufs[i] += chunk
            head, sep, body = bufs[i].partition(b"\r\n\r\n")
            if sep:
                length = 0
                xcache = None
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value.strip())
                    elif name == b"x-cache":
                        xcache = value.strip().decode()
                if len(body) >= length or not chunk:
                    done[i] = (i % len(ports), at, xcache)
                    sel.unregister(key.fileobj)
                    left -= 1
            elif not chunk:
                raise SystemExit("cold herd: port %d closed a connection before answering"
                                 % ports[i % len(ports)])
    for so in socks:
        so.close()
    return t0, done


def cold_herd(ports, path, n=100):
    """herd(): (the first answer, and how long after it the last one came), in ms from the
    release."""
    ms = [d[1] for d in herd(ports, path, n)[1]]
    return min(ms), max(ms) - min(ms)
