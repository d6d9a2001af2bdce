#!/usr/bin/python3
"""bench/idle_burst.py - what a burst of idle connections costs corral-proxy (issue 12 §3).

    bench/idle_burst.py [path/to/corral-proxy] [N]      (default build/release, N = 5000)

Starts the test origin (tests/e2e/origin.py) and the proxy (--threads 2, memory store, access
log off), warms one object, then runs one keep-alive client doing hits back to back while
another process opens N connections that send nothing, as fast as it can. Prints the hits'
worst and p99 latency before and during the burst, and the proxy's RSS and open descriptors
before, with the N connections open, and after they closed. The numbers compare builds on one
machine; they bound nothing (docs/soak.md keeps the results).
"""
import os
import resource
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

OPENER = r"""
import socket, sys
n = int(sys.argv[1]); port = int(sys.argv[2])
socks = []
for _ in range(n):
    try:
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=30))
    except OSError as e:
        print("connect failed: %s" % e, file=sys.stderr)
        break
print(len(socks), flush=True)
sys.stdin.read()  # held open until the parent closes stdin
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss / 1024.0, len(os.listdir("/proc/%d/fd" % pid))


def wait_port(port):
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit("port %d did not open" % port)


class Hitter(threading.Thread):
    """Hits on one keep-alive connection; records (start time, latency) of each."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.req = b"GET /hot HTTP/1.1\r\nHost: bench\r\n\r\n"
        self.samples = []
        self.stop = threading.Event()

    def one(self):
        t = time.monotonic()
        self.sock.sendall(self.req)
        got = b""
        while True:
            got += self.sock.recv(65536)
            head, sep, body = got.partition(b"\r\n\r\n")
            if sep:
                n = int([ln.split(b":")[1] for ln in head.split(b"\r\n")
                         if ln.lower().startswith(b"content-length:")][0])
                if len(body) >= n:
                    break
        return t, time.monotonic() - t

    def run(self):
        while not self.stop.is_set():
            self.samples.append(self.one())


def summary(lat):
    if not lat:
        return "no samples"
    lat = sorted(lat)
    return "n=%d p99 %.1f ms, worst %.1f ms" % (len(lat), 1000 * lat[int(0.99 * (len(lat) - 1))],
                                                1000 * lat[-1])


def main():
    proxy_bin = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build/release/corral-proxy")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 2048)), hard))
    origin = subprocess.Popen(["/usr/bin/python3", os.path.join(ROOT, "tests/e2e/origin.py")],
                              stdout=subprocess.PIPE, text=True)
    oport = int(origin.stdout.readline().split()[1])
    port = free_port()
    proxy = subprocess.Popen([proxy_bin, "--origin", "http://127.0.0.1:%d" % oport, "--listen",
                              "127.0.0.1:%d" % port, "--threads", "2", "--access-log", "off"],
                             stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        hitter = Hitter(port)
        hitter.one()  # the miss that stores /hot
        hitter.start()
        time.sleep(2)  # a baseline of hits
        base_rss = proc_status(proxy.pid)
        t0 = time.monotonic()
        opener = subprocess.Popen([sys.executable, "-c", OPENER, str(n), str(port)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        opened = int(opener.stdout.readline() or 0)
        t1 = time.monotonic()
        time.sleep(1)  # the burst settles
        open_rss = proc_status(proxy.pid)
        opener.stdin.close()
        opener.wait()
        time.sleep(2)  # the proxy notices the closes
        after_rss = proc_status(proxy.pid)
        hitter.stop.set()
        hitter.join()
        before = [d for t, d in hitter.samples if t < t0]
        during = [d for t, d in hitter.samples if t0 <= t <= t1 + 0.5]
        print("proxy %s, %d idle connections opened in %.2f s" % (proxy_bin, opened, t1 - t0))
        print("hits before the burst: %s" % summary(before))
        print("hits during the burst: %s" % summary(during))
        print("RSS / fds: before %.1f MB / %d, %d open %.1f MB / %d, after %.1f MB / %d" %
              (base_rss + (opened,) + open_rss + after_rss))
    finally:
        proxy.terminate()
        proxy.wait()
        origin.terminate()
        origin.wait()


if __name__ == "__main__":
    main()
