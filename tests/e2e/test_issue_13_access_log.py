"""Issue 13, the review's defects of the access log: a log that blocks must not stall the proxy
(one writer thread writes it; workers never wait for it, and lines it falls 4 MiB behind on are
dropped and counted), and after a reopen (SIGHUP) each line goes to the file that was current
when it was logged."""
import os
import re
import signal

from conftest import eventually


def metric(px, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name), px.metrics(), re.M)
    return int(m.group(1)) if m else None


def test_issue_13_a_log_nobody_reads_does_not_stall_requests(origin, proxy, tmp_path):
    fifo = str(tmp_path / "access.fifo")
    os.mkfifo(fifo)
    # A reader that never reads: the proxy's open succeeds, and its writes block once the
    # pipe's 64 KiB are full.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        px = proxy(args=("--access-log", fifo))
        path = "/long/" + "x" * 1900  # about 2 KB per line: the pipe is full after ~32
        conn = px.connection(timeout=20)
        try:
            # 4 MiB of lines and more: every request is still answered, on a kept-alive
            # connection (its worker) and on new ones (any worker).
            for i in range(2600):
                r = px.get(path, conn=conn)
                assert r.status == 200, (i, r)
        finally:
            conn.close()
        for _ in range(8):
            assert px.get(path, timeout=20).status == 200
        assert metric(px, "corral_proxy_access_log_dropped_lines_total") > 0
    finally:
        os.close(reader)


def test_issue_13_after_a_reopen_lines_go_to_the_file_current_when_logged(origin, proxy):
    px = proxy(threads=2)
    assert px.get("/before").status == 200
    # The line is in the log's buffer once the response bytes are counted (after it).
    eventually(lambda: metric(px, 'corral_proxy_response_bytes_total{route="default"}'),
               what="the first request counted")
    rotated = px.access_log + ".1"
    os.rename(px.access_log, rotated)  # logrotate: rename, then SIGHUP
    px.signal(signal.SIGHUP)
    eventually(lambda: "configuration reloaded" in px.errors(), what="the reload")
    for i in range(10):
        assert px.get("/after/%d" % i).status == 200  # new connections: both workers
    eventually(lambda: len([l for l in px.log_lines() if "/after/" in l]) == 10,
               what="10 lines in the new file")
    with open(rotated) as f:
        old = f.read()
    assert '"GET /before ' in old and "/after/" not in old
    assert not any("/before" in l for l in px.log_lines())


def test_issue_13_a_reopen_while_the_log_blocks_leaves_the_new_log_flushed(origin, proxy,
                                                                             tmp_path):
    # The writer is stuck on a log nobody reads, with a flush asked for the lines it holds
    # (64 KiB and more): the reopen moves them to the old log's batch, and the new log's lines
    # must still be written by the flush timer, not wait for a flag that batch's write settles.
    fifo = str(tmp_path / "access.log")
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        px = proxy(args=("--access-log", fifo))
        path = "/long/" + "x" * 1900
        conn = px.connection(timeout=20)
        try:
            for i in range(2600):  # past 4 MiB: the writer is stuck, the buffer full
                assert px.get(path, conn=conn).status == 200, i
        finally:
            conn.close()
        dropped = metric(px, "corral_proxy_access_log_dropped_lines_total")
        assert dropped > 0
        os.rename(fifo, fifo + ".1")
        px.signal(signal.SIGHUP)
        eventually(lambda: "configuration reloaded" in px.errors(), what="the reload")
    finally:
        os.close(reader)  # the stuck write fails (EPIPE): the writer is free again
    # The old log's lines (about 2000 of 2 KB) fail to be written and are counted: the writer
    # has nothing left and waits, so the next line is on the flush timer alone.
    eventually(lambda: metric(px, "corral_proxy_access_log_dropped_lines_total") > dropped + 1000,
               what="the old log's lines counted")
    assert px.get("/after").status == 200

    def logged():
        with open(fifo) as f:
            return "/after" in f.read()
    eventually(logged, what="the line in the new log")
