"""Process lifecycle: SIGTERM stops accepting, lets in-flight requests finish and exits 0;
SIGHUP reloads the configuration file (and keeps the old one when the new one is bad)."""
import signal
import socket
import threading

import pytest

from conftest import eventually


def test_sigterm_finishes_in_flight_requests_then_exits_0(origin, proxy):
    origin.script("/slow", delay=1.0, body="done")
    px = proxy()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", px.get("/slow")))
    t.start()
    eventually(lambda: origin.stats("/slow")["in_flight"] == 1, what="the request in flight")
    px.signal(signal.SIGTERM)
    t.join()
    assert (result["r"].status, result["r"].body) == (200, b"done")
    assert px.proc.wait(30) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", px.port), timeout=2).close()


def test_sigterm_closes_idle_keep_alive_connections(origin, proxy):
    px = proxy()
    conn = px.connection()
    assert px.get("/x", conn=conn).status == 200
    px.signal(signal.SIGTERM)
    assert px.proc.wait(30) == 0
    conn.close()


def test_sighup_reloads_the_routes(origin, proxy):
    px = proxy(config="[route:a]\nprefix = /a/\nbypass = false\n")
    px.get("/a/x")
    assert px.get("/a/x").cache == "HIT"
    with open(px.config_path, "w") as f:
        f.write("[route:a]\nprefix = /a/\nbypass = true\n")
    px.signal(signal.SIGHUP)
    eventually(lambda: px.get("/a/x").cache == "PASS", what="the reloaded bypass rule")
    assert "configuration reloaded" in px.errors()


def test_sighup_with_a_bad_file_keeps_the_running_configuration(origin, proxy):
    px = proxy(config="[route:a]\nprefix = /a/\n")
    px.get("/a/y")
    with open(px.config_path, "w") as f:
        f.write("[route:a]\nprefix = /a/\nno_such_key = 1\n")
    px.signal(signal.SIGHUP)
    eventually(lambda: "not reloaded" in px.errors(), what="the refused reload")
    assert px.get("/a/y").cache == "HIT"


def test_port_in_use_exits_1_cleanly(origin):
    import subprocess
    from conftest import proxy_binary
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([proxy_binary(), "--origin", "http://127.0.0.1:%d" % origin.port,
                            "--listen", "127.0.0.1:%d" % port, "--threads", "2"],
                           capture_output=True, text=True, timeout=60)
    # 1, not a sanitizer's exit code: the workers set up before the failure were closed.
    assert r.returncode == 1, r.stderr
    assert "cannot listen" in r.stderr
