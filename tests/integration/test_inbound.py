"""`volley inbound` and the VERP return path, on loopback: a worker sends a campaign to an aiosmtpd receiver with
[feedback] on, then reports are sent to `volley inbound` as providers send them (Postfix's own DSN is in
test_inbound_postfix.py).

  - the envelope sender is <local>+<tag>@bounce.test (local part <= 64), the tag also in X-Volley-Job and the
    Message-ID, {{unsubscribe_url}} filled; with [feedback] unset nothing changes;
  - ARF reports as Yahoo (VERP in Original-Mail-From, whole message) and Microsoft JMRP (headers only, no
    envelope) send them: a `complained` event on the right job, counters, <p>:pstats, suppression;
  - hostile input: relaying, forged and tampered tags, unknown mailboxes (550), a 50 MB message (552),
    malformed MIME and a DSN for a job that does not exist (recorded unmatched with the reason), an over-long
    line, a silent client; the server keeps serving;
  - one-click unsubscribe with curl: 200 + suppressed, idempotent, tampered token 403 (nothing suppressed),
    and the next campaign to that address records `suppressed`;
  - with [redis] shards = 4 a report is recorded in its recipient's shard (event, counter, pstats, suppression).
"""

import re
import smtplib
import socket
import subprocess
import time

import pytest

from inbound_util import DOMAIN, Inbound, feedback_conf, jmrp_arf, smtp_session, unmatched, verp_of, yahoo_arf
from volley_itest import ENGINE, free_port, one_event, rows_for, wait_for

ADDRS = ["ann@dest.test", "bob@outlook.test", "carl@yahoo.test", "dora@dest.test"]


@pytest.fixture
def sent(volley, smtp_receiver):
    """A campaign sent with [feedback] on; volley inbound running. {cid, rx, inbound, by_to, http, events}"""
    rx = smtp_receiver(0)
    port, http = free_port(), free_port()
    volley.write_conf(route=rx.hostport, preset=ENGINE, providers={"microsoft": {"domains": "outlook.test"}},
                      **feedback_conf(volley, port, http))
    cid = volley.push_rows(rows_for(ADDRS), extra={"list_unsubscribe": "{{unsubscribe_url}}"})
    volley.run_worker(30)
    assert rx.wait_count(len(ADDRS))
    by_to = {m.rcpt_tos[0].lower(): m for m in rx.snapshot()}
    ib = Inbound(volley, port)
    yield {"cid": cid, "rx": rx, "inbound": ib, "by_to": by_to, "http": http, "events": volley.events_by_to()}
    ib.stop()


def test_verp_return_path_and_headers(sent):
    for a in ADDRS:
        m = sent["by_to"][a]
        local = m.mail_from.rpartition("@")[0]
        assert m.mail_from.endswith("@" + DOMAIN) and local.startswith("news+"), m.mail_from
        assert len(local) <= 64, m.mail_from
        tag = verp_of(m)
        assert re.fullmatch(r"[a-z2-7]{20,60}", tag), tag
        assert m.msg["X-Volley-Job"] == tag
        assert m.msg["Message-ID"].startswith(f"<{tag}."), m.msg["Message-ID"]
        lu = str(m.msg["List-Unsubscribe"]).strip()
        assert lu.startswith("<https://unsub.test/u/"), lu
        assert m.msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    tags = {verp_of(m) for m in sent["by_to"].values()}
    assert len(tags) == len(ADDRS), "every job has its own tag"


def test_feedback_off_keeps_mail_from(volley, smtp_receiver):
    rx = smtp_receiver(0)
    volley.write_conf(route=rx.hostport, preset=ENGINE)
    volley.push_rows(rows_for(["x@dest.test"]))
    volley.run_worker(30)
    assert rx.wait_count(1)
    m = rx.snapshot()[0]
    assert m.mail_from == "news@sender.test"
    assert m.msg["X-Volley-Job"] is None


def complaint_events(volley, to):
    return [e for e in volley.events_by_to().get(to, []) if e["status"] == "complained"]


def send(port, mail_from, rcpt, data):
    with smtp_session(port) as s:
        s.sendmail(mail_from, [rcpt], data.encode())


def test_arf_yahoo_with_verp(volley, sent):
    a = "carl@yahoo.test"
    m = sent["by_to"][a]
    returned = m.data.decode()
    send(sent["inbound"].port, "feedback@arf.mail.yahoo.test", f"fbl@{DOMAIN}", yahoo_arf(a, returned, m.mail_from))
    assert wait_for(lambda: complaint_events(volley, a), 10), sent["inbound"].log()
    (e,) = complaint_events(volley, a)
    delivered = one_event(sent["events"], a)
    assert e["job"] == delivered["job"] and e["campaign"] == sent["cid"], (e, delivered)
    assert e["feedback"] == "abuse" and e["source"] == "arf", e
    assert volley.stats(sent["cid"]).get("complained") == 1
    assert volley.r.sismember(volley.key("suppressed"), a)


def test_arf_jmrp_headers_only(volley, sent):
    a = "bob@outlook.test"
    m = sent["by_to"][a]
    headers = m.data.decode().split("\r\n\r\n", 1)[0]
    # the envelope is gone: no Return-Path, no VERP address anywhere; X-Volley-Job and Message-ID remain
    assert sent["by_to"][a].mail_from not in headers
    send(sent["inbound"].port, "staff@hotmail.test", f"fbl@{DOMAIN}", jmrp_arf(headers))
    assert wait_for(lambda: complaint_events(volley, a), 10), sent["inbound"].log()
    (e,) = complaint_events(volley, a)
    assert e["job"] == one_event(sent["events"], a)["job"]
    assert volley.r.sismember(volley.key("suppressed"), a)
    assert volley.r.hget(volley.key("pstats", "microsoft"), "complained") == "1"


def test_arf_without_verp_by_message_id(volley, sent):
    """Yahoo with the return path stripped and X-Volley-Job removed: the Message-ID still names the job."""
    a = "ann@dest.test"
    m = sent["by_to"][a]
    returned = "\r\n".join(l for l in m.data.decode().split("\r\n") if not l.startswith("X-Volley-Job"))
    send(sent["inbound"].port, "feedback@arf.mail.yahoo.test", f"fbl@{DOMAIN}", yahoo_arf(a, returned))
    assert wait_for(lambda: complaint_events(volley, a), 10), sent["inbound"].log()
    assert volley.r.sismember(volley.key("suppressed"), a)


def rcpt_reply(port, rcpt):
    with smtp_session(port) as s:
        s.mail("someone@elsewhere.test")
        return s.rcpt(rcpt)


def test_refusals_and_unmatched(volley, sent):
    port = sent["inbound"].port
    tag = verp_of(sent["by_to"]["dora@dest.test"])
    # relaying and unknown mailboxes
    code, msg = rcpt_reply(port, "victim@gmail.test")
    assert code == 550 and b"relaying denied" in msg
    code, _ = rcpt_reply(port, f"postmaster@{DOMAIN}")
    assert code == 550
    code, _ = rcpt_reply(port, f"news+{'a' * 34}@{DOMAIN}")  # base32, right length, no valid HMAC
    assert code == 550
    tampered = tag[:-1] + ("a" if tag[-1] != "a" else "b")
    code, msg = rcpt_reply(port, f"news+{tampered}@{DOMAIN}")
    assert code == 550, msg
    code, _ = rcpt_reply(port, f"news+{tag}@{DOMAIN}")
    assert code == 250
    # a 50 MB message: read to its end and refused with 552 (the default limit is 10 MiB)
    big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * (50 * 1024 * 1024 // 1000)
    with smtp_session(port) as s:
        with pytest.raises(smtplib.SMTPSenderRefused) as ei:  # announced with SIZE: refused at MAIL
            s.sendmail("x@elsewhere.test", [f"fbl@{DOMAIN}"], big)
        assert ei.value.smtp_code == 552
    with smtp_session(port) as s:
        assert s.mail("x@elsewhere.test")[0] == 250  # not announced: read to its end, then refused
        assert s.rcpt(f"fbl@{DOMAIN}")[0] == 250
        assert s.data(big)[0] == 552
    # malformed MIME to the complaints address: taken, recorded unmatched with the reason
    send(port, "x@elsewhere.test", f"fbl@{DOMAIN}",
         "Content-Type: multipart/report; report-type=feedback-report\r\n\r\nno boundary\r\n")
    # a DSN for a job whose campaign does not exist (any more): valid tag, recorded unmatched
    other = verp_of(sent["by_to"]["ann@dest.test"])
    volley.r.delete(volley.key("campaign", sent["cid"]))
    dsn = (f"Content-Type: multipart/report; report-type=delivery-status; boundary=b1\r\n\r\n--b1\r\n"
           "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.test\r\n\r\n"
           "Final-Recipient: rfc822; ann@dest.test\r\nAction: failed\r\nStatus: 5.1.1\r\n--b1--\r\n")
    send(port, "MAILER-DAEMON@mx.test", f"news+{other}@{DOMAIN}", dsn)
    assert wait_for(lambda: len(unmatched(volley)) >= 2, 10), sent["inbound"].log()
    reasons = [u["reason"] for u in unmatched(volley)]
    assert any(r.startswith("malformed MIME") for r in reasons), reasons
    assert any("does not exist" in r for r in reasons), reasons
    assert not volley.r.sismember(volley.key("suppressed"), "ann@dest.test")
    assert int(volley.r.hget(volley.key("inbound"), "unmatched")) >= 2
    assert int(volley.r.hget(volley.key("inbound"), "refused")) >= 4
    # volley status shows the same counters and the unmatched stream's length
    st = volley.status()
    assert st.returncode == 0, st.stderr
    section = st.stdout.split("inbound (volley inbound)", 1)[1]
    shown = dict(re.findall(r"^  (received|matched|unmatched|refused|unmatched stream) +(\d+)$", section, re.M))
    counters = volley.r.hgetall(volley.key("inbound"))
    for field in ("received", "unmatched", "refused"):
        assert int(shown[field]) == int(counters[field]), (field, st.stdout)
    assert int(shown["unmatched stream"]) == volley.r.xlen(volley.key("inbound", "unmatched")) >= 2, st.stdout
    # an over-long command line, then a silent client: answered, and the server still serves
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        f = c.makefile("rb")
        assert f.readline().startswith(b"220")
        c.sendall(b"EHLO " + b"z" * 5000 + b"\r\n")
        assert f.readline().startswith(b"500")
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        f = c.makefile("rb")
        assert f.readline().startswith(b"220")
        assert f.readline().startswith(b"421"), "a silent client is cut off after timeout_ms"
    assert time.monotonic() - t0 < 8
    assert sent["inbound"].alive()
    code, _ = rcpt_reply(port, f"fbl@{DOMAIN}")
    assert code == 250


def curl(*args):
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", *args],
                       capture_output=True, text=True, timeout=20)
    return int(p.stdout or 0)


def local_url(sent, a):
    lu = str(sent["by_to"][a].msg["List-Unsubscribe"]).strip().strip("<>")
    return lu.replace("https://unsub.test", f"http://127.0.0.1:{sent['http']}")


def test_one_click_unsubscribe(volley, sent, smtp_receiver):
    a, b = "dora@dest.test", "ann@dest.test"
    url = local_url(sent, a)
    # tampered: another address's token with one character changed
    burl = local_url(sent, b)
    bad = burl[:-3] + ("a" if burl[-3] != "a" else "b") + burl[-2:]
    assert curl("-X", "POST", "-d", "List-Unsubscribe=One-Click", bad) == 403
    assert not volley.r.sismember(volley.key("suppressed"), b)
    assert volley.r.scard(volley.key("suppressed")) == 0
    # GET: a confirmation page that POSTs
    page = subprocess.run(["curl", "-s", url], capture_output=True, text=True, timeout=20).stdout
    assert 'method="post"' in page and 'name="List-Unsubscribe" value="One-Click"' in page
    assert not volley.r.sismember(volley.key("suppressed"), a), "a GET must not unsubscribe"
    assert curl("-X", "POST", "-d", "List-Unsubscribe=One-Click", url) == 200
    assert volley.r.sismember(volley.key("suppressed"), a)
    assert curl("-X", "POST", "-d", "List-Unsubscribe=One-Click", url) == 200  # idempotent
    assert volley.stats(sent["cid"]).get("unsubscribed") == 1
    evs = [e for e in volley.events_by_to()[a] if e["status"] == "unsubscribed"]
    assert evs[0]["source"] == "one-click"
    assert len(evs) == 1 and evs[0]["campaign"] == sent["cid"], evs
    assert curl("-X", "POST", "-d", "something=else", url) == 400
    # multipart/form-data, which RFC 8058 says a client SHOULD send (curl -F)
    c = "carl@yahoo.test"
    assert curl("-F", "List-Unsubscribe=One-Click", local_url(sent, c)) == 200
    assert volley.r.sismember(volley.key("suppressed"), c)
    assert curl("-F", "List-Unsubscribe=Other", local_url(sent, "bob@outlook.test")) == 400
    assert not volley.r.sismember(volley.key("suppressed"), "bob@outlook.test")
    # the next campaign to that address: suppressed, not sent
    n0 = len(sent["rx"].snapshot())
    cid2 = volley.push_rows(rows_for([a, "eve@dest.test"]), name="second")
    volley.run_worker(30)
    evs = [e for e in volley.events_by_to()[a] if e["campaign"] == cid2]
    assert len(evs) == 1 and evs[0]["status"] == "suppressed", evs
    assert sent["rx"].wait_count(n0 + 1)
    assert all(a not in m.rcpt_tos for m in sent["rx"].snapshot()[n0:])


def test_starttls_and_max_clients(volley, sent, tls_cert):
    """With a certificate: STARTTLS offered and a complaint taken over TLS (at a complaints_address outside the
    bounce domain); max_clients: the next one gets 421."""
    sent["inbound"].stop()
    port = free_port()
    conf = feedback_conf(volley, port, cert_file=tls_cert[0], key_file=tls_cert[1], max_clients=2)
    fbl = "fbl-reports@sender.test"
    conf["feedback"]["complaints_address"] = fbl
    volley.write_conf(route=sent["rx"].hostport, preset=ENGINE, **conf)
    ib = Inbound(volley, port)
    try:
        a = "dora@dest.test"
        headers = sent["by_to"][a].data.decode().split("\r\n\r\n", 1)[0]
        with smtp_session(port) as s:
            assert s.has_extn("starttls")
            s.starttls()
            s.ehlo("reporter.test")
            assert not s.has_extn("starttls"), "STARTTLS is not offered twice"
            s.sendmail("staff@hotmail.test", [fbl], jmrp_arf(headers).encode())
        assert wait_for(lambda: complaint_events(volley, a), 10), ib.log()
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        try:
            for c in held:
                assert c.makefile("rb").readline().startswith(b"220")
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                assert c.makefile("rb").readline().startswith(b"421")
        finally:
            for c in held:
                c.close()
        # the held sessions end, and a new client is served again
        def served():
            try:
                return rcpt_reply(port, fbl)[0] == 250
            except smtplib.SMTPConnectError:
                return False

        assert wait_for(served, 10)
        assert rcpt_reply(port, f"fbl@{DOMAIN}")[0] == 550, "the default address is not taken when another is set"
    finally:
        ib.stop()


def test_pipelined_commands_are_read_one_line_at_a_time(sent):
    """Each command is parsed on its own line: a SIZE= in the next pipelined line is not MAIL's (it once was,
    since the parser searched past the end of the line), and EHLO without a domain is a syntax error."""
    with socket.create_connection(("127.0.0.1", sent["inbound"].port), timeout=10) as c:
        f = c.makefile("rb")
        assert f.readline().startswith(b"220")
        c.sendall(b"EHLO\r\n")
        assert f.readline().startswith(b"501")
        c.sendall(b"EHLO reporter.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        c.sendall(b"MAIL FROM:<x@elsewhere.test>\r\nNOOP SIZE=99999999999\r\nQUIT\r\n")
        assert f.readline().startswith(b"250"), "MAIL must not take the SIZE of the next line"
        assert f.readline().startswith(b"250")
        assert f.readline().startswith(b"221")


def test_commands_pipelined_behind_a_message_wait_for_its_reply(volley, sent):
    """A message's 250 is sent when the store thread recorded it; commands the client pipelined behind the final
    dot wait for that reply and are then answered in order (not lost, not answered before the 250)."""
    a = "carl@yahoo.test"
    m = sent["by_to"][a]
    report = yahoo_arf(a, m.data.decode(), m.mail_from).replace("\r\n.", "\r\n..")
    with socket.create_connection(("127.0.0.1", sent["inbound"].port), timeout=10) as c:
        f = c.makefile("rb")
        assert f.readline().startswith(b"220")
        c.sendall(b"EHLO reporter.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        c.sendall(f"MAIL FROM:<feedback@arf.mail.yahoo.test>\r\nRCPT TO:<fbl@{DOMAIN}>\r\nDATA\r\n".encode())
        assert f.readline().startswith(b"250")
        assert f.readline().startswith(b"250")
        assert f.readline().startswith(b"354")
        c.sendall(report.encode() + b"\r\n.\r\nNOOP\r\nMAIL FROM:<x@elsewhere.test>\r\nQUIT\r\n")
        replies = [f.readline() for _ in range(4)]
    assert replies[0].startswith(b"250 2.0.0 ok: report taken"), replies
    assert [r[:3] for r in replies[1:]] == [b"250", b"250", b"221"], replies
    assert wait_for(lambda: complaint_events(volley, a), 10), sent["inbound"].log()


def test_redis_outage_answers_451(volley, sent):
    """Redis down: a report is answered 451 (the sender keeps it and retries), the server keeps running and
    reconnects once Redis is back."""
    a = "carl@yahoo.test"
    m = sent["by_to"][a]
    report = yahoo_arf(a, m.data.decode(), m.mail_from).encode()
    volley.redis.kill()
    with smtp_session(sent["inbound"].port) as s:
        s.mail("feedback@arf.mail.yahoo.test")
        assert s.rcpt(f"fbl@{DOMAIN}")[0] == 250
        code, msg = s.data(report)
        assert code == 451, msg
    assert sent["inbound"].alive()
    volley.redis.start()  # without AOF: the data is gone, so the report is now kept as unmatched
    send(sent["inbound"].port, "feedback@arf.mail.yahoo.test", f"fbl@{DOMAIN}", report.decode())
    assert wait_for(lambda: unmatched(volley), 10), sent["inbound"].log()
    assert "does not exist" in unmatched(volley)[0]["reason"]


def test_sigterm_ends_waiting_sessions(volley, sent):
    """SIGTERM: an idle client is told 421 and the process exits 0 at once, not after its timeout_ms (30 s here;
    the bound below leaves room for a loaded machine)."""
    sent["inbound"].stop()
    port = free_port()
    volley.write_conf(route=sent["rx"].hostport, preset=ENGINE, **feedback_conf(volley, port, timeout_ms=30000))
    ib = Inbound(volley, port)
    with socket.create_connection(("127.0.0.1", port), timeout=40) as c:
        f = c.makefile("rb")
        assert f.readline().startswith(b"220")
        t0 = time.monotonic()
        assert ib.stop() == 0
        assert time.monotonic() - t0 < 10
        assert f.readline().startswith(b"421")


def test_plain_bounce_and_auto_reply(volley, sent):
    """A non-standard bounce (qmail's text, the remote reply quoted) to the VERP address is an async bounce of
    that job; an out-of-office reply to the same address is not (recorded unmatched)."""
    a = "ann@dest.test"
    verp = sent["by_to"][a].mail_from
    port = sent["inbound"].port
    send(port, "", verp, "From: MAILER-DAEMON@old.test\r\nSubject: failure notice\r\n\r\n"
         "Hi. This is the qmail-send program at old.test.\r\nI'm afraid I wasn't able to deliver your message.\r\n\r\n"
         f"<{a}>:\r\n127.0.0.1 does not like recipient.\r\nRemote host said: 550 5.1.1 no mailbox here by that name\r\n")
    send(port, "", sent["by_to"]["dora@dest.test"].mail_from,
         "From: dora@dest.test\r\nSubject: Out of office\r\n\r\nI am away until Monday.\r\n")

    def bounced():
        return [e for e in volley.events_by_to().get(a, []) if e["status"] == "bounced"]

    assert wait_for(lambda: bounced() and unmatched(volley), 10), sent["inbound"].log()
    (e,) = bounced()
    assert e["source"] == "plain" and e["async"] == "1" and e["dsn"] == "5.1.1" and e["code"] == "550", e
    assert e["class"] == "bad-mailbox", e
    assert e["reply"] == "no mailbox here by that name", e
    assert e["job"] == one_event(sent["events"], a)["job"]
    assert volley.r.sismember(volley.key("suppressed"), a)
    assert not volley.r.sismember(volley.key("suppressed"), "dora@dest.test")
    (u,) = unmatched(volley)
    assert u["reason"].startswith("not a bounce"), u


def test_reports_recorded_in_the_recipients_shard(volley, smtp_receiver):
    """[redis] shards = 4: a complaint is recorded by one script in its recipient's shard (the one push put the
    job in): the event, the campaign's counter, the provider's pstats and the suppression set all under that
    shard's tag; `volley events` and `campaign show` find it across the shards."""
    from test_shards import shard_of, skey

    rx = smtp_receiver(0)
    port = free_port()
    volley.write_conf(route=rx.hostport, preset=ENGINE, redis={"shards": 4}, **feedback_conf(volley, port))
    cid = volley.push_rows(rows_for(ADDRS))
    volley.run_worker(30)
    assert rx.wait_count(len(ADDRS))
    by_to = {m.rcpt_tos[0].lower(): m for m in rx.snapshot()}
    ib = Inbound(volley, port)
    try:
        a = "carl@yahoo.test"
        m = by_to[a]
        send(port, "feedback@arf.mail.yahoo.test", f"fbl@{DOMAIN}", yahoo_arf(a, m.data.decode(), m.mail_from))
        assert wait_for(lambda: complaint_events(volley, a), 10), ib.log()
    finally:
        ib.stop()
    s = shard_of(a, 4)
    assert int(volley.r.hget(skey(s, "stats", cid), "complained")) == 1
    assert volley.r.sismember(skey(s, "suppressed"), a)
    assert [k for k in volley.r.scan_iter(match="volley:*pstats*") if volley.r.hget(k, "complained")] == \
        [skey(s, "pstats", "yahoo")]
    assert not volley.r.exists("volley:events") and not volley.r.exists(f"volley:stats:{cid}")
    show = volley.run("campaign", "-c", volley.conf, "show", cid)
    assert re.search(r"complained\s+1\b", show.stdout), show.stdout
