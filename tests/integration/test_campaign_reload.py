"""
NAME
    test_campaign_reload - a campaign edited while a worker runs is picked up; a broken one is refused

DESCRIPTION
    A worker runs in the background against aiosmtpd. The campaign is pushed, its first recipients are
    delivered with the old subject, then the same campaign id is pushed again with a new subject and body
    (`volley push` bumps updated_ms and keeps created_ms). Workers re-read campaigns every 5 s, so jobs
    queued more than ~6 s after the edit must carry the new subject; jobs delivered before the edit carry
    the old one; jobs queued right at the edit may carry either, but each message is consistent (subject
    and body of the same version). Nothing fails, nothing lands in the dead letters.

    A campaign with a template syntax error is refused by `volley push` with exit 2 and one line naming
    the field, line and column (in characters); nothing is written to Redis, and an existing campaign of
    the same id is left untouched.
"""

import signal
import time

import pytest

from volley_itest import stop_process, tail

CID = "reload-spring"
FROM = '"Shop" <news@shop.example>'
REFRESH_WAIT = 6.5  # the worker re-reads a campaign every 5 s; margin for a loaded box


def versions_of(receiver, rows):
    """{email: (subject, text body)} of the messages received for rows."""
    want = {r["email"] for r in rows}
    out = {}
    for m in receiver.snapshot():
        rcpt = m.rcpt_tos[0]
        if rcpt in want:
            assert rcpt not in out, f"{rcpt} received twice"
            out[rcpt] = (str(m.msg["subject"]), m.msg.get_content().replace("\r\n", "\n"))
    return out


def rows_for(tag, n):
    return [{"email": f"{tag}{i}@example.test", "token": f"{tag}-{i}"} for i in range(n)]


def old(row):
    return (f"Old subject {row['token']}", f"version 1 for {row['token']}\n")


def new(row):
    return (f"New subject {row['token']}", f"version 2 for {row['token']}\n")


def wait_received(receiver, n, worker, timeout=15):
    if not receiver.wait_count(n, timeout):
        pytest.fail(f"{len(receiver.snapshot())} of {n} messages arrived; worker log:\n{tail(worker.logpath)}",
                    pytrace=False)


def test_edited_campaign_is_picked_up_by_running_worker(volley, smtp_receiver):
    rx = smtp_receiver()
    volley.write_conf(rx.hostport, threads=2)
    ini1 = volley.write_campaign("v1.ini", cid=CID, sender=FROM, subject="Old subject {{token}}",
                                 text="version 1 for {{token}}\n")
    ini2 = volley.write_campaign("v2.ini", cid=CID, sender=FROM, subject="New subject {{token}}",
                                 text="version 2 for {{token}}\n")
    key = volley.key("campaign", CID)

    # before the edit: the worker compiles version 1
    a, b, c = rows_for("before", 5), rows_for("atedit", 5), rows_for("after", 5)
    assert volley.push(ini1, volley.write_recipients(a, "a.csv")) == CID
    w = volley.start_worker()
    wait_received(rx, 5, w)
    v1 = volley.r.hgetall(key)

    # the edit, with jobs queued at the same moment
    time.sleep(0.01)  # updated_ms has millisecond resolution
    assert volley.push(ini2, volley.write_recipients(b, "b.csv")) == CID
    edited_at = time.monotonic()
    v2 = volley.r.hgetall(key)
    assert v2["subject"] == "New subject {{token}}"
    assert int(v2["updated_ms"]) > int(v1["updated_ms"]), "push must bump updated_ms"
    assert v2["created_ms"] == v1["created_ms"], "push must keep created_ms"
    wait_received(rx, 10, w)

    # well after the edit: jobs added by a producer (XADD, as docs/redis-contract.md allows) are rendered
    # from the re-read campaign
    time.sleep(max(0.0, REFRESH_WAIT - (time.monotonic() - edited_at)))
    for r in c:
        volley.r.xadd(volley.key("jobs"), {"campaign": CID, "to": r["email"], "var.token": r["token"]})
    wait_received(rx, 15, w)

    got = versions_of(rx, a + b + c)
    assert {r["email"]: got.get(r["email"]) for r in a} == {r["email"]: old(r) for r in a}, \
        "jobs delivered before the edit must carry the old subject"
    for r in b:  # queued at the edit: either version, but subject and body of the same one
        assert got[r["email"]] in (old(r), new(r)), f"{r['email']}: {got[r['email']]}"

    # nothing failed
    assert stop_process(w, signal.SIGTERM) == 0
    ev = volley.events()
    assert len(ev) == 15 and all(e["status"] == "delivered" for e in ev), [e for e in ev if e["status"] != "delivered"]
    assert volley.dead() == []
    assert volley.stats(CID) == {"queued": 10, "delivered": 15}

    # checked last, so a stale rendering is reported after everything else was seen to hold
    stale = {r["email"]: got.get(r["email"]) for r in c if got.get(r["email"]) != new(r)}
    assert not stale, (f"{len(stale)} of {len(c)} jobs queued {REFRESH_WAIT}s after the edit were rendered from "
                       f"the old campaign: {stale}")


@pytest.mark.parametrize("field,body,message", [
    ("subject", "Hello {{name", "subject: line 1, column 7: unclosed tag"),
    ("subject", "żółw {{name", "subject: line 1, column 6: unclosed tag"),  # columns count characters
    ("text", "Hello\n  {{#vip}}\nVIP\n", "text: line 2, column 3: unclosed section 'vip'"),
    ("html", "<p>\n<i>żó{{#a}}x{{/b}}</i>", "html: line 2, column 13: closing tag 'b' does not match open section 'a'"),
    ("text", "ok\n{{/a}}", "text: line 2, column 1: closing tag 'a' without an open section"),
])
def test_template_syntax_error_is_refused(volley, field, body, message):
    volley.write_conf("127.0.0.1:9", threads=1)  # never contacted: no worker runs
    rows = rows_for("r", 3)
    csv = volley.write_recipients(rows, "r.csv")
    good = volley.write_campaign("good.ini", cid=CID, sender=FROM, subject="Fine {{token}}",
                                 text="fine {{token}}\n")
    assert volley.push(good, csv) == CID
    before = volley.r.hgetall(volley.key("campaign", CID))
    jobs_before = volley.r.xlen(volley.key("jobs"))

    parts = {"subject": "Fine {{token}}", "text": "fine {{token}}\n", "html": None}
    parts[field] = body
    bad = volley.write_campaign("bad.ini", cid=CID, sender=FROM, **parts)
    p = volley.run("push", "-c", volley.conf, "--campaign", bad, "--recipients", csv)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stdout == "", "no campaign id may be printed for a refused campaign"
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(message), p.stderr
    assert "bad.ini" in lines[0], f"the campaign file should be named: {lines[0]}"
    # nothing written: the running campaign and the queue are as they were
    assert volley.r.hgetall(volley.key("campaign", CID)) == before
    assert volley.r.xlen(volley.key("jobs")) == jobs_before
    assert volley.stats(CID) == {"queued": 3}
