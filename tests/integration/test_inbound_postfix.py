"""End to end: a real Postfix accepts volley's mail, cannot deliver it, and its own DSN comes back to `volley inbound`.

Postfix (engine_postfix.py) listens on 127.0.0.1 and relays dest.test to an aiosmtpd next hop that refuses
ann@dest.test with 550 5.1.1 (and takes ok@dest.test). volley sends both through Postfix ([route]) with
[feedback] on, so the envelope sender is news+<tag>@bounce.test; Postfix answers 250, then its bounce daemon
writes a real RFC 3464 DSN to that return path, which its transport map sends to `volley inbound`. The job must
get an asynchronous `bounced` event with Postfix's Status, Diagnostic-Code and Remote-MTA, on the job that was
`delivered` to Postfix, the campaign's counter, and the address must be suppressed.
"""

import pytest

from engine_postfix import Postfix
from inbound_util import DOMAIN, Inbound, feedback_conf, unmatched
from volley_itest import ENGINE, SmtpReceiver, free_port, rows_for, wait_for


@pytest.fixture
def relay(test_ca):
    nexthop = SmtpReceiver(reject=["ann@dest.test"])
    inbound_port = free_port()
    port = free_port()
    cert, key = test_ca.issue(["relay.pf.test"])
    pf = Postfix("127.0.0.1", port, cert, key, hostname="relay.pf.test", domains=(), extra_main=(
        "relay_domains = dest.test",
        f"transport_maps = inline:{{dest.test=smtp:[127.0.0.1]:{nexthop.port}, "
        f"{DOMAIN}=smtp:[127.0.0.1]:{inbound_port}}}",
        "smtp_tls_security_level = none", "smtp_host_lookup = native",
    ))
    yield {"pf": pf, "nexthop": nexthop, "inbound_port": inbound_port}
    pf.stop()
    nexthop.stop()


def test_postfix_dsn_becomes_async_bounce(volley, relay):
    pf = relay["pf"]
    volley.write_conf(route=f"127.0.0.1:{pf.port}", preset=ENGINE, **feedback_conf(volley, relay["inbound_port"]))
    ib = Inbound(volley, relay["inbound_port"])
    try:
        cid = volley.push_rows(rows_for(["ann@dest.test", "ok@dest.test"]))
        volley.run_worker(30)
        # Postfix took it (the failure comes later: its DSN may be recorded before the worker even exits)
        (delivered,) = [e for e in volley.events_by_to()["ann@dest.test"] if e["status"] == "delivered"]
        assert relay["nexthop"].wait_count(1, timeout=20), pf.log_text()[-3000:]

        def bounce():
            return [e for e in volley.events_by_to().get("ann@dest.test", []) if e["status"] == "bounced"]

        assert wait_for(bounce, 40), (f"no async bounce; inbound log:\n{ib.log()}\nunmatched: {unmatched(volley)}\n"
                                      f"postfix log:\n{pf.log_text()[-4000:]}")
        (e,) = bounce()
        assert e["async"] == "1" and e["source"] == "dsn", e
        assert e["job"] == delivered["job"] and e["campaign"] == cid, (e, delivered)
        assert e["dsn"] == "5.1.1" and e["code"] == "550" and e["class"] == "bad-mailbox", e
        assert "User unknown" in e["reply"], e
        assert "127.0.0.1" in e.get("host", ""), e
        assert volley.r.sismember(volley.key("suppressed"), "ann@dest.test")
        assert not volley.r.sismember(volley.key("suppressed"), "ok@dest.test")
        st = volley.stats(cid)
        assert st["delivered"] == 2 and st["bounced"] == 1 and st["bounced:bad-mailbox"] == 1, st
        assert "status=bounced" in pf.log_text() and "sender non-delivery notification" in pf.log_text()
        assert ib.alive()
    finally:
        ib.stop()
