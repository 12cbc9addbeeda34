"""CHUNKING (RFC 3030): with a server that offers it (and PIPELINING), each message goes as
`BDAT <size> LAST` behind its MAIL and RCPT in one write, with no 354 and no dot-stuffing.

volley-sink offers CHUNKING unless --no-chunking; aiosmtpd does not (test_spine covers the DATA
fallback there) and Postfix does (test_engine_postfix). The sink's stats count messages that came by
BDAT (`chunked`), so each test sees which way the messages went, not only that they arrived.
Hostile cases: a BDAT refused in the middle of a pipelined run of transactions (by a rule on the
message, and after a refused RCPT), and connections dropped right after BDAT LAST.
"""

import email.utils
import time

import pytest

from engine_dns import ADDR
from engine_postfix import Postfix

from volley_itest import ENGINE, make_recipients, message_text, one_event, port_free_on, rows_for

# lines that DATA would have to dot-stuff; BDAT must carry them untouched
DOT_TEXT = "Dear {{name}},\n.a line that starts with a dot\n..and one with two\n.\nyour token is {{token}}.\n"


def by_status(events):
    out = {}
    for e in events:
        out.setdefault(e["status"], []).append(e)
    return out


def push_and_run(volley, sink, rows, text=DOT_TEXT, **smtp):
    volley.write_conf(sink.hostport, connections=2, **smtp)
    cid = volley.push(volley.write_campaign(text=text), volley.write_recipients(rows))
    volley.run_worker(timeout=60)
    return cid


def check_bodies(sink, rows):
    """Every message arrived once, for its recipient, with its dot lines as written."""
    msgs = sink.messages()
    assert len(msgs) == len(rows), f"{len(msgs)} messages for {len(rows)} recipients"
    want = {r["email"]: r for r in rows}
    seen = set()
    for m in msgs:
        to = email.utils.parseaddr(str(m["To"]))[1]
        assert to in want and to not in seen, to
        seen.add(to)
        body = message_text(m).replace("\r\n", "\n")
        assert want[to]["token"] in body, body
        assert "\n.a line that starts with a dot\n..and one with two\n.\n" in body, repr(body)


@pytest.mark.parametrize("mode", ["bdat", "config_off", "sink_off"])
def test_chunking_and_its_fallbacks(volley, volley_sink, mode):
    """BDAT when both sides allow it; DATA when `[smtp] chunking = no` or the server lacks CHUNKING."""
    rows = make_recipients(150)
    sink = volley_sink(*(["--no-chunking"] if mode == "sink_off" else []))
    cid = push_and_run(volley, sink, rows, **({"chunking": "no"} if mode == "config_off" else {}))
    check_bodies(sink, rows)
    ev = volley.events()
    assert len(ev) == len(rows) and all(e["status"] == "delivered" for e in ev), by_status(ev).keys()
    assert volley.stats(cid).get("delivered") == len(rows)
    assert sink.stop() == 0
    st = sink.stats()
    assert st["messages"] == len(rows), st
    assert st["chunked"] == (len(rows) if mode == "bdat" else 0), st


def test_bdat_refused_mid_pipeline(volley, volley_sink):
    """A BDAT refused by a rule, and one after a refused RCPT, fail only their own message; the transactions
    pipelined behind them are delivered, and every outcome carries its own server reply."""
    good = make_recipients(60, domains=("example.test",), prefix="good")
    spam = make_recipients(10, domains=("example.test",), prefix="spam")
    later = make_recipients(10, domains=("example.test",), prefix="later")
    gone = make_recipients(10, domains=("example.test",), prefix="gone")
    rows = []
    for i in range(10):  # interleaved, so failures sit in the middle of pipelined runs
        rows += good[6 * i:6 * i + 6] + [spam[i], later[i], gone[i]]
    sink = volley_sink("--data-reply", "spam*@example.test=554 5.7.1 message refused as spam",
                       "--data-reply", "later*@example.test=451 4.3.2 try again later",
                       "--reject-rcpt", "gone*@example.test")
    cid = push_and_run(volley, sink, rows)

    ev = by_status(volley.events())
    assert set(ev) == {"delivered", "bounced", "deferred"}, set(ev)
    assert sorted(e["to"] for e in ev["delivered"]) == sorted(r["email"] for r in good)
    bounced = {e["to"]: e for e in ev["bounced"]}
    assert sorted(bounced) == sorted(r["email"] for r in spam + gone), sorted(bounced)
    for r in spam:
        e = bounced[r["email"]]
        assert (e["code"], e["dsn"]) == ("554", "5.7.1") and "spam" in e["reply"], e
    for r in gone:
        e = bounced[r["email"]]
        # the recipient's refusal decides, not the BDAT's "no valid recipients" that follows it
        assert (e["code"], e["dsn"]) == ("550", "5.1.1") and e["scope"] == "recipient", e
    deferred = ev["deferred"]
    assert sorted(e["to"] for e in deferred) == sorted(r["email"] for r in later)
    assert all((e["code"], e["dsn"]) == ("451", "4.3.2") for e in deferred), deferred
    st = volley.stats(cid)
    assert (st.get("delivered"), st.get("bounced"), st.get("deferred")) == (60, 20, 10), st
    assert sink.stop() == 0
    s = sink.stats()
    assert s["messages"] == s["chunked"] == 60, s


def test_connection_dropped_after_bdat(volley, volley_sink):
    """The sink closes the connection instead of answering 10% of BDAT LASTs: the message on it and those
    pipelined behind it are deferred with the connection's reason (never delivered twice, never lost);
    the rest is delivered on new connections."""
    rows = make_recipients(100)
    sink = volley_sink("--drop-percent", "10")
    cid = push_and_run(volley, sink, rows)
    ev = by_status(volley.events())
    assert set(ev) <= {"delivered", "deferred"}, set(ev)
    delivered = [e["to"] for e in ev["delivered"]]
    deferred = ev.get("deferred", [])
    assert len(delivered) + len(deferred) == len(rows)
    assert len(set(delivered)) == len(delivered)
    assert sink.stop() == 0
    s = sink.stats()
    # every drop defers the message it ended and those pipelined behind it
    assert s["dropped"] >= 5 and len(deferred) >= s["dropped"], (s, len(deferred))
    for e in deferred:
        assert e["scope"] == "connection" and e["dsn"] == "4.4.2", e
        assert "closed by server" in e["reply"] or "reset by peer" in e["reply"], e
    st = volley.stats(cid)
    assert (st.get("delivered"), st.get("deferred")) == (len(delivered), len(deferred)), st
    assert volley.r.xpending(volley.key("jobs"), "volley")["pending"] == 0
    assert s["messages"] == s["chunked"] == len(delivered), s


@pytest.fixture(scope="module")
def postfix(test_ca):
    addr = ADDR["mx.pf.test"]
    port = port_free_on([addr])
    cert, key = test_ca.issue(["mx.pf.test"])
    pf = Postfix(addr, port, cert, key, hostname="mx.pf.test", domains=("pf.test",))
    yield pf
    pf.stop()


@pytest.mark.parametrize("chunking", ["yes", "no"])
def test_postfix_over_bdat_and_data(volley, postfix, dnsmasq, chunking):
    """Postfix offers CHUNKING: volley uses BDAT with it (its session summary counts bdat=, no data=), or DATA
    with `chunking = no`; the messages arrive whole, dot lines included, either way."""
    addrs = [f"chunk-{chunking}-{i}@pf.test" for i in range(4)]
    rows = rows_for(addrs)
    volley.write_conf(preset=ENGINE, dns=dnsmasq.conf, mx_port=postfix.port, chunking=chunking)
    volley.push_rows(rows, text=DOT_TEXT)
    volley.run_worker(30)
    evs = volley.events_by_to()
    assert all(one_event(evs, a)["status"] == "delivered" for a in addrs), evs
    tokens = {r["token"] for r in rows}
    deadline = time.monotonic() + 15
    while True:  # Postfix delivers to its mailbox a moment after it answered
        mine = [m for m in postfix.messages() if any(t in str(m["Subject"]) for t in tokens)]
        if len(mine) >= len(addrs) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(mine) == len(addrs), postfix.log_text()[-2000:]
    for m in mine:
        body = message_text(m).replace("\r\n", "\n")
        assert "\n.a line that starts with a dot\n..and one with two\n.\n" in body, repr(body)
    # "disconnect from ... mail=4 rcpt=4 bdat=4 quit=1": Postfix counts each command of the session
    summaries = [ln for ln in postfix.log_text().splitlines() if "disconnect from" in ln and " mail=" in ln]
    last = summaries[-1]
    if chunking == "yes":
        assert " bdat=" in last and " data=" not in last, last
    else:
        assert " data=" in last and " bdat=" not in last, last
