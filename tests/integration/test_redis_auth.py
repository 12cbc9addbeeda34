"""
NAME
    test_redis_auth - the spine against a locked-down Redis: ACL user, password file, TLS only

DESCRIPTION
    The Redis here has its default user disabled; volley logs in as `volley`, whose ACL allows
    only the volley:* keys and channels and only the commands volley issues (redis_secure.VOLLEY_ACL,
    the README's least privilege). Its password holds ':', '@', '/' and '%' (percent-encoded in the URL).

    - spine: `suppress add`, `push`, `campaign pause`, a worker that holds the paused campaign's jobs,
      `campaign resume`, a worker that delivers them, `status`, `warmup start/show`: every recipient
      but the suppressed one reaches the receiver exactly once; no output or log holds the password.
      With the password in the URL and with password_file; to volley-sink and to aiosmtpd; over TLS.
    - TLS only (port 0, tls-port), certificates from a CA made at test time: the spine with a client
      certificate (tls-auth-clients yes); verify = yes against an unrelated CA fails at once with a
      certificate error, for the worker (exit 1) and the tools.
    - a wrong password: worker exit 1 with "authentication failed" naming the server, masked; push and
      status exit non-zero; the password is nowhere in their output.
"""

import email.utils
import os
import time

import pytest

from redis_secure import VOLLEY_PASS, SecureRedis, make_pki, redis_keys

from volley_itest import Volley, tail, wait_for

N = 200
# a fleet-wide throttle, so its scripts and keys run under the volley ACL too
THROTTLE = {"test": {"domains": "example.test", "rate": "2000/s", "connections": 4, "daily_cap": 100000}}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def secured(tmp_path):
    """factory: (SecureRedis, Volley bound to it); both stopped at teardown."""
    made = []

    def make(**kw):
        r = SecureRedis(tmp_path / f"redis{len(made)}", **kw)
        v = Volley(tmp_path / f"volley{len(made)}", r)
        made.append((r, v))
        return r, v

    yield make
    for r, v in made:
        v.stop()
        r.stop()


def secret_free(*texts):
    """None of the texts holds the volley password (raw or percent-encoded)."""
    from urllib.parse import quote

    for t in texts:
        assert VOLLEY_PASS not in t and quote(VOLLEY_PASS, safe="") not in t, f"password leaked in:\n{t[-2000:]}"


def rows(n, tag="sec"):
    return [{"email": f"{tag}{i:04d}@example.test", "name": f"N{i}", "token": f"{tag}-tok-{i}"} for i in range(n)]


def run(volley, *args):
    p = volley.run(*args)
    secret_free(p.stdout, p.stderr)
    return p


def worker_ok(volley):
    log = volley.run_worker(timeout=90).log
    secret_free(log)
    return log


def spine(volley, received):
    """suppress, push, pause, worker (holds), resume, worker (delivers), status, warmup.

    received(): the recipients the receiver got, one entry per message.
    """
    people = rows(N)
    blocked = people[7]["email"]
    p = run(volley, "suppress", "-c", volley.conf, "add", blocked)
    assert p.returncode == 0 and "added" in p.stdout, (p.stdout, p.stderr)

    camp = volley.write_campaign(cid="secure")
    p = run(volley, "push", "-c", volley.conf, "--campaign", camp, "--recipients", volley.write_recipients(people))
    assert p.returncode == 0 and p.stdout.strip() == "secure", (p.returncode, p.stdout, p.stderr)
    assert volley.stats("secure")["queued"] == N

    p = run(volley, "campaign", "-c", volley.conf, "pause", "secure")
    assert p.returncode == 0 and "paused" in p.stdout, (p.stdout, p.stderr)
    worker_ok(volley)
    assert received() == [], "a paused campaign was sent"
    assert volley.r.xlen(volley.key("hold", "secure")) == N, "the paused jobs are held"

    p = run(volley, "campaign", "-c", volley.conf, "resume", "secure")
    assert p.returncode == 0 and "resumed" in p.stdout, (p.stdout, p.stderr)
    worker_ok(volley)

    got = received()
    want = sorted(r["email"] for r in people if r["email"] != blocked)
    assert sorted(got) == want, f"{len(got)} messages for {len(want)} recipients"
    st = volley.stats("secure")
    assert st == {"queued": N, "delivered": N - 1, "suppressed": 1}, st

    p = run(volley, "status", "-c", volley.conf, "secure")
    assert p.returncode == 0, p.stderr
    assert "delivered" in p.stdout and str(N - 1) in p.stdout, p.stdout
    assert ":***@127.0.0.1" in p.stdout, f"status names the server, password masked:\n{p.stdout}"

    p = run(volley, "warmup", "-c", volley.conf, "start", "127.0.0.1", "2026-01-01")
    assert p.returncode == 0, (p.stdout, p.stderr)
    p = run(volley, "warmup", "-c", volley.conf, "show")
    assert p.returncode == 0 and "127.0.0.1" in p.stdout and "2026-01-01" in p.stdout, (p.stdout, p.stderr)


def sink_received(sink):
    def get():
        return [email.utils.parseaddr(str(m["To"]))[1] for m in sink.messages()]
    return get


def rx_received(rx):
    return lambda: [m.rcpt_tos[0] for m in rx.snapshot()]


@pytest.mark.parametrize("how", ["url", "password_file"])
def test_acl_user_spine_to_sink(secured, volley_sink, how, tmp_path):
    r, volley = secured()
    sink = volley_sink()
    if how == "url":
        keys = redis_keys(r.volley_url())
    else:
        pw = tmp_path / "redis.pw"
        pw.write_text(VOLLEY_PASS + "\n")
        pw.chmod(0o600)
        keys = redis_keys(r.volley_url(password=False), password_file=pw)
    volley.write_conf(sink.hostport, redis=keys, providers=THROTTLE)
    spine(volley, sink_received(sink))
    # the volley user really is confined: it cannot read outside its prefix
    acl_log = r.client.execute_command("ACL", "LOG")
    assert acl_log == [], f"volley was refused something it needs: {acl_log[:3]}"


def test_acl_user_spine_to_aiosmtpd(secured, smtp_receiver):
    """In database 3: SELECT comes right after AUTH, before anything else, on every connection."""
    import redis

    r, volley = secured(db=3)
    rx = smtp_receiver()
    volley.write_conf(rx.hostport, redis=redis_keys(r.volley_url()), providers=THROTTLE)
    spine(volley, rx_received(rx))
    db0 = redis.Redis(host="127.0.0.1", port=r.port, username="admin", password="admin-pw", db=0)
    assert db0.dbsize() == 0, f"keys written to db 0: {db0.keys('*')[:5]}"
    db0.close()


def test_least_privilege_is_enforced(secured):
    """The ACL in the README is not a formality: the volley user is refused outside its keys and
    its commands."""
    import redis

    r, _volley = secured()
    c = redis.Redis(host="127.0.0.1", port=r.port, username="volley", password=VOLLEY_PASS)
    c.set("volley:probe", "1")
    for bad in (lambda: c.set("other:key", "1"), lambda: c.flushall(), lambda: c.config_get("*"),
                lambda: c.keys("*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            bad()
    c.close()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=r.port).ping()  # default user is off


def test_tls_only_spine_with_client_certificate(secured, volley_sink, pki):
    r, volley = secured(tls=True, pki=pki, client_auth="yes")
    sink = volley_sink()
    volley.write_conf(sink.hostport, providers=THROTTLE, redis=redis_keys(
        r.volley_url(), ca=pki / "ca.pem", client_cert=(pki / "client.pem", pki / "client.key")))
    spine(volley, sink_received(sink))
    assert "rediss://volley:***@127.0.0.1" in volley.run("status", "-c", volley.conf).stdout


def test_tls_verify_with_wrong_ca_fails_clearly(secured, pki):
    r, volley = secured(tls=True, pki=pki, client_auth="optional")
    volley.write_conf("127.0.0.1:9", redis=redis_keys(r.volley_url(), ca=pki / "wrong-ca.pem"))
    log = volley.run_worker(timeout=30, expect=1).log
    secret_free(log)
    assert "certificate verification failed" in log and "rediss://volley:***@127.0.0.1" in log, log
    for args in (("status", "-c", volley.conf), ("suppress", "-c", volley.conf, "list")):
        p = run(volley, *args)
        assert p.returncode != 0 and "certificate verification failed" in p.stderr, (args, p.stdout, p.stderr)
    # the same CA file but verify = no: encryption without authentication is the operator's explicit choice
    volley.write_conf("127.0.0.1:9", redis=redis_keys(r.volley_url(), ca=pki / "wrong-ca.pem", verify="no"))
    p = run(volley, "suppress", "-c", volley.conf, "list")
    assert p.returncode == 0, p.stderr


def test_tls_host_name_is_checked(secured, pki):
    """The server certificate names 127.0.0.1 and localhost; the same server reached as 127.0.0.2
    (a trusted chain, the wrong name) is refused, by the tools and the worker."""
    r, volley = secured(tls=True, pki=pki)
    url = r.volley_url().replace("127.0.0.1", "127.0.0.2")
    volley.write_conf("127.0.0.1:9", redis=redis_keys(url, ca=pki / "ca.pem"))
    p = run(volley, "status", "-c", volley.conf)
    assert p.returncode != 0 and "certificate verification failed" in p.stderr, p.stderr
    assert "mismatch" in p.stderr, p.stderr
    log = volley.run_worker(timeout=30, expect=1).log
    assert "certificate verification failed" in log, log
    # by a name it does carry: accepted
    volley.write_conf("127.0.0.1:9", redis=redis_keys(r.volley_url().replace("127.0.0.1", "localhost"),
                                                      ca=pki / "ca.pem"))
    p = run(volley, "suppress", "-c", volley.conf, "list")
    assert p.returncode == 0, p.stderr


def test_wrong_password(secured):
    r, volley = secured()
    bad = r.volley_url().replace("s3cr", "n0pe")
    volley.write_conf("127.0.0.1:9", redis=redis_keys(bad))
    log = volley.run_worker(timeout=30, expect=1).log
    assert "authentication failed" in log and "WRONGPASS" in log, log
    assert f"redis://volley:***@127.0.0.1:{r.port}/0" in log, log
    assert "n0pe" not in log
    for args in (("status", "-c", volley.conf),
                 ("push", "-c", volley.conf, "--campaign", volley.write_campaign(),
                  "--recipients", volley.write_recipients(rows(3))),
                 ("campaign", "-c", volley.conf, "show", "x"),
                 ("suppress", "-c", volley.conf, "list")):
        p = volley.run(*args)
        assert p.returncode != 0, (args, p.stdout)
        assert "authentication failed" in p.stderr, (args, p.stderr)
        assert "n0pe" not in p.stdout + p.stderr, (args, p.stderr)
    # no password at all where one is required
    volley.write_conf("127.0.0.1:9", redis=redis_keys(f"redis://127.0.0.1:{r.port}"))
    p = volley.run("status", "-c", volley.conf)
    assert p.returncode != 0 and "NOAUTH" in p.stderr or "WRONGPASS" in p.stderr, p.stderr


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_auth_lost_after_start_is_an_outage(secured, volley_sink, pki, tls):
    """The password changed on the server while the worker runs: one log line, retries (a new
    connection, and TLS handshake, each time), no exit; back to the right password: it carries on."""
    r, volley = secured(tls=tls, pki=pki)
    sink = volley_sink()
    volley.write_conf(sink.hostport, redis=redis_keys(r.volley_url(), ca=pki / "ca.pem" if tls else None))
    w = volley.start_worker()
    time.sleep(1.5)
    assert w.poll() is None, tail(w.logpath)
    r.client.execute_command("ACL", "SETUSER", "volley", "resetpass", ">other-pass")
    r.client.execute_command("CLIENT", "KILL", "USER", "volley")
    time.sleep(2.0)
    assert w.poll() is None, f"the worker exited on a lost password:\n{tail(w.logpath)}"
    log = w.logpath.read_text()
    assert log.count("authentication failed") == 1, log
    secret_free(log)
    r.client.execute_command("ACL", "SETUSER", "volley", "resetpass", f">{VOLLEY_PASS}")
    people = rows(20, "late")
    camp = volley.write_campaign(cid="late")
    p = run(volley, "push", "-c", volley.conf, "--campaign", camp, "--recipients", volley.write_recipients(people))
    assert p.returncode == 0, p.stderr
    assert wait_for(lambda: volley.stats("late").get("delivered", 0) == 20, 30), (volley.stats("late"),
                                                                                    tail(w.logpath))
    assert "connected again" in w.logpath.read_text()
    os.kill(w.pid, 15)
    assert w.wait(timeout=30) == 0
