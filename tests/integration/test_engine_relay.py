"""Relay mode: every domain goes to an authenticating smarthost (engine_relay.AuthRelay, aiosmtpd).

"587": STARTTLS then AUTH; "465": implicit TLS (tls=implicit). AUTH PLAIN when offered, else LOGIN.
Routes with auth verify the relay's certificate by default: the relay has a certificate from the
test CA for `localhost`, and [tls] ca_file is the test CA. A wrong password defers the messages
with the relay's reply. The password is never in the worker's output or anywhere in Redis.
"""

import base64
import os

import pytest

from engine_relay import AuthRelay

from volley_itest import ENGINE, one_event, own_volley, rows_for, stopped_at_teardown

# aiosmtpd warns "Requiring AUTH while not requiring TLS" for the implicit-TLS relay, where it is not true
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER = "relay-user"
WORKER_BOUND = 20
WRONG_PW_BOUND = 8  # a healthy run takes about a second


@pytest.fixture(scope="session")
def relay_cert(test_ca):
    return test_ca.issue(["localhost"])


@pytest.fixture
def relay(relay_cert):
    yield from stopped_at_teardown(lambda _n, **kw: AuthRelay(relay_cert[0], relay_cert[1], **kw))


def secret_forms(user, password):
    """The password and every encoding of it that AUTH PLAIN / LOGIN put on the wire."""
    plain = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
    return [password.encode(), base64.b64encode(password.encode()), plain]


def assert_no_secret(volley, run, user, password):
    for form in secret_forms(user, password):
        assert form.decode() not in run.log, f"{form!r} appears in the worker's output"
        assert form not in volley.dump_bytes(), f"{form!r} appears in Redis"


def route_value(port, tls, password, tmp, use_file):
    v = f"localhost:{port} tls={tls}"
    if use_file:
        f = tmp / "relay.secret"
        f.write_text(f"{USER}:{password}\n")
        return v + f" auth_file={f}"
    return v + f" auth={USER}:{password}"


@pytest.mark.parametrize("flavour,mech", [("starttls", "PLAIN"), ("starttls", "LOGIN"), ("implicit", "PLAIN"),
                                          ("implicit", "LOGIN")])
def test_relay_auth_delivers(volley, relay, test_ca, tmp_path, flavour, mech):
    password = "pw-" + os.urandom(8).hex()
    rx = relay(user=USER, password=password, implicit=flavour == "implicit", mechanisms=(mech,))
    volley.write_conf(route_value(rx.port, flavour, password, tmp_path, use_file=mech == "LOGIN"), preset=ENGINE,
                      tls={"mode": "opportunistic", "ca_file": test_ca.pem})
    addrs = ["a@relay-one.example", "b@relay-two.example", "c@relay-one.example"]
    volley.push_rows(rows_for(addrs))
    run = volley.run_worker(WORKER_BOUND)

    evs = volley.events_by_to()
    for a in addrs:
        e = one_event(evs, a)
        assert e["status"] == "delivered", e
        assert e.get("tls", "").startswith("TLSv1."), f"relay delivery must be under TLS: {e}"
        assert e["host"] == f"localhost:{rx.port}", e
    auths, msgs = rx.snapshot()
    assert auths and all(m == mech and login == USER and ok for m, login, ok in auths), auths
    assert sorted(r for _f, rcpts, _t, _a in msgs for r in rcpts) == sorted(addrs)
    assert all(tls and authed for _f, _r, tls, authed in msgs), msgs
    assert_no_secret(volley, run, USER, password)


@pytest.fixture(scope="module")
def wrong_password_run(tmp_path_factory, relay_cert, test_ca):
    """One worker run against the relay with a wrong password (shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("relay-wrong")
    password, wrong = "pw-" + os.urandom(8).hex(), "wrong-" + os.urandom(8).hex()
    rx = AuthRelay(relay_cert[0], relay_cert[1], user=USER, password=password, implicit=False, mechanisms=("PLAIN",))
    try:
        with own_volley(tmp) as v:
            v.write_conf(route_value(rx.port, "starttls", wrong, tmp, use_file=False), preset=ENGINE,
                         tls={"mode": "opportunistic", "ca_file": test_ca.pem})
            addrs = ["a@relay.example", "b@relay.example"]
            v.push_rows(rows_for(addrs))
            run = v.run_worker(WRONG_PW_BOUND, expect=None)
            auths, msgs = rx.snapshot()
            yield {"run": run, "auths": auths, "msgs": msgs, "events": v.events_by_to(), "addrs": addrs,
                   "wrong": wrong, "redis_dump": v.dump_bytes()}
    finally:
        rx.stop()


def test_relay_wrong_password_relays_nothing_and_leaks_nothing(wrong_password_run):
    r = wrong_password_run
    assert not r["msgs"], "nothing may be relayed without authentication"
    assert r["auths"] and not any(ok for _m, _l, ok in r["auths"]), r["auths"][:3]
    for form in secret_forms(USER, r["wrong"]):
        assert form.decode() not in r["run"].log, f"{form!r} appears in the worker's output"
        assert form not in r["redis_dump"], f"{form!r} appears in Redis"


def test_relay_wrong_password_defers_with_reply(wrong_password_run):
    r = wrong_password_run
    run = r["run"]
    assert not run.timed_out, (f"worker did not exit within {WRONG_PW_BOUND}s; the relay saw {len(r['auths'])} AUTH "
                               f"attempts; log tail:\n{run.tail(4)}")
    assert run.rc == 0, f"{run}\n{run.tail()}"
    for a in r["addrs"]:
        e = one_event(r["events"], a)
        assert e["status"] == "deferred", e
        assert e["code"] == "535" or "535" in e["reply"], f"the relay's reply must be in the event: {e}"
    assert len(r["auths"]) <= 4, f"a refused login must not be retried in a loop: {len(r['auths'])} attempts"
