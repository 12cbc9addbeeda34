"""
NAME
    test_fleet_suppress - suppressed addresses are never sent to; hard bounces suppress automatically

DESCRIPTION
    `volley suppress add Blocked@Example.TEST` (stored lower-case): the job for blocked@example.test
    gets a `suppressed` event, the receiver never sees a RCPT for it, stats suppressed = 1.

    A recipient refused with `550 5.1.1` (class bad-mailbox) is bounced and added to the suppression set
    by the record script ([queue] suppress_hard_bounces defaults to yes, [feedback] suppress_classes
    holds bad-mailbox by default): `volley suppress check`
    says so. One refused with `550 5.7.1` (policy, not an address problem) is bounced but not
    suppressed. A second campaign to the same people: the 5.1.1 address is suppressed without
    any RCPT, the 5.7.1 one is tried again. `volley suppress remove` takes an address off the list.
"""

import pytest


@pytest.fixture
def receiver(smtp_receiver):
    def rule(addr, n):
        if addr.startswith("gone@"):
            return "550 5.1.1 <gone@example.test>: Recipient address rejected: User unknown"
        if addr.startswith("policy@"):
            return "550 5.7.1 Message refused by local policy"
        return None

    return smtp_receiver(rule=rule)


def suppress(volley, *args):
    return volley.run("suppress", "-c", volley.conf, *args)


def test_suppression_list_and_hard_bounces(volley, receiver):
    volley.write_conf(receiver.hostport, name="sw", threads=1)
    p = suppress(volley, "add", "Blocked@Example.TEST")
    assert p.returncode == 0 and "added" in p.stdout, (p.stdout, p.stderr)
    assert volley.r.smembers(volley.key("suppressed")) == {"blocked@example.test"}

    people = ["ok1@example.test", "blocked@example.test", "gone@example.test", "policy@example.test",
              "ok2@example.test"]
    rows = [{"email": a, "name": a.split("@")[0], "token": f"t{i}"} for i, a in enumerate(people)]
    cid = volley.push(volley.write_campaign("one.ini", cid="first"), volley.write_recipients(rows, "one.csv"))
    volley.run_worker(60)

    tried = [a for _m, _ms, a, _r in receiver.rcpts]
    assert "blocked@example.test" not in tried, "a suppressed address got a RCPT"
    assert sorted(receiver.received()) == ["ok1@example.test", "ok2@example.test"]
    ev = {e["to"]: e for e in volley.events() if e["campaign"] == cid}
    assert ev["blocked@example.test"]["status"] == "suppressed", ev["blocked@example.test"]
    assert ev["gone@example.test"]["status"] == "bounced" and ev["gone@example.test"]["dsn"] == "5.1.1"
    assert ev["policy@example.test"]["status"] == "bounced" and ev["policy@example.test"]["dsn"] == "5.7.1"
    assert volley.stats(cid) == {"queued": 5, "delivered": 2, "bounced": 2, "suppressed": 1,
                                 "bounced:bad-mailbox": 1, "bounced:policy-related": 1}, volley.stats(cid)

    # the 5.1.1 bounce suppressed its address, the policy bounce did not
    p = suppress(volley, "check", "gone@example.test", "policy@example.test", "GONE@EXAMPLE.TEST")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["gone@example.test suppressed", "policy@example.test not suppressed",
                                     "GONE@EXAMPLE.TEST suppressed"], p.stdout
    listed = suppress(volley, "list").stdout.split()
    assert sorted(listed) == ["blocked@example.test", "gone@example.test"], listed

    # a later campaign: the bounced address is not tried again
    n_rcpt_gone = tried.count("gone@example.test")
    cid2 = volley.push(volley.write_campaign("two.ini", cid="second"), volley.write_recipients(rows, "two.csv"))
    volley.run_worker(60)
    tried = [a for _m, _ms, a, _r in receiver.rcpts]
    assert tried.count("gone@example.test") == n_rcpt_gone, "a hard-bounced address was tried again"
    assert tried.count("policy@example.test") == 2, "the policy bounce should not suppress"
    ev2 = {e["to"]: e["status"] for e in volley.events() if e["campaign"] == cid2}
    assert ev2["gone@example.test"] == "suppressed" and ev2["blocked@example.test"] == "suppressed", ev2
    assert volley.stats(cid2) == {"queued": 5, "delivered": 2, "bounced": 1, "suppressed": 2,
                                  "bounced:policy-related": 1}, volley.stats(cid2)

    p = suppress(volley, "remove", "blocked@example.test")
    assert p.returncode == 0 and "removed" in p.stdout, p.stdout
    assert volley.r.smembers(volley.key("suppressed")) == {"gone@example.test"}
