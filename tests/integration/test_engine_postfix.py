"""Direct-to-MX delivery to a real Postfix smtpd over STARTTLS, with certificate verification.

Postfix (engine_postfix.py) listens on 127.0.0.60:<mx_port> with a certificate issued by the test
CA for mx.pf.test. dnsmasq says: pf.test MX mx.pf.test, wrongname.test MX wrong.pf.test, and both
names point at 127.0.0.60. So the same server is reached under the right name and under a name
its certificate does not carry.
  - [tls] mode = opportunistic: delivered over STARTTLS (nothing verified);
  - [tls] mode = verify, ca_file = the test CA: pf.test is delivered (chain and name check out);
    wrongname.test must be deferred with a reply naming certificate verification, and Postfix
    must receive nothing for it.
"""

import re

import pytest

from engine_dns import ADDR
from engine_postfix import Postfix

from volley_itest import ENGINE, one_event, own_volley, port_free_on, rows_for

WORKER_BOUND = 30
WRONG_NAME_BOUND = 8  # a healthy run takes a second or two
TLS_RE = re.compile(r"^TLSv1\.[23] \S+$")


@pytest.fixture(scope="module")
def postfix(test_ca):
    addr = ADDR["mx.pf.test"]
    port = port_free_on([addr])
    cert, key = test_ca.issue(["mx.pf.test"])
    pf = Postfix(addr, port, cert, key, hostname="mx.pf.test", domains=("pf.test", "wrongname.test"))
    yield pf
    pf.stop()


def delivered_to(pf, addrs, timeout=15.0):
    """Wait until Postfix has delivered a message for each address; {address: message}."""
    want = set(addrs)
    got = {}
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = {}
        for m in pf.messages():
            for a in want:
                if a in str(m.get("Delivered-To", "")) or a in str(m.get("To", "")):
                    got[a] = m
        if set(got) == want:
            break
        time.sleep(0.1)
    return got


@pytest.mark.parametrize("mode", ["opportunistic", "verify"])
def test_postfix_receives_over_starttls(volley, postfix, dnsmasq, test_ca, mode):
    tls = {"mode": mode}
    if mode == "verify":
        tls["ca_file"] = test_ca.pem
    volley.write_conf(preset=ENGINE, dns=dnsmasq.conf, tls=tls, mx_port=postfix.port)
    addrs = [f"{mode}-{i}@pf.test" for i in range(3)]
    rows = rows_for(addrs)
    volley.push_rows(rows)
    volley.run_worker(WORKER_BOUND)

    evs = volley.events_by_to()
    for a in addrs:
        e = one_event(evs, a)
        assert e["status"] == "delivered", f"{e}\npostfix log:\n{postfix.log_text()[-2000:]}"
        assert e["host"] == f"mx.pf.test:{postfix.port}", e
        assert TLS_RE.match(e.get("tls", "")), f"event must record the TLS version and cipher: {e}"
        assert e["code"] == "250", e

    got = delivered_to(postfix, addrs)
    assert set(got) == set(addrs), f"Postfix delivered {sorted(got)}; log:\n{postfix.log_text()[-3000:]}"
    by_token = {r["email"]: r["token"] for r in rows}
    for a, m in got.items():
        assert by_token[a] in str(m["Subject"]), (a, m["Subject"])
        received = " ".join(str(h) for h in m.get_all("Received", []))
        assert re.search(r"\(using TLSv1\.[23] with cipher", received), f"Postfix saw no TLS: {received}"
    log = postfix.log_text()
    assert "TLS connection established from" in log, log[-2000:]


@pytest.fixture(scope="module")
def wrong_name_run(tmp_path_factory, postfix, dnsmasq, test_ca):
    tmp = tmp_path_factory.mktemp("pf-wrongname")
    with own_volley(tmp) as v:
        v.write_conf(preset=ENGINE, dns=dnsmasq.conf, tls={"mode": "verify", "ca_file": test_ca.pem},
                     mx_port=postfix.port)
        before = len(postfix.files())
        addrs = ["a@wrongname.test", "b@wrongname.test"]
        v.push_rows(rows_for(addrs))
        run = v.run_worker(WRONG_NAME_BOUND, expect=None)
        yield {"run": run, "events": v.events_by_to(), "addrs": addrs, "new_files": len(postfix.files()) - before,
               "log": postfix.log_text()}


def test_verify_mode_sends_nothing_to_a_wrong_host_name(wrong_name_run):
    r = wrong_name_run
    assert r["new_files"] == 0, "a certificate for another name must stop delivery"
    assert "wrongname.test" not in r["log"], "no recipient for wrongname.test may reach Postfix"


def test_verify_mode_defers_a_wrong_host_name(wrong_name_run):
    r = wrong_name_run
    run = r["run"]
    assert not run.timed_out, f"worker did not exit within {WRONG_NAME_BOUND}s; log tail:\n{run.tail(4)}"
    assert run.rc == 0, f"{run}\n{run.tail()}"
    for a in r["addrs"]:
        e = one_event(r["events"], a)
        assert e["status"] == "deferred", e
        assert "certificate verification failed" in e["reply"], e
