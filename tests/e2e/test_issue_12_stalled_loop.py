"""Issue 12, section 4: a worker held up by its store must not time out an origin that answered.

A worker calls the store from its loop; while a Redis server is stopped, a call can hold the
loop for the store's command timeout. libuv runs expired timers before it polls, so an origin
answer that arrived during the stall used to lose to its read deadline: the soak's
"redis SIGSTOP 3s" window saw a 504 for an origin that had answered in a millisecond. A deadline
now counts from the clock's now (px_worker_deadline), and one that comes due right after a
stalled turn waits one poll first (px_worker_defer): cmd/proxy/worker.c.
"""
import signal
import subprocess
import threading

from conftest import Proxy, eventually, free_port, http_request, wait_port


def redis_unread(port):
    """Bytes queued unread on the (stopped) Redis's accepted sockets: /proc/net/tcp's rx_queue."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as f:
            for line in list(f)[1:]:
                p = line.split()
                if int(p[1].rsplit(":", 1)[1], 16) == port and p[3] == "01":  # ESTABLISHED
                    n += int(p[4].split(":")[1], 16)
    return n


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
        try:
            results[name] = http_request(px.port, "GET", path)
        except Exception as e:  # a body cut short, a reset: the assertion below shows it
            results[name] = e

    stopped = False
    try:
        assert px.get("/warm").status == 200  # the store's connection is open and answered
        t_slow = threading.Thread(target=fetch, args=("slow", "/slow"))
        t_slow.start()
        eventually(lambda: origin.gate("g")["waiting"] == 1, what="/slow held at the origin")
        # The worker's read deadline for /slow (1 s) now runs. Stop Redis, then send a request
        # whose store lookup holds the worker's loop for the command timeout (2 s).
        redis.send_signal(signal.SIGSTOP)
        stopped = True
        t_other = threading.Thread(target=fetch, args=("other", "/other"))
        t_other.start()
        # The worker sent /other's lookup to the stopped Redis: its loop is held from now on.
        eventually(lambda: redis_unread(redis_port) > 0, what="the worker blocked on Redis")
        origin.open_gate("g")
        t_slow.join(30)
        t_other.join(30)
    finally:
        if stopped:
            redis.send_signal(signal.SIGCONT)
        rc = px.stop()
        redis.kill()
        redis.wait(30)
    slow, other = results.get("slow"), results.get("other")
    assert (getattr(slow, "status", slow), getattr(slow, "body", None)) == (200, b"slow answer")
    assert getattr(other, "status", other) == 200, results
    assert origin.count("/slow") == 1
    assert rc == 0, px.errors()
