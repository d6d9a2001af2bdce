"""Issue 12, section 4: a worker held up by its store must not time out an origin that answered.

A worker calls the store from its loop; while a Redis server is stopped, a call can hold the
loop for the store's command timeout. libuv runs expired timers before it polls, so an origin
answer that arrived during the stall used to lose to its read deadline: the soak's
"redis SIGSTOP 3s" window saw a 504 for an origin that had answered in a millisecond. A deadline
now first asks whether the bytes it waits for are there (px_io_ready, cmd/proxy/util.c).
"""
import signal
import subprocess
import threading
import time

from conftest import Proxy, eventually, free_port, http_request, wait_port


def test_issue_12_an_answer_that_came_while_the_loop_was_stalled_is_served(origin, tmp_path):
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL,
                             cwd=str(tmp_path))
    wait_port(redis_port, redis)
    store = "redis://127.0.0.1:%d?command_timeout=2s&key_prefix=stall" % redis_port
    px = Proxy(origin.port, str(tmp_path), threads=1,
               args=["--store", store, "--set", "limits.origin_read_timeout=1s"])
    origin.script("/slow", head_gate="g", body="slow answer")
    results = {}

    def fetch(name, path):
        results[name] = http_request(px.port, "GET", path)

    stopped = False
    try:
        assert px.get("/warm").status == 200  # the store's connection is open and answered
        slow = threading.Thread(target=fetch, args=("slow", "/slow"))
        slow.start()
        eventually(lambda: origin.gate("g")["waiting"] == 1, what="/slow held at the origin")
        # The worker's read deadline for /slow (1 s) now runs. Stop Redis, then send a request
        # whose store lookup holds the worker's loop for the command timeout (2 s).
        redis.send_signal(signal.SIGSTOP)
        stopped = True
        other = threading.Thread(target=fetch, args=("other", "/other"))
        other.start()
        # Not synchronisation: the scenario needs the origin's answer to arrive while the loop
        # is held (it picks /other up within microseconds and stays held for 2 s). Were the
        # answer to come first, the test would pass without reaching the stall.
        time.sleep(0.3)
        origin.open_gate("g")
        slow.join(30)
        other.join(30)
    finally:
        if stopped:
            redis.send_signal(signal.SIGCONT)
        rc = px.stop()
        redis.kill()
        redis.wait(30)
    assert (results["slow"].status, results["slow"].body) == (200, b"slow answer"), results
    assert results["other"].status == 200, results
    assert origin.count("/slow") == 1
    assert rc == 0, px.errors()
