"""
NAME
    test_feedback_classes - bounce classes in events, counters and suppression; `status` and `campaign show`

DESCRIPTION
    One campaign against scripted receivers (aiosmtpd, RCPT answered per address): a mailbox that
    does not exist (550 5.1.1, Gmail's words), a Spamhaus listing (554 5.7.1), a 421 4.7.0 rate limit
    (its own receiver: a 421 closes the connection), a route to a port nobody listens on (volley's own
    connection failure), a route that requires STARTTLS from a server that does not offer it, and a
    hostile server (engine_hostile.py) whose greeting refuses the session quoting a blocklist.
    Each bounce and deferral carries its class in the event (after `scope`), delivered events carry
    none, the campaign hash counts `bounced:<class>` / `deferred:<class>`, only the bad-mailbox
    address is suppressed (default [feedback] suppress_classes), and <p>:pstats:<provider> counts
    deliveries per provider (gmail.com recipients under gmail, the rest under default).
    With complaints and unsubscribes seeded as `volley inbound` writes them, `volley status` and
    `volley campaign show` print the counts, the classes and the complaint rates per campaign and per
    provider against Gmail's 0.3%.

    A second run with `suppress_classes = reputation`: the listed address is suppressed, the bad
    mailbox is not.
"""

import re

import pytest

from engine_hostile import BLOCKLISTED, HostileServer

from volley_itest import ENGINE, free_port, rows_for

RULES = {
    "gone@example.test": "550 5.1.1 The email account that you tried to reach does not exist. - gsmtp",
    "listed@example.test": "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org",
}


def rule(addr, n):
    return RULES.get(addr)


def slow_rule(addr, n):
    return "421 4.7.0 Too many messages from 127.0.0.1, you are being rate limited"


@pytest.fixture
def blocklisted():
    s = HostileServer("blocklisted")
    yield s
    s.stop()


def write_conf(volley, rx, slow, hostile, extra=""):
    dead = free_port()  # nobody listens there: connection refused
    route = {"example.test": rx.hostport, "gmail.com": rx.hostport, "slow.test": slow.hostport,
             "dead.test": f"127.0.0.1:{dead}", "tls.test": f"{rx.hostport} tls=starttls",
             "blocked.test": hostile.hostport}
    volley.write_conf(route, preset=ENGINE, providers={"gmail": {"rate": "1000/s", "connections": 10}})
    if extra:
        volley.conf.write_text(volley.conf.read_text() + extra)


def by_to(volley, cid):
    return {e["to"]: e for e in volley.events() if e["campaign"] == cid}


PEOPLE = ["ok@example.test", "ann@gmail.com", "bob@gmail.com", "gone@example.test", "listed@example.test",
          "x@slow.test", "y@dead.test", "z@tls.test", "b@blocked.test"]


def test_classes_counters_suppression_and_views(volley, smtp_receiver, blocklisted):
    rx, slow = smtp_receiver(rule=rule), smtp_receiver(rule=slow_rule)
    write_conf(volley, rx, slow, blocklisted)
    cid = volley.push_rows(rows_for(PEOPLE), cid="spring")
    run = volley.run_worker(60)

    ev = by_to(volley, cid)
    assert set(ev) == set(PEOPLE), ev
    want = {
        "gone@example.test": ("bounced", "bad-mailbox"),
        "listed@example.test": ("bounced", "reputation"),
        "x@slow.test": ("deferred", "rate-limited"),
        "y@dead.test": ("deferred", "protocol"),
        "z@tls.test": ("deferred", "tls"),
        # a refused greeting decides no message: the session ends, the site is down, its words tell the class
        "b@blocked.test": ("deferred", "reputation"),
    }
    for to, (status, cls) in want.items():
        e = ev[to]
        assert (e["status"], e.get("class")) == (status, cls), f"{to}: {e}\n{run.tail()}"
        # the class is the last optional field: after scope (contract order)
        keys = [k for k in e if k != "_id"]
        assert keys.index("class") > keys.index("scope"), keys
    for to in ("ok@example.test", "ann@gmail.com", "bob@gmail.com"):
        assert ev[to]["status"] == "delivered" and "class" not in ev[to], ev[to]

    st = volley.stats(cid)
    assert BLOCKLISTED[len("554 5.7.1 "):] in ev["b@blocked.test"]["reply"], ev["b@blocked.test"]
    assert st["delivered"] == 3 and st["bounced"] == 2 and st["deferred"] == 4, st
    classes = {k: v for k, v in st.items() if ":" in k}
    assert classes == {"bounced:bad-mailbox": 1, "bounced:reputation": 1, "deferred:rate-limited": 1,
                       "deferred:protocol": 1, "deferred:tls": 1, "deferred:reputation": 1}, st
    assert volley.r.smembers(volley.key("suppressed")) == {"gone@example.test"}

    pstats = {k.split(":")[-1]: volley.r.hgetall(k) for k in volley.r.keys(volley.key("pstats", "*"))}
    assert pstats == {"gmail": {"delivered": "2"}, "default": {"delivered": "1"}}, pstats

    # what `volley inbound` writes for complaints and unsubscribes
    volley.r.hset(volley.key("stats", cid), mapping={"complained": 1, "unsubscribed": 2})
    volley.r.hset(volley.key("pstats", "gmail"), "complained", 1)

    p = volley.status()
    assert p.returncode == 0, p.stderr
    out = p.stdout
    # 1 complaint / 3 delivered = 33.33%, far over Gmail's 0.30%
    assert re.search(r"^\s+spring\s+1\s+2\s+33\.33% OVER 0\.30%$", out, re.M), out
    for status, cls in (("bounced", "bad-mailbox"), ("bounced", "reputation"), ("deferred", "rate-limited"),
                        ("deferred", "protocol"), ("deferred", "tls")):
        assert re.search(rf"^\s+spring\s+{status}\s+{cls}\s+1$", out, re.M), (cls, out)
    assert re.search(r"^\s+gmail\s+2\s+1\s+50\.00% OVER 0\.30%$", out, re.M), out
    assert re.search(r"^\s+default\s+1\s+0\s+0\.00%$", out, re.M), out

    p = volley.run("campaign", "-c", volley.conf, "show", cid)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert re.search(r"^\s+complained\s+1$", out, re.M), out
    assert re.search(r"^\s+unsubscribed\s+2$", out, re.M), out
    assert re.search(r"^\s+complaints\s+33\.33% OVER 0\.30%", out, re.M), out
    assert re.search(r"^\s+bounced\s+bad-mailbox\s+1$", out, re.M), out
    assert re.search(r"^\s+deferred\s+tls\s+1$", out, re.M), out


def test_suppress_classes_is_the_operators(volley, smtp_receiver, blocklisted):
    rx, slow = smtp_receiver(rule=rule), smtp_receiver(rule=slow_rule)
    write_conf(volley, rx, slow, blocklisted, "[feedback]\nsuppress_classes = reputation\n")
    cid = volley.push_rows(rows_for(["gone@example.test", "listed@example.test", "ok@example.test"]), cid="c2")
    volley.run_worker(60)
    ev = by_to(volley, cid)
    assert ev["gone@example.test"]["class"] == "bad-mailbox" and ev["listed@example.test"]["class"] == "reputation"
    assert volley.r.smembers(volley.key("suppressed")) == {"listed@example.test"}
    # an unknown class is a config error naming the key
    volley.conf.write_text(volley.conf.read_text().replace("= reputation", "= reputation, bogus-class"))
    p = volley.status()
    assert p.returncode == 2 and "suppress_classes" in p.stderr, (p.returncode, p.stderr)
