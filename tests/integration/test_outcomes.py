"""Outcomes the receiving server decides: a 5xx to RCPT is a bounce (event,
counter, no retry), a 4xx is a deferral (event, counter, and the job waits in
<p>:retry: never lost), everything else is still delivered, and
--exit-when-idle does not wait for the retry set."""

import time

from volley_itest import make_recipients


def test_rejected_and_deferred_recipients(volley, smtp_receiver):
    rx = smtp_receiver(reject=["bad*@example.test"], defer=["slow*@example.test"])
    good = make_recipients(10, domains=("example.test",), prefix="good")
    bad = make_recipients(5, domains=("example.test",), prefix="bad")
    slow = make_recipients(5, domains=("example.test",), prefix="slow")
    rows = good[:4] + bad + good[4:7] + slow + good[7:]  # interleaved
    volley.write_conf(rx.hostport)
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
    t0_ms = int(time.time() * 1000)
    volley.run_worker(timeout=45)

    # the server's view: only the good recipients got a message
    got = sorted(m.rcpt_tos[0] for m in rx.snapshot())
    assert got == sorted(r["email"] for r in good)

    ev = volley.events()
    by_status = {}
    for e in ev:
        by_status.setdefault(e["status"], []).append(e)
    assert sorted(e["to"] for e in by_status.get("delivered", [])) == sorted(r["email"] for r in good)

    bounced = by_status.get("bounced", [])
    assert sorted(e["to"] for e in bounced) == sorted(r["email"] for r in bad), bounced
    for e in bounced:
        assert e["code"] == "550" and e["dsn"] == "5.1.1", e
        assert "User unknown" in e["reply"], f"server text should be kept in the event: {e}"
        assert e["host"], e

    deferred = by_status.get("deferred", [])
    assert sorted(e["to"] for e in deferred) == sorted(r["email"] for r in slow), deferred
    for e in deferred:
        assert e["code"] == "450" and e["dsn"] == "4.2.1", e
        assert e["attempt"] == "1", e
    assert set(by_status) <= {"delivered", "bounced", "deferred"}, set(by_status)

    st = volley.stats(cid)
    assert (st.get("queued"), st.get("delivered"), st.get("bounced"), st.get("deferred"), st.get("failed", 0)) == (
        20, 10, 5, 5, 0), st

    # deferred jobs are waiting in <p>:retry (due in the future), not lost; bounces are not retried
    members = volley.retry_members()
    assert len(members) == 5, members
    for r in slow:
        hit = [(m, s) for m, s in members if r["email"].encode() in m]
        assert len(hit) == 1, f"{r['email']} not (or twice) in {volley.key('retry')}: {members}"
        assert hit[0][1] > t0_ms, f"retry of {r['email']} due at {hit[0][1]}, before the run started"
    assert not any(r["email"].encode() in m for r in bad for m, _ in members)
    assert volley.r.xlen(volley.key("dead")) == 0
    assert volley.r.xpending(volley.key("jobs"), "volley")["pending"] == 0, "every job must be acknowledged"
