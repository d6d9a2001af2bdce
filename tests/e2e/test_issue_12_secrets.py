"""Issue 12, section 1: secrets are printed.

A Redis password given in the store URL (userinfo or `?password=`) appears verbatim in the
startup line, and the admin token can only be given as a flag, which `ps` shows. Every
credential is redacted in banners, log lines, error messages and metrics; the admin token can
come from the environment. These tests fail until the fix lands (CMake registers them DISABLED
until then). CORRAL_ADMIN_TOKEN is the name this test proposes; rename both when the fix
chooses another.
"""
import os
import subprocess

import pytest

from conftest import Proxy, free_port, proxy_binary, wait_port

SECRET = "pw-5ecret-77f1"


@pytest.fixture
def redis_with_password(tmp_path):
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly",
                             "no", "--requirepass", SECRET], stdout=subprocess.DEVNULL,
                            cwd=str(tmp_path))
    try:
        wait_port(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize("url", ["redis://:%s@127.0.0.1:{port}/2" % SECRET,
                                 "redis://127.0.0.1:{port}/2?password=%s" % SECRET])
def test_issue_12_store_password_is_not_printed_or_exposed(origin, tmp_path,
                                                           redis_with_password, url):
    px = Proxy(origin.port, str(tmp_path),
               args=["--store", url.format(port=redis_with_password)])
    try:
        assert px.get("/a").status == 200 and px.get("/a").cache == "HIT"  # the password works
        metrics = px.metrics()
    finally:
        assert px.stop() == 0
    out = px.errors() + "\n".join(px.log_lines())
    assert "listening on" in out
    assert SECRET not in out and SECRET not in metrics, out


def test_issue_12_store_error_message_does_not_print_the_password(origin, tmp_path):
    dead = free_port()
    r = subprocess.run(
        [proxy_binary(), "--origin",
         "http://127.0.0.1:%d" % origin.port, "--listen", "127.0.0.1:0", "--store",
         "redis://:%s@127.0.0.1:%d/99999?bogus=1" % (SECRET, dead)],
        capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "bogus" in r.stderr, r.stderr
    assert SECRET not in r.stderr + r.stdout


def test_issue_12_admin_token_from_the_environment_is_required(origin, tmp_path):
    env_token = "tok-" + SECRET
    os.environ["CORRAL_ADMIN_TOKEN"] = env_token
    try:
        px = Proxy(origin.port, str(tmp_path))
    finally:
        del os.environ["CORRAL_ADMIN_TOKEN"]
    try:
        assert px.admin("GET", "/metrics").status == 401
        r = px.admin("GET", "/metrics", {"Authorization": "Bearer " + env_token})
        assert r.status == 200
    finally:
        assert px.stop() == 0
    assert env_token not in px.errors()
