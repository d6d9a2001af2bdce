#!/usr/bin/python3
"""A scriptable HTTP/1.1 origin for corral-proxy's end-to-end tests (standard library only).

    /usr/bin/python3 origin.py [--port 0]      prints "PORT <n>" once listening

Each path's answers are scripted by the tests through control endpoints:

    POST /__ctl/script   {"path": "/x", ...spec}  or  {"path": "/x", "sequence": [spec, ...]}
    GET  /__ctl/stats?path=/x   {"count": n, "in_flight": n, "max_in_flight": n,
                                 "requests": [{"method":..., "target":..., "headers": {...},
                                               "body_len": n, "time": t}, ...]}
                         (t: the origin's time.monotonic() when it had read the request)
    POST /__ctl/reset
    POST /__ctl/drop_idle   resets (RST) every keep-alive connection idle after an answer, as an
                            origin's idle timeout does; answers {"closed": n} once they are closed;
                            ?min=N first waits (up to the gate timeout) until N are idle
    POST /__ctl/gate     {"name": "g"}  opens gate g (gates start closed; reset closes them)
    GET  /__ctl/gate?name=g   {"open": bool, "waiting": n}  answers held at the gate now

A spec (every key optional):
    status        200
    headers       {"Cache-Control": "max-age=60"} or [["Set-Cookie", "a=1"], ...]
    body          text; "{n}" is replaced by the request's number for this path (1-based),
                  "{h:Name}" by the request's header Name ("" when absent)
    body_size     a body of this many bytes ('x' * n) instead of `body`
    chunked       send the body with Transfer-Encoding: chunked (in 3 pieces)
    delay         seconds to wait before answering
    body_delay    seconds to wait between chunks
    close         close the connection after the answer
    drop          read the request, then reset the connection (RST) without answering
    early         answer without reading the request body (then close the connection), and
                  without granting an Expect: 100-continue
    head_gate     hold the whole answer until the test opens this gate
    informational [[103, {"Link": "</a.css>; rel=preload"}], ...]: interim (1xx) answers sent,
                  each flushed, before the final one
    gate          send the head and the first `gate_after` bytes of the body (default 0; a
                  chunk of its own when chunked), then hold the rest until this gate opens
Held answers give up after 60 s, so a failing test cannot hang the origin.
A sequence gives the n-th request of the path the n-th spec (the last one repeats).
Unscripted paths answer 200 with "Cache-Control: max-age=60" and the body "<path> #<n>".
"""
import argparse
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DEFAULT = {"status": 200, "headers": {"Cache-Control": "max-age=60"}, "body": "{path} #{n}"}


GATE_TIMEOUT_S = 60


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.scripts = {}
        self.stats = {}
        self.gates = {}  # name -> [threading.Event, answers waiting at it]
        self.conns = set()  # the handlers of open connections (drop_idle)

    def reset(self):
        with self.lock:
            self.scripts.clear()
            self.stats.clear()
            for event, _ in self.gates.values():
                event.set()  # release what still waits
            self.gates.clear()

    def gate(self, name):
        with self.lock:
            return self.gates.setdefault(name, [threading.Event(), 0])

    def pass_gate(self, name):
        g = self.gate(name)
        with self.lock:
            g[1] += 1
        g[0].wait(GATE_TIMEOUT_S)
        with self.lock:
            g[1] -= 1

    def begin(self, path, record):
        with self.lock:
            s = self.stats.setdefault(
                path, {"count": 0, "in_flight": 0, "max_in_flight": 0, "requests": []})
            s["count"] += 1
            s["in_flight"] += 1
            s["max_in_flight"] = max(s["max_in_flight"], s["in_flight"])
            s["requests"].append(record)
            n = s["count"]
            script = self.scripts.get(path)
        if script is None:
            return n, dict(DEFAULT)
        seq = script.get("sequence")
        if seq:
            return n, dict(seq[min(n, len(seq)) - 1])
        return n, dict(script)

    def end(self, path):
        with self.lock:
            self.stats[path]["in_flight"] -= 1


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "test-origin"

    def log_message(self, fmt, *args):  # quiet
        pass

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            data = b""
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or "0")
        return self.rfile.read(n) if n else b""

    def control(self, url, body):
        q = parse_qs(url.query)
        if url.path == "/__ctl/script":
            spec = json.loads(body or b"{}")
            with STATE.lock:
                STATE.scripts[spec.pop("path")] = spec
            return self.reply_json({"ok": True})
        if url.path == "/__ctl/stats":
            path = q.get("path", ["/"])[0]
            with STATE.lock:
                s = STATE.stats.get(path, {"count": 0, "in_flight": 0, "max_in_flight": 0,
                                           "requests": []})
                return self.reply_json(json.loads(json.dumps(s)))
        if url.path == "/__ctl/gate":
            if self.command == "POST":
                STATE.gate(json.loads(body or b"{}")["name"])[0].set()
                return self.reply_json({"ok": True})
            g = STATE.gate(q.get("name", [""])[0])
            with STATE.lock:
                return self.reply_json({"open": g[0].is_set(), "waiting": g[1]})
        if url.path == "/__ctl/drop_idle":
            # A connection's thread marks it idle only after its answer went out, so a caller
            # that saw the answer may ask before that: ?min=N waits (bounded) for N of them.
            want, end = int(q.get("min", ["0"])[0]), time.monotonic() + GATE_TIMEOUT_S
            while True:
                with STATE.lock:
                    idle = [h for h in STATE.conns if h is not self and h.idle and h.served]
                if len(idle) >= want or time.monotonic() > end:
                    break
                time.sleep(0.005)
            for h in idle:
                h.reset()
            closed = sum(1 for h in idle if h.closed.wait(GATE_TIMEOUT_S))
            return self.reply_json({"closed": closed})
        if url.path == "/__ctl/reset":
            STATE.reset()
            return self.reply_json({"ok": True})
        return self.reply_json({"error": "unknown control"}, 404)

    def reply_json(self, obj, status=200):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def setup(self):
        super().setup()
        self.idle, self.served, self.closed = True, 0, threading.Event()
        with STATE.lock:
            STATE.conns.add(self)

    def handle_one_request(self):
        self.idle = True  # until the request line arrives (parse_request)
        super().handle_one_request()
        self.served += 1

    def parse_request(self):
        self.idle = False
        return super().parse_request()

    def reset(self):
        """Makes the close a reset (SO_LINGER 0) and wakes the thread reading the socket."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def handle_expect_100(self):
        # http.server grants "Expect: 100-continue" before the handler runs; an `early` path
        # answers (and refuses) without granting it.
        with STATE.lock:
            early = (STATE.scripts.get(urlsplit(self.path).path) or {}).get("early")
        return True if early else super().handle_expect_100()

    def handle_any(self):
        url = urlsplit(self.path)
        with STATE.lock:
            early = (STATE.scripts.get(url.path) or {}).get("early")
        body = b"" if early else self.read_body()
        if early:
            self.close_connection = True  # the unread body would be taken for a request
        if url.path.startswith("/__ctl/"):
            return self.control(url, body)
        record = {"method": self.command, "target": self.path,
                  "headers": {k.lower(): v for k, v in self.headers.items()},
                  "body_len": len(body), "time": time.monotonic()}
        n, spec = STATE.begin(url.path, record)
        if spec.get("drop"):
            STATE.end(url.path)
            return self.reset()
        try:
            self.answer(url.path, n, spec)
        finally:
            STATE.end(url.path)

    def answer(self, path, n, spec):
        if spec.get("delay"):
            time.sleep(spec["delay"])
        if spec.get("head_gate"):
            STATE.pass_gate(spec["head_gate"])
        if "body_size" in spec:
            data = b"x" * int(spec["body_size"])
        else:
            text = spec.get("body", DEFAULT["body"]).replace("{n}", str(n))
            text = text.replace("{path}", path)
            while "{h:" in text:
                i = text.index("{h:")
                j = text.index("}", i)
                text = text[:i] + self.headers.get(text[i + 3:j], "") + text[j + 1:]
            data = text.encode()
        for code, fields in spec.get("informational", []):
            interim = b"HTTP/1.1 %d Interim\r\n" % int(code)
            interim += b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in fields.items())
            self.wfile.write(interim + b"\r\n")
            self.wfile.flush()
        status = int(spec.get("status", 200))
        self.send_response(status)
        headers = spec.get("headers", DEFAULT["headers"])
        items = headers.items() if isinstance(headers, dict) else headers
        for k, v in items:
            self.send_header(k, v)
        bodiless = self.command == "HEAD" or status in (204, 304)
        if spec.get("chunked") and not bodiless:
            self.send_header("Transfer-Encoding", "chunked")
        elif status not in (204, 304):
            self.send_header("Content-Length", str(len(data)))
        if spec.get("close"):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if bodiless:
            return
        if spec.get("gate"):
            first, rest = data[:int(spec.get("gate_after", 0))], data[int(spec.get("gate_after", 0)):]
            if spec.get("chunked"):
                if first:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(first), first))
            else:
                self.wfile.write(first)
            self.wfile.flush()
            STATE.pass_gate(spec["gate"])
            if spec.get("chunked"):
                if rest:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(rest), rest))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.wfile.write(rest)
        elif spec.get("chunked"):
            third = max(1, len(data) // 3)
            for i in range(0, len(data), third):
                piece = data[i:i + third]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                if spec.get("body_delay"):
                    time.sleep(spec["body_delay"])
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def shutdown_request(self, request):
        super().shutdown_request(request)  # closed: a reset when SO_LINGER 0 was set
        with STATE.lock:
            done = [h for h in STATE.conns if h.connection is request]
            for h in done:
                STATE.conns.discard(h)
        for h in done:
            h.closed.set()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    srv = Server(("127.0.0.1", args.port), Handler)
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
