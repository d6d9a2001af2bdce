"""Issue 12, section 1: Redis failures have no reason.

A dead port, a wrong password and a database that does not exist all surfaced as a bare
"store failure". corral-proxy now logs one line when a server of its store goes down, with the
reason libcorral gives (corral_store_status, the on_store_state callback), and one when it is
back: once per change of state, never once per request. Requests meanwhile are served from the
origin.
"""
import subprocess

from conftest import Proxy, eventually, free_port, wait_port


def start_redis(port, workdir, *extra):
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save",
                             "", "--appendonly", "no", *extra], stdout=subprocess.DEVNULL,
                            cwd=workdir)
    wait_port(port, proc)
    return proc


def store_lines(px, word):
    return [line for line in px.errors().splitlines()
            if line.startswith("corral-proxy: store ") and word in line]


def test_issue_12_proxy_logs_store_down_and_back_once_each(origin, tmp_path):
    port = free_port()  # nothing listens there yet
    store = "redis://127.0.0.1:%d?connect_timeout=0.2&command_timeout=200ms" % port
    px = Proxy(origin.port, str(tmp_path), args=["--store", store])
    redis = None
    try:
        for i in range(20):
            assert px.get("/down/%d" % i).status == 200  # the origin answers
        downs = store_lines(px, " down: ")
        assert len(downs) == 1, px.errors()
        assert "127.0.0.1:%d down: connection refused (refused)" % port in downs[0]

        redis = start_redis(port, str(tmp_path))

        def back():
            px.get("/up")
            return store_lines(px, " back up")
        eventually(back, what="the store back up line")
        for i in range(20):
            px.get("/up/%d" % i)
        assert px.get("/up/0").cache == "HIT"
        assert len(store_lines(px, " back up")) == 1, px.errors()

        redis.kill()
        redis.wait(30)
        redis = None
        for i in range(20):
            assert px.get("/again/%d" % i).status == 200
        assert len(store_lines(px, " down: ")) == 2, px.errors()
    finally:
        if redis:
            redis.kill()
            redis.wait(30)
        assert px.stop() == 0


def test_issue_12_proxy_logs_a_wrong_password_as_auth_without_the_password(origin, tmp_path):
    port = free_port()
    redis = start_redis(port, str(tmp_path), "--requirepass", "right-pw")
    px = Proxy(origin.port, str(tmp_path),
               args=["--store", "redis://:wrong-pw-77@127.0.0.1:%d" % port])
    try:
        for i in range(5):
            assert px.get("/p/%d" % i).status == 200
        downs = store_lines(px, " down: ")
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
        downs = store_lines(px, " down: ")
        assert len(downs) == 1 and "DB index is out of range (bad_db)" in downs[0], px.errors()
    finally:
        assert px.stop() == 0
        redis.kill()
        redis.wait(30)
