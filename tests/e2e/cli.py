"""Helpers of the corral CLI's end-to-end tests: the binary (CORRAL_CLI, which CMake sets), a
run of it, a redis-server on a free port (the `redis` fixture) and a minimal RESP client to look
at what the CLI wrote."""
import os
import socket
import subprocess

import pytest

from conftest import ROOT, free_port, wait_port


def cli_binary():
    env = os.environ.get("CORRAL_CLI")
    if env:
        return env
    for d in ("build/asan", "build/release"):
        p = os.path.join(ROOT, d, "corral")
        if os.path.exists(p):
            return p
    pytest.fail("corral CLI not found: set CORRAL_CLI")


def corral(*args, stdin=None, timeout=60):
    return subprocess.run([cli_binary()] + list(args), input=stdin, capture_output=True,
                          timeout=timeout)


def encode(*args):
    return b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a), a if isinstance(a, bytes) else a.encode()) for a in args)


def resp(port, *args, db=0):
    """One Redis command over RESP (in database `db`); returns the reply parsed (bulk string,
    integer, list)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(encode("SELECT", str(db)) + encode(*args))
        f = s.makefile("rb")
        assert read_reply(f) == "OK"
        return read_reply(f)


def read_reply(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data
    if kind == b"*":
        return [read_reply(f) for _ in range(int(rest))]
    raise RuntimeError("bad reply %r" % line)


@pytest.fixture
def redis(tmp_path):
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly",
                             "no"], stdout=subprocess.DEVNULL, cwd=str(tmp_path))
    wait_port(port, proc)
    yield port
    proc.terminate()
    proc.wait(10)
