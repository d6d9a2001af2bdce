"""Fixtures of corral-proxy's end-to-end tests.

Every test starts its own test origin (origin.py, a subprocess) and its own corral-proxy (the
binary named by $CORRAL_PROXY, which CMake sets; else build/proxy-asan or build/asan), on free
ports, waits for them by connecting with a deadline, and stops them at the end. A proxy must
exit 0 on SIGTERM: under AddressSanitizer a leak or a crash fails the test that caused it.
"""
import http.client
import json
import os
import signal as sig_mod
import socket
import struct
import subprocess
import threading
import time
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def proxy_binary():
    env = os.environ.get("CORRAL_PROXY")
    if env:
        return env
    for d in ("build/proxy-asan", "build/asan", "build/release"):
        p = os.path.join(ROOT, d, "corral-proxy")
        if os.path.exists(p):
            return p
    pytest.fail("corral-proxy not found: set CORRAL_PROXY")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, deadline_s=20.0):
    """Connects until the port answers; fails when the deadline passes or `proc` exits."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.02)  # polling interval of a readiness loop, not a wait for an effect
    raise TimeoutError("port %d did not open" % port)


def eventually(check, deadline_s=10.0, what="condition"):
    """Polls `check` until it returns a true value (returned), or fails at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        v = check()
        if v:
            return v
        if time.monotonic() > end:
            pytest.fail("timed out waiting for " + what)
        time.sleep(0.02)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lowercase name -> value (last one wins)
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    @property
    def cache(self):
        return self.headers.get("x-cache")

    def __repr__(self):
        return "Response(%d, %s, %r)" % (self.status, self.cache, self.body[:60])


def http_request(port, method, path, headers=None, body=None, timeout=30, conn=None):
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        if own:
            conn.close()


class StreamClient:
    """One GET (or `method`) in a thread: it reads the head and the first `first_len` body
    bytes, sets `got_first`, then reads the rest and sets `done`. An exception (a response cut
    short) lands in `error`. The connection stays open for more requests (`conn`)."""

    def __init__(self, port, path, first_len, method="GET", headers=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.req_headers = headers or {}
        self.method = method
        self.path = path
        self.first_len = first_len
        self.got_first = threading.Event()
        self.done = threading.Event()
        self.status = self.headers = self.first = self.rest = self.error = None
        self.thread = threading.Thread(target=self.run)

    def run(self):
        try:
            self.conn.request(self.method, self.path, headers=self.req_headers)
            r = self.conn.getresponse()
            self.status = r.status
            self.headers = {k.lower(): v for k, v in r.getheaders()}
            self.first = r.read(self.first_len)
            self.got_first.set()
            self.rest = r.read()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            self.got_first.set()
            self.done.set()

    def close(self):
        """Cuts the connection off in the middle of the body. The response's file object holds
        the socket, so sock.close() alone would leave it open (and the thread reading): shutdown
        ends the reading thread at once, and SO_LINGER 0 makes the last close a reset."""
        s = self.conn.sock
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.shutdown(socket.SHUT_RDWR)
        assert self.done.wait(60), "the reading thread did not stop"
        self.conn.close()


class Origin:
    def __init__(self):
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(HERE, "origin.py"), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError("origin did not start: %r" % line)
        self.port = int(line.split()[1])
        wait_port(self.port, self.proc)

    def ctl(self, method, path, obj=None):
        body = json.dumps(obj) if obj is not None else None
        r = http_request(self.port, method, path, body=body)
        assert r.status == 200, r
        return json.loads(r.body)

    def script(self, path, **spec):
        spec["path"] = path
        self.ctl("POST", "/__ctl/script", spec)

    def stats(self, path):
        return self.ctl("GET", "/__ctl/stats?path=" + urllib.parse.quote(path))

    def count(self, path):
        return self.stats(path)["count"]

    def open_gate(self, name):
        """Releases the answers held at gate `name` (spec keys `gate`, `head_gate`)."""
        self.ctl("POST", "/__ctl/gate", {"name": name})

    def gate(self, name):
        """{"open": bool, "waiting": n}: the answers held at gate `name` now."""
        return self.ctl("GET", "/__ctl/gate?name=" + urllib.parse.quote(name))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


class Proxy:
    def __init__(self, origin_port, workdir, config=None, args=(), threads=2, admin=True):
        self.workdir = workdir
        self.access_log = os.path.join(workdir, "access-%d.log" % id(self))
        self.stderr_path = os.path.join(workdir, "proxy-%d.err" % id(self))
        self.config_path = None
        if config is not None:
            self.config_path = os.path.join(workdir, "proxy-%d.ini" % id(self))
            with open(self.config_path, "w") as f:
                f.write(config)
        for attempt in range(3):
            self.port = free_port()
            self.admin_port = free_port() if admin else None
            cmd = [proxy_binary(), "--origin", "http://127.0.0.1:%d" % origin_port,
                   "--listen", "127.0.0.1:%d" % self.port, "--threads", str(threads),
                   "--access-log", self.access_log]
            if admin:
                cmd += ["--admin", "127.0.0.1:%d" % self.admin_port]
            if self.config_path:
                cmd += ["--config", self.config_path]
            cmd += list(args)
            self.stderr = open(self.stderr_path, "w")
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.stderr)
            if wait_port(self.port, self.proc) and (not admin or wait_port(self.admin_port,
                                                                            self.proc)):
                return
            self.proc.wait()
            self.stderr.close()
        raise RuntimeError("corral-proxy did not start:\n" + self.errors())

    def errors(self):
        with open(self.stderr_path) as f:
            return f.read()

    def request(self, method, path, headers=None, body=None, timeout=30, conn=None):
        return http_request(self.port, method, path, headers, body, timeout, conn)

    def get(self, path, headers=None, **kw):
        return self.request("GET", path, headers, **kw)

    def connection(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def admin(self, method, path, headers=None):
        return http_request(self.admin_port, method, path, headers)

    def purge(self, path, headers=None):
        h = {"Host": "127.0.0.1:%d" % self.port}
        h.update(headers or {})
        return self.admin("PURGE", path, h)

    def metrics(self):
        r = self.admin("GET", "/metrics")
        assert r.status == 200, r
        return r.text

    def connections(self):
        """The proxy's open client connections (the corral_proxy_connections gauge)."""
        for line in self.metrics().splitlines():
            if line.startswith("corral_proxy_connections "):
                return int(line.split()[1])
        raise AssertionError("no corral_proxy_connections in /metrics")

    def log_lines(self):
        try:
            with open(self.access_log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=sig_mod.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.stop()


@pytest.fixture
def proxy(origin, tmp_path):
    """A factory: proxy(config=None, args=(), threads=2, admin=True) starts one."""
    started = []

    def start(**kw):
        p = Proxy(origin.port, str(tmp_path), **kw)
        started.append(p)
        return p

    yield start
    failures = []
    for p in started:
        rc = p.stop()
        if rc != 0:
            failures.append("corral-proxy exited %s:\n%s" % (rc, p.errors()[-4000:]))
    assert not failures, "\n".join(failures)


def raw_exchange(port, data, timeout=10):
    """Sends raw bytes, returns everything the server sends until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
