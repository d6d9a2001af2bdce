"""Issue 12, section 1: secrets are printed.

A Redis password given in the store URL (userinfo or `?password=`) appears verbatim in the
startup line, and the admin token can only be given as a flag, which `ps` shows. Every
credential is redacted in banners, log lines, error messages and metrics (corral_url_redact);
the admin token can come from the environment (CORRAL_ADMIN_TOKEN) or a file
(--admin-token-file, admin_token_file) that group and others cannot read, and a token on the
command line draws a warning.
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


def write_token(path, token, mode):
    path.write_text(token + "\n")
    os.chmod(path, mode)
    return str(path)


def assert_token_needed(px, token):
    assert px.admin("GET", "/metrics").status == 401
    assert px.admin("GET", "/metrics", {"Authorization": "Bearer " + token}).status == 200


def test_issue_12_admin_token_from_a_file_flag_or_config_key(origin, tmp_path):
    token = "file-" + SECRET
    path = write_token(tmp_path / "token", token, 0o600)
    for how in (dict(args=["--admin-token-file", path]),
                dict(config="[proxy]\nadmin_token_file = %s\n" % path)):
        px = Proxy(origin.port, str(tmp_path), **how)
        try:
            assert_token_needed(px, token)
            with open("/proc/%d/cmdline" % px.proc.pid, "rb") as f:
                assert token.encode() not in f.read()
        finally:
            assert px.stop() == 0
        assert token not in px.errors() and "warning" not in px.errors()


def test_issue_12_a_token_file_others_may_read_is_refused(origin, tmp_path):
    token = "file-" + SECRET
    path = write_token(tmp_path / "token", token, 0o644)
    r = subprocess.run([proxy_binary(), "--origin", "http://127.0.0.1:%d" % origin.port,
                        "--listen", "127.0.0.1:0", "--admin-token-file", path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "admin token file %s: group or others may read or write it (mode 644)" % path \
        in r.stderr, r.stderr
    assert token not in r.stderr + r.stdout


def test_issue_12_the_flag_beats_the_environment_and_warns(origin, tmp_path):
    os.environ["CORRAL_ADMIN_TOKEN"] = "env-" + SECRET
    try:
        px = Proxy(origin.port, str(tmp_path), args=["--admin-token", "argv-" + SECRET])
    finally:
        del os.environ["CORRAL_ADMIN_TOKEN"]
    try:
        assert_token_needed(px, "argv-" + SECRET)
    finally:
        assert px.stop() == 0
    assert "warning: a token on the command line is visible to every user (ps)" in px.errors()
    assert SECRET not in px.errors()


def test_issue_12_config_errors_hide_the_password_and_the_token(origin, tmp_path):
    long_url = "redis://:%s@127.0.0.1/2?key_prefix=%s" % (SECRET, "k" * 1100)
    for args, shown in ((["--store", long_url], "--store 'redis://:***@127.0.0.1/2?key_prefix="),
                        (["--set", "proxy.admin_token=%s%s" % (SECRET, "t" * 200)],
                         "[proxy] admin_token = (hidden): want at most 127 bytes")):
        r = subprocess.run([proxy_binary(), "--origin", "http://127.0.0.1:%d" % origin.port,
                            "--listen", "127.0.0.1:0", *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and shown in r.stderr, r.stderr
        assert SECRET not in r.stderr + r.stdout


def test_issue_12_the_cli_hides_the_store_password_in_its_messages():
    from cli import corral
    dead = free_port()
    for args in (["get", "redis://:%s@127.0.0.1:%d/0" % (SECRET, dead), "k"],
                 ["bust", "redis://127.0.0.1:%d/0?password=%s" % (dead, SECRET), "--key", "k"]):
        r = corral(*args)
        err = r.stderr.decode()
        assert r.returncode == 3 and "127.0.0.1:%d" % dead in err, err
        assert SECRET not in err + r.stdout.decode()
        assert "***" in err, err
