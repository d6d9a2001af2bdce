"""The access log's formats (access_log_format: corral, combined, json) and its order: the lines
of every worker thread come out in the order of their times."""
import concurrent.futures
import json
import re
import subprocess

from conftest import eventually, free_port, proxy_binary


def lines_for(px, n, needle):
    return eventually(lambda: (lambda found: found if len(found) >= n else None)(
        [l for l in px.log_lines() if needle in l]), what="%d access log lines" % n)


def test_combined_format_is_apaches_with_referer_and_user_agent(origin, proxy):
    px = proxy(args=("--access-log-format", "combined"))
    r1 = px.get("/combined?q=1", {"Referer": "https://shop.example/", "User-Agent": 'ua "x"\\y'})
    r2 = px.get("/combined?q=1")
    # In the order the answers were complete: the miss may end after the hit that followed it.
    found = lines_for(px, 2, "/combined")
    first = [l for l in found if "shop.example" in l][0]
    second = [l for l in found if l != first][0]
    m = re.match(r'^127\.0\.0\.1 - - \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000)\] '
                 r'"GET /combined\?q=1 HTTP/1\.1" 200 (\d+) "([^"]*)" "([^"]*)"$', first)
    assert m, first
    assert m.group(2) == str(len(r1.body))
    assert m.group(3) == "https://shop.example/"
    assert m.group(4) == r'ua \x22x\x22\x5Cy'  # quotes and backslash escaped, as nginx does
    assert second.endswith('" 200 %d "-" "-"' % len(r2.body)), second


def test_json_lines_carry_every_field(origin, proxy):
    px = proxy(config="[route:docs]\nprefix = /docs/\n",
               args=("--access-log-format", "json"))
    ua = 'caf\u00e9 "q" \\'.encode().decode("latin-1")  # sent as UTF-8 bytes
    r1 = px.get("/docs/a?b=%22", {"User-Agent": ua})
    px.get("/docs/a?b=%22")
    found = {j["cache"]: j for j in (json.loads(l) for l in lines_for(px, 2, "/docs/"))}
    first, second = found["MISS"], found["HIT"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", first["time"]), first
    assert (first["client"], first["method"], first["protocol"]) == ("127.0.0.1", "GET",
                                                                     "HTTP/1.1")
    assert first["target"] == "/docs/a?b=%22"
    assert (first["status"], first["cache"], first["route"]) == (200, "MISS", "docs")
    assert (second["cache"], second["reason"], second["store_reason"]) == ("HIT", "fresh", "")
    assert first["store_reason"] == "max-age" and first["reason"] == "not in cache"
    assert first["bytes"] == len(r1.body) and first["duration_ms"] >= 0
    assert first["user_agent"] == ua  # each byte outside ASCII as \u00XX, quotes escaped
    assert first["referer"] == ""


def test_lines_of_all_workers_come_out_in_time_order(origin, proxy):
    """Four workers, many clients on new connections (the kernel spreads them over the
    workers' sockets): the lines' times never go back."""
    px = proxy(threads=4, args=("--access-log-format", "json"))
    clients, each = 16, 40

    def client(k):
        for i in range(each):
            assert px.get("/order/%d/%d" % (k, i % 5)).status == 200

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    lines = [json.loads(l) for l in lines_for(px, clients * each, "/order/")]
    times = [l["time"] for l in lines]
    back = [(a, b) for a, b in zip(times, times[1:]) if b < a]
    assert not back, "%d lines out of order, e.g. %s" % (len(back), back[:3])
    assert len(lines) == clients * each


def test_an_unknown_format_refuses_to_start(origin):
    r = subprocess.run([proxy_binary(), "--origin", "http://127.0.0.1:%d" % origin.port,
                        "--listen", "127.0.0.1:%d" % free_port(), "--access-log-format", "clf"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "--access-log-format" in r.stderr
