"""Issue 12, section 1: Redis failures have no reason.

A dead port, a wrong password and a database that does not exist all surfaced as a bare
"store failure". corral-proxy now logs one line when a server of its store goes down, with the
reason libcorral gives (corral_store_status, the on_store_state callback), and one when it is
back: once per change of state, never once per request. Requests meanwhile are served from the
origin.
"""
import os
import select
import subprocess

from conftest import Proxy, eventually, free_port, http_request, proxy_binary, wait_port


def start_redis(port, workdir, *extra):
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save",
                             "", "--appendonly", "no", *extra], stdout=subprocess.DEVNULL,
                            cwd=workdir)
    wait_port(port, proc)
    return proc


def store_lines(px, word):
    return [line for line in px.errors().splitlines()
            if line.startswith("corral-proxy: store ") and word in line]


def wait_lines(px, word, n):
    """The state lines with `word` once there are at least `n`: the proxy writes them on its log
    writer's thread, a moment after the request that saw the change (in order: a line that
    appears was preceded by every line told before it)."""
    eventually(lambda: len(store_lines(px, word)) >= n, what="%d lines with %r" % (n, word))
    return store_lines(px, word)


def test_issue_12_proxy_logs_store_down_and_back_once_each(origin, tmp_path):
    port = free_port()  # nothing listens there yet
    store = "redis://127.0.0.1:%d?connect_timeout=0.2&command_timeout=200ms" % port
    px = Proxy(origin.port, str(tmp_path), args=["--store", store])
    redis = None
    try:
        for i in range(20):
            assert px.get("/down/%d" % i).status == 200  # the origin answers
        downs = wait_lines(px, " down: ", 1)
        assert len(downs) == 1, px.errors()
        assert "127.0.0.1:%d down: connection refused (refused)" % port in downs[0]

        redis = start_redis(port, str(tmp_path))

        def back():
            px.get("/up")
            return store_lines(px, " back up")
        eventually(back, what="the store back up line")
        assert len(store_lines(px, " down: ")) == 1, px.errors()  # all told before "back" are out
        for i in range(20):
            px.get("/up/%d" % i)
        assert px.get("/up/0").cache == "HIT"
        assert len(store_lines(px, " back up")) == 1, px.errors()

        redis.kill()
        redis.wait(30)
        redis = None
        for i in range(20):
            assert px.get("/again/%d" % i).status == 200
        wait_lines(px, " down: ", 2)
    finally:
        if redis:
            redis.kill()
            redis.wait(30)
        assert px.stop() == 0
    # Stopped, the proxy has written every line it was told: still once per change.
    assert len(store_lines(px, " down: ")) == 2, px.errors()
    assert len(store_lines(px, " back up")) == 1, px.errors()


def test_issue_12_proxy_logs_a_wrong_password_as_auth_without_the_password(origin, tmp_path):
    port = free_port()
    redis = start_redis(port, str(tmp_path), "--requirepass", "right-pw")
    px = Proxy(origin.port, str(tmp_path),
               args=["--store", "redis://:wrong-pw-77@127.0.0.1:%d" % port])
    try:
        for i in range(5):
            assert px.get("/p/%d" % i).status == 200
        downs = wait_lines(px, " down: ", 1)
        assert len(downs) == 1, px.errors()
        assert "WRONGPASS" in downs[0] and downs[0].endswith("(auth); serving without the cache")
    finally:
        assert px.stop() == 0
        redis.kill()
        redis.wait(30)
    # The state lines never name the password (the startup banner is test_issue_12_secrets').
    assert "wrong-pw-77" not in "\n".join(store_lines(px, ""))


def test_issue_12_proxy_logs_a_database_that_does_not_exist(origin, tmp_path):
    port = free_port()
    redis = start_redis(port, str(tmp_path))
    px = Proxy(origin.port, str(tmp_path), args=["--store", "redis://127.0.0.1:%d/99" % port])
    try:
        assert px.get("/d").status == 200
        downs = wait_lines(px, " down: ", 1)
        assert len(downs) == 1 and "DB index is out of range (bad_db)" in downs[0], px.errors()
    finally:
        assert px.stop() == 0
        redis.kill()
        redis.wait(30)


def test_a_stderr_that_blocks_holds_up_no_worker(origin):
    # stderr is a pipe the test fills after startup and does not read. The "down" line is told
    # on the worker whose store call saw the failure: written there, the write would block the
    # worker (its only one, --threads 1) and every request with it. The proxy's log writer
    # writes it instead, and it arrives once the test reads the pipe.
    r, w = os.pipe()
    port, store_port = free_port(), free_port()
    store = "redis://127.0.0.1:%d?connect_timeout=0.2&command_timeout=200ms" % store_port
    proc = subprocess.Popen([proxy_binary(), "--origin", "http://127.0.0.1:%d" % origin.port,
                             "--listen", "127.0.0.1:%d" % port, "--threads", "1", "--store",
                             store], stdout=subprocess.DEVNULL, stderr=w)
    os.close(w)
    got = b""
    try:
        assert wait_port(port, proc)
        # The startup lines are in the pipe; fill the rest of it through a second end.
        fill = os.open("/proc/self/fd/%d" % r, os.O_WRONLY | os.O_NONBLOCK)
        try:
            while True:
                os.write(fill, b"." * 4096)
        except BlockingIOError:
            pass
        finally:
            os.close(fill)
        for i in range(3):
            assert http_request(port, "GET", "/blocked/%d" % i, timeout=10).status == 200
        os.set_blocking(r, False)

        def down_line():
            nonlocal got
            try:
                got += os.read(r, 1 << 20)
            except BlockingIOError:
                pass
            return b"127.0.0.1:%d down: connection refused" % store_port in got
        eventually(down_line, what="the down line on stderr")
    finally:
        proc.terminate()
        while proc.poll() is None:  # keep stderr drained so the proxy can say its last words
            if select.select([r], [], [], 0.05)[0]:
                got += os.read(r, 1 << 20)
        os.close(r)
    assert proc.returncode == 0, got[-2000:]
