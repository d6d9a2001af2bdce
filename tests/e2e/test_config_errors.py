"""Issue 12, section 1: flag and config errors say where, which key, which value and why.

The real binary is started with bad flags and bad files: it exits 2 (a configuration error,
as docs/proxy.md and the systemd unit's RestartPreventExitStatus=2 say) with one line naming
the flag or FILE:LINE, the key, the value and the reason, and prints the usage only after a
usage error (an unknown option, a missing value, no origin).
"""
import signal
import subprocess

import pytest

from conftest import eventually, proxy_binary

USAGE = "usage: corral-proxy"


def run(*args):
    return subprocess.run([proxy_binary(), "--listen", "127.0.0.1:0", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, message", [
    (["--origin", "https://example.com"],
     "corral-proxy: --origin 'https://example.com': TLS to the origin is not supported"),
    (["--origin=https://example.com"], "--origin 'https://example.com': TLS"),
    (["--origin", "localhost:8000"],
     "--origin 'localhost:8000': no scheme: want http://HOST[:PORT] (e.g. http://localhost:8000)"),
    (["--origin", "/srv/www"], "--origin '/srv/www': a path, not a URL"),
    (["--origin", "http://h:1", "--listen", "8080"],
     "--listen '8080': no host: want HOST:PORT (127.0.0.1:8080, or :8080"),
    (["--origin", "http://h:1", "--set", "cache.ttl=abc"],
     "--set cache.ttl: [cache] ttl = 'abc': want a duration: 250ms, 10s, 5m, 1h, 1d"),
    (["--origin", "http://h:1", "--route", "/blog/ foo=1"],
     "--route '/blog/ foo=1': unknown key 'foo' in [route:blog] (known: "),
])
def test_a_bad_flag_value_names_flag_value_and_reason(args, message):
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr, r.stderr
    assert USAGE not in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


@pytest.mark.parametrize("args, message", [
    (["--origin", "http://h:1", "--nope"], "corral-proxy: unknown option '--nope'"),
    (["--origin"], "corral-proxy: option '--origin' needs a value"),
    ([], "corral-proxy: no origin: give --origin http://HOST:PORT or origin = in [proxy]"),
])
def test_a_usage_error_prints_the_usage(args, message):
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(message + "\n" + USAGE), r.stderr


@pytest.mark.parametrize("text, message", [
    ("[proxy\norigin = http://127.0.0.1:1\n", "{f}:1: unclosed section header '[proxy'"),
    ("[route:blog]\nprefix = /blog/\n\n[route:blog]\nttl = 1m\n",
     "{f}:4: section [route:blog] is given twice (first at line 1)"),
    ("[proxy]\norigin = http://127.0.0.1:1\n\n[cache]\nttl = soon\n",
     "{f}:5: [cache] ttl = 'soon': want a duration"),
    ("[proxy]\norigin = https://127.0.0.1:1\n",
     "{f}:2: [proxy] origin = 'https://127.0.0.1:1': TLS to the origin is not supported"),
])
def test_a_bad_file_names_file_line_key_and_reason(tmp_path, text, message):
    path = tmp_path / "proxy.ini"
    path.write_text(text)
    r = run("--config", str(path))
    assert r.returncode == 2, r.stderr
    assert message.format(f=path) in r.stderr, r.stderr
    assert USAGE not in r.stderr, r.stderr


def test_a_missing_file_says_why(tmp_path):
    r = run("--origin", "http://h:1", "--config", str(tmp_path / "none.ini"))
    assert r.returncode == 2
    assert "cannot read config file %s: No such file or directory" % (tmp_path / "none.ini") \
        in r.stderr, r.stderr


def test_a_refused_reload_says_where(origin, proxy):
    px = proxy(config="[route:a]\nprefix = /a/\n")
    with open(px.config_path, "w") as f:
        f.write("[route:a]\nprefix = /a/\nno_such_key = 1\n")
    px.signal(signal.SIGHUP)
    eventually(lambda: "not reloaded" in px.errors(), what="the refused reload")
    assert "%s:3: unknown key 'no_such_key' in [route:a]" % px.config_path in px.errors()
