"""Jobs a producer XADDs by hand can be broken. Each broken job becomes one
`failed` event with a readable reason and one <p>:dead entry; the worker
does not crash, injects nothing, and delivers every good job around them."""

from volley_itest import make_recipients

# (label, fields, words of which at least one must appear in the reason, lower case)
MALFORMED = [
    ("no_to", {"var.name": "Nobody", "var.token": "tokNoTo"}, ("to", "recipient", "address")),
    ("unknown_campaign", {"campaign": "no-such-campaign", "to": "ghost@example.test", "var.name": "G",
                          "var.token": "tokGhost"}, ("campaign",)),
    ("crlf_in_subject_var", {"to": "crlf@example.test", "var.name": "Eve\r\nBcc: victim@evil.test",
                             "var.token": "tokCrlf"}, ("cr", "lf", "newline", "line", "header", "control")),
    ("invalid_address", {"to": "not an address", "var.name": "Bad", "var.token": "tokBadAddr"},
     ("address", "recipient", "to")),
    ("two_ats", {"to": "a@b@example.test", "var.name": "Bad2", "var.token": "tokTwoAts"},
     ("address", "recipient", "to")),
]


def test_malformed_jobs_fail_cleanly(volley, smtp_receiver):
    rx = smtp_receiver()
    volley.write_conf(rx.hostport, threads=2)
    before = make_recipients(10, domains=("example.test",), prefix="before")
    cid = volley.push(volley.write_campaign(), volley.write_recipients(before))

    jobs = volley.key("jobs")
    bad_ids = {}
    for label, fields, _words in MALFORMED:
        f = {"campaign": cid}
        f.update(fields)  # unknown_campaign overrides the id
        bad_ids[volley.r.xadd(jobs, f)] = label
    # good jobs queued by hand after the broken ones: the worker must carry on past them
    after = make_recipients(10, domains=("example.test",), prefix="after")
    for r in after:
        volley.r.xadd(jobs, {"campaign": cid, "to": r["email"], "var.name": r["name"], "var.token": r["token"]})

    volley.run_worker(timeout=45)

    good = before + after
    msgs = rx.snapshot()
    assert sorted(m.rcpt_tos[0] for m in msgs) == sorted(r["email"] for r in good)
    for m in msgs:
        assert b"victim@evil.test" not in m.data, "CRLF in a variable injected a header"
        assert all("evil" not in r for r in m.rcpt_tos)
    by_token = {r["token"]: r for r in good}
    for m in msgs:
        tok = str(m.msg["Subject"]).rsplit("[", 1)[-1].rstrip("]")
        assert by_token[tok]["email"] == m.rcpt_tos[0]

    ev = volley.events()
    failed = {e["job"]: e for e in ev if e["status"] == "failed"}
    assert set(failed) == set(bad_ids), (
        f"failed events for {sorted(bad_ids[j] for j in failed if j in bad_ids)}; expected {sorted(bad_ids.values())}")
    words = {label: w for label, _f, w in MALFORMED}
    for jid, e in failed.items():
        label = bad_ids[jid]
        reason = e["reply"].lower()
        assert reason.strip(), f"{label}: empty reason in the failed event"
        assert any(w in reason for w in words[label]), f"{label}: reason {e['reply']!r} does not say what is wrong"
    delivered = sorted(e["to"] for e in ev if e["status"] == "delivered")
    assert delivered == sorted(r["email"] for r in good)
    assert len(ev) == len(good) + len(MALFORMED), f"{len(ev)} events"

    dead = volley.dead()
    assert len(dead) == len(MALFORMED), dead
    assert all(d.get("reason", "").strip() for d in dead), dead
    dead_tos = sorted(d.get("to", "") for d in dead)
    assert dead_tos == sorted(f.get("to", "") for _l, f, _w in MALFORMED), dead_tos

    st = volley.stats(cid)
    assert st.get("delivered") == len(good), st
    # the job for an unknown campaign is counted under that id (or nowhere), never under this campaign
    assert st.get("failed") == len(MALFORMED) - 1, st
    assert volley.r.xpending(jobs, "volley")["pending"] == 0
