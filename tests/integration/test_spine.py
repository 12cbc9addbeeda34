"""The spine: push 1,000 recipients, run a worker until idle, and every
recipient gets exactly one message carrying its own variables, in plain SMTP
and over STARTTLS, received by aiosmtpd and by volley-sink; Redis holds one
delivered event per recipient and the campaign counters say so."""

import email.utils

import pytest

from volley_itest import message_text

N = 1000


def check_messages(rows, got, label):
    """got: list of (envelope-or-To recipient, parsed message). One message per row, own variables."""
    by_email = {r["email"]: r for r in rows}
    assert len(got) == len(rows), f"{label}: received {len(got)} messages for {len(rows)} recipients"
    seen = set()
    for rcpt, msg in got:
        assert rcpt in by_email, f"{label}: message for unknown recipient {rcpt!r}"
        assert rcpt not in seen, f"{label}: {rcpt} received twice"
        seen.add(rcpt)
        row = by_email[rcpt]
        to_addr = email.utils.parseaddr(str(msg["To"]))[1]
        assert to_addr.lower() == rcpt.lower(), f"{label}: To: {msg['To']!r} in the message for {rcpt}"
        assert str(msg["Subject"]) == f"Hello {row['name']} [{row['token']}]", (
            f"{label}: subject {msg['Subject']!r} for {rcpt}")
        body = message_text(msg)
        assert row["token"] in body and row["name"] in body, f"{label}: body for {rcpt} lacks its variables"
        assert msg["Message-ID"] and msg["Date"] and msg["From"], f"{label}: missing RFC 5322 header for {rcpt}"
    assert seen == set(by_email)


def check_redis(volley, cid, rows, code_prefix="2"):
    ev = volley.events()
    assert len(ev) == len(rows), f"{len(ev)} events for {len(rows)} jobs"
    bad = [e for e in ev if e.get("status") != "delivered"]
    assert not bad, f"{len(bad)} events not delivered, first: {bad[0]}"
    assert {e["to"] for e in ev} == {r["email"] for r in rows}
    assert all(e["campaign"] == cid and e["code"].startswith(code_prefix) for e in ev), ev[0]
    st = volley.stats(cid)
    assert st.get("delivered") == len(rows), st
    assert st.get("queued") == len(rows), st
    assert not st.get("failed") and not st.get("bounced") and not st.get("deferred"), st
    # nothing left behind: no pending entries, no retries, no dead letters
    assert volley.r.zcard(volley.key("retry")) == 0
    assert volley.r.xlen(volley.key("dead")) == 0
    assert volley.r.xpending(volley.key("jobs"), "volley")["pending"] == 0


def run_campaign(volley, route, tls, rows):
    volley.write_conf(route, tls=tls)
    camp = volley.write_campaign()
    cid = volley.push(camp, volley.write_recipients(rows))
    assert volley.stats(cid).get("queued") == len(rows), "push must count queued jobs"
    volley.run_worker()
    return cid


@pytest.mark.parametrize("tls", ["off", "opportunistic"], ids=["plain", "starttls"])
def test_thousand_to_aiosmtpd(volley, smtp_receiver, recipients, tls):
    starttls = tls != "off"
    # with STARTTLS the receiver refuses MAIL before TLS: a plain delivery cannot pass
    rx = smtp_receiver(tls=starttls, require_tls=starttls)
    rows = recipients(N)
    cid = run_campaign(volley, rx.hostport, tls, rows)

    msgs = rx.snapshot()
    assert all(len(m.rcpt_tos) == 1 for m in msgs), "one recipient per transaction expected"
    check_messages(rows, [(m.rcpt_tos[0], m.msg) for m in msgs], "aiosmtpd")
    assert all(m.mail_from for m in msgs), "envelope sender missing"
    if starttls:
        assert all(m.tls for m in msgs), f"{sum(not m.tls for m in msgs)} messages arrived without TLS"
    check_redis(volley, cid, rows)

    st = volley.status(cid)
    assert st.returncode == 0, st.stderr
    assert "delivered" in st.stdout and str(N) in st.stdout, f"status output:\n{st.stdout}"


@pytest.mark.parametrize("tls", ["off", "opportunistic"], ids=["plain", "starttls"])
def test_thousand_to_volley_sink(volley, volley_sink, recipients, tls):
    starttls = tls != "off"
    sink = volley_sink(tls=starttls)
    rows = recipients(N)
    cid = run_campaign(volley, sink.hostport, tls, rows)

    msgs = sink.messages()
    check_messages(rows, [(email.utils.parseaddr(str(m["To"]))[1], m) for m in msgs], "volley-sink")
    check_redis(volley, cid, rows)
    assert sink.stop() == 0
    st = sink.stats()
    assert st["messages"] == N, st
    if starttls:
        assert st["tls_connections"] == st["connections"] > 0, f"not every connection used TLS: {st}"
    else:
        assert st.get("tls_connections", 0) == 0, st


def test_html_and_text_parts_non_ascii_and_defaults(volley, smtp_receiver):
    """A multipart campaign: both parts carry the variables, a non-ASCII name
    survives header and body encoding, a missing variable takes its [defaults]
    value, extra [headers] and List-Unsubscribe are present."""
    rx = smtp_receiver()
    volley.write_conf(rx.hostport)
    camp = volley.write_campaign(
        subject="Grüße {{name}} [{{token}}]",
        text="Hallo {{name}}, token {{token}}, plan {{plan}}.\n",
        html="<html><body><p>Hallo {{name}}, token <b>{{token}}</b>, plan {{plan}}.</p></body></html>\n",
        headers={"X-Campaign-Tag": "itest"},
        defaults={"plan": "basic"},
        extra={"list_unsubscribe": "https://unsub.example.test/u?t={{token}}"},
    )
    # no `plan` column in the CSV: every recipient takes the [defaults] value
    rows = [{"email": "zoe@example.test", "name": "Zoë Ünal", "token": "tokA1"},
            {"email": "li@example.test", "name": "李雷", "token": "tokB2"}]
    cid = volley.push(camp, volley.write_recipients(rows))
    volley.run_worker()
    msgs = {m.rcpt_tos[0]: m for m in rx.snapshot()}
    assert set(msgs) == {r["email"] for r in rows}
    for r in rows:
        m = msgs[r["email"]]
        msg = m.msg
        assert str(msg["Subject"]) == f"Grüße {r['name']} [{r['token']}]"
        # the raw header must be 7-bit (RFC 2047) since the client did not ask for SMTPUTF8
        assert all(b < 128 for b in m.data.split(b"\r\n\r\n", 1)[0]), "raw header block is not ASCII"
        types = {p.get_content_type() for p in msg.walk()}
        assert {"text/plain", "text/html"} <= types, types
        for p in msg.walk():
            if p.get_content_type() in ("text/plain", "text/html"):
                c = p.get_content()
                assert r["name"] in c and r["token"] in c, (p.get_content_type(), c)
        assert "plan basic" in msg.get_body(("plain",)).get_content()
        assert str(msg["X-Campaign-Tag"]) == "itest"
        assert f"https://unsub.example.test/u?t={r['token']}" in str(msg["List-Unsubscribe"])
    assert volley.stats(cid).get("delivered") == 2
