"""Issue 12, section 1: a write the store refuses names the store's reason.

The CLI's own connection already tells a dead port or a wrong password (test_cli.py); a store
that answers and refuses the write (a replica: READONLY; at maxmemory: OOM) printed only
"store failure". Now the line ends with the reason libcorral keeps (corral_store_status).
"""
from cli import corral, redis, resp  # noqa: F401 - redis is a fixture


def one_line(r):
    err = r.stderr.decode()
    assert r.returncode == 3 and len(err.splitlines()) == 1, r
    return err


def test_issue_12_cli_prints_why_the_store_refused_a_write(redis):
    url = "redis://127.0.0.1:%d/" % redis
    assert resp(redis, "REPLICAOF", "127.0.0.1", "1") == "OK"  # a replica of nobody
    err = one_line(corral("set", url, "k", "v"))
    assert err.startswith("corral set: %s: store failure: 127.0.0.1:%d: READONLY " % (url, redis))
    assert err.rstrip().endswith("(readonly)"), err
    err = one_line(corral("bust", url, "--tag", "t"))
    assert "READONLY" in err and "(readonly)" in err, err

    assert resp(redis, "REPLICAOF", "NO", "ONE") == "OK"
    assert resp(redis, "CONFIG", "SET", "maxmemory-policy", "noeviction") == "OK"
    assert resp(redis, "CONFIG", "SET", "maxmemory", "1") == "OK"
    err = one_line(corral("set", url, "k", "v"))
    assert "127.0.0.1:%d: OOM command not allowed" % redis in err and "(oom)" in err, err
