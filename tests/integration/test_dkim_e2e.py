"""
NAME
    test_dkim_e2e - templates and dual DKIM signatures, end to end through a real SMTP delivery

DESCRIPTION
    An RSA-2048 and an Ed25519 key are made with `openssl genpkey` at test time and configured in
    volley.conf's [dkim] section for the From domain shop.example (dual signing). A matrix of campaigns
    (ASCII and UTF-8 subjects and display names, Polish and CJK text, lines starting with '.', source
    lines over 998 octets, HTML escaping of <>&"', empty and missing variables and defaults, text and
    HTML parts together and alone, List-Unsubscribe from a template and from a variable, Feedback-ID,
    extra headers) is pushed with `volley push`; one `volley worker --exit-when-idle` delivers them to
    aiosmtpd on loopback. For every message received: the wire format is clean, Python's email package
    (policy=default) finds no defect, Subject/From/To and every decoded part equal the expected rendering
    exactly, and python3-dkim verifies both signatures (idx=0 RSA, idx=1 Ed25519) against the TXT
    records a user would publish. A message altered after delivery (one body byte, the Subject, the
    List-Unsubscribe URL) fails both; List-Unsubscribe and List-Unsubscribe-Post are covered by h=.
    The whole delivery runs once per module; the checks are separate tests so a failure names its case.
"""

import datetime
import email
import email.policy
import re

import pytest

from dkim_util import check_no_defects, check_wire, make_dkim_keys, signatures, verify_each

from volley_itest import SmtpReceiver, own_volley

DOMAIN = "shop.example"
BASE_FROM = '"Shop Name" <news@shop.example>'
POLISH = "Zażółć gęślą jaźń. Łódź, Kraków i Gdańsk czekają — ŻÓŁW!"
CJK = "你好，世界。こんにちは、元気ですか？안녕하세요 반갑습니다"
LONG_LINE = "x" * 1200 + " ąę " + "y" * 1300  # a source line far over 998 octets
DOT_TEXT = ".starts with a dot\n..two dots\n.\nFrom the desk of\nend"
DEAL = "<b>\"50%\" & 'more'</b>"
DEAL_HTML = "&lt;b&gt;&quot;50%&quot; &amp; &#39;more&#39;&lt;/b&gt;"


def crlf(s):
    return s.replace("\n", "\r\n")


def case(cid, rows, fields=None, text=None, html=None, headers=None, defaults=None, columns=None,
         subject=None, display="Shop Name", want_text=None, want_html=None, want_headers=None, nsig=2,
         signed_headers=()):
    """One campaign of the matrix. rows: the variables of each recipient (a recipient address is added);
    subject/display/want_*: constants or functions of the row; want_headers: {name: str or fn(row)};
    signed_headers: names that must appear in h= (beyond the ones every message has)."""
    f = {"id": f"e2e-{cid}", "from": BASE_FROM}
    f.update(fields or {})
    return {"cid": f"e2e-{cid}", "name": cid, "fields": f, "text": text, "html": html, "headers": headers,
            "defaults": defaults, "rows": rows, "columns": columns, "subject": subject, "display": display,
            "want_text": want_text, "want_html": want_html, "want_headers": want_headers or {}, "nsig": nsig,
            "signed_headers": signed_headers}


CASES = [
    case("ascii-both", [{"name": "Ann"}, {"name": "Bob"}],
         fields={"subject": "Hello {{name}}"}, text="Hi {{name}},\nsee you.\n", html="<p>Hi {{name}}</p>\n",
         subject=lambda r: f"Hello {r['name']}", want_text=lambda r: f"Hi {r['name']},\nsee you.\n",
         want_html=lambda r: f"<p>Hi {r['name']}</p>\n"),
    case("polish-utf8", [{"name": "Łucja"}, {"name": "Ann"}],
         fields={"from": "Sklep Żółw <news@shop.example>", "subject": "Cześć {{name}}! " + POLISH},
         text="{{name}}: " + POLISH + "\n", subject=lambda r: f"Cześć {r['name']}! " + POLISH,
         display="Sklep Żółw", want_text=lambda r: f"{r['name']}: {POLISH}\n"),
    case("cjk-everything", [{"name": "王小明", "shop": "東京ショップ"}, {"name": "김민수", "shop": "서울상점"}],
         fields={"from": '"{{shop}}" <news@shop.example>', "subject": CJK + " {{name}}"},
         text=CJK + "\n" + CJK * 5 + "\n", html="<p>" + CJK + "{{name}}</p>",
         subject=lambda r: CJK + " " + r["name"], display=lambda r: r["shop"],
         want_text=CJK + "\n" + CJK * 5 + "\n", want_html=lambda r: "<p>" + CJK + r["name"] + "</p>"),
    case("display-specials", [{}], fields={"from": '"Shop \\"Best\\", Inc." <news@shop.example>', "subject": "ok"},
         text="t", subject="ok", display='Shop "Best", Inc.', want_text="t"),
    case("dot-lines", [{"d": ".hidden\n.\n..x"}], fields={"subject": "dots"},
         text="{{d}}\n" + DOT_TEXT, html="<pre>\n" + DOT_TEXT + "\n</pre>", subject="dots",
         want_text=".hidden\n.\n..x\n" + DOT_TEXT, want_html="<pre>\n" + DOT_TEXT + "\n</pre>"),
    case("long-lines", [{"a": LONG_LINE}], fields={"subject": "long"},
         text="{{a}}\n" + LONG_LINE + "\n", html=LONG_LINE, subject="long",
         want_text=LONG_LINE + "\n" + LONG_LINE + "\n", want_html=LONG_LINE),
    case("html-escaping", [{"deal": DEAL}], fields={"subject": "Deal: {{deal}}"},
         text="Deal: {{deal}}", html='<a title="{{deal}}">{{deal}}</a> raw:{{{deal}}} amp:{{& deal}}',
         subject="Deal: " + DEAL, want_text="Deal: " + DEAL,
         want_html=f'<a title="{DEAL_HTML}">{DEAL_HTML}</a> raw:{DEAL} amp:{DEAL}'),
    # `empty` is set (to "") by every row, so it wins over its default; `who` comes from [defaults];
    # `missing` is set nowhere
    case("empty-and-missing-vars", [{"name": "", "empty": ""}, {"name": "Zoë", "empty": ""}],
         fields={"subject": "Hi {{name}}{{^name}}there{{/name}}{{missing}}"},
         text="A{{empty}}B{{#empty}}never{{/empty}}{{^missing}}C{{/missing}}{{missing}}|{{who}}\n",
         html="<p>{{empty}}{{missing}}</p>", defaults={"who": "friend", "empty": "DEFAULT"},
         subject=lambda r: "Hi " + (r["name"] or "there"), want_text="ABC|friend\n", want_html="<p></p>"),
    case("text-only-whitespace", [{}], fields={"subject": "ws"}, text="trailing space \nand tab\t\n end  ",
         subject="ws", want_text="trailing space \nand tab\t\n end  "),
    case("html-only-polish", [{"t": POLISH}], fields={"subject": POLISH}, html="<h1>{{t}}</h1>",
         subject=POLISH, want_html="<h1>" + POLISH + "</h1>"),
    case("all-headers", [{"name": "Ann", "token": "tokA1", "camp": "c42"},
                         {"name": "Łucja", "token": "tokB2", "camp": "c43"}],
         fields={"subject": "Your order {{token}}", "reply_to": '"Help Desk" <help@shop.example>',
                 "list_unsubscribe": "https://shop.example/u/{{token}}",
                 "list_unsubscribe_mailto": "unsub+{{token}}@shop.example", "feedback_id": "{{camp}}:shop:news"},
         headers={"X-Campaign": "spring {{camp}}", "X-Note": "Zażółć"},
         text="Thanks {{name}}, order {{token}}.\n", html="<p>Thanks {{name}}</p>\n",
         subject=lambda r: f"Your order {r['token']}",
         want_text=lambda r: f"Thanks {r['name']}, order {r['token']}.\n",
         want_html=lambda r: f"<p>Thanks {r['name']}</p>\n",
         want_headers={
             "Reply-To": "Help Desk <help@shop.example>",  # as the email package prints it
             "List-Unsubscribe": lambda r: f"<https://shop.example/u/{r['token']}>, "
                                           f"<mailto:unsub+{r['token']}@shop.example>",
             "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
             "Feedback-ID": lambda r: f"{r['camp']}:shop:news",
             "X-Campaign": lambda r: f"spring {r['camp']}",
             "X-Note": "Zażółć"},
         signed_headers=("reply-to", "list-unsubscribe", "list-unsubscribe-post", "feedback-id")),
    case("unsubscribe-from-variable", [{"unsubscribe_url": "https://shop.example/u/a b<c>", "seg": "s1"}],
         fields={"subject": "u", "list_unsubscribe": "{{unsubscribe_url}}", "feedback_id": "fb:{{seg}}"},
         text="u\n", subject="u", want_text="u\n",
         want_headers={"List-Unsubscribe": "<https://shop.example/u/a%20b%3Cc%3E>",
                       "List-Unsubscribe-Post": "List-Unsubscribe=One-Click", "Feedback-ID": "fb:s1"},
         signed_headers=("list-unsubscribe", "list-unsubscribe-post", "feedback-id")),
    case("long-subjects", [{"n": "end", "w": "z" * 1500}, {"n": "koniec", "w": "ż" * 400}],
         fields={"subject": "word " * 60 + "{{n}} {{w}}"}, text="t",
         subject=lambda r: "word " * 60 + r["n"] + " " + r["w"], want_text="t"),
    # no key for this From domain: sent unsigned, still clean
    case("unsigned-other-domain", [{}], fields={"from": "news@other.example", "subject": "plain"}, text="p",
         subject="plain", display="", want_text="p", nsig=0),
]
CASE_IDS = [c["name"] for c in CASES]
# every signed message has these in h=; From twice (over-signed)
BASE_SIGNED = ["from", "from", "to", "subject", "date", "message-id", "mime-version", "content-type"]


def value(v, row):
    return v(row) if callable(v) else v


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    """Push every campaign of CASES, deliver with one worker run; {case name: [(row, Received)]}."""
    tmp = tmp_path_factory.mktemp("dkim_e2e")
    keys = make_dkim_keys(tmp / "keys", DOMAIN)
    receiver = SmtpReceiver()
    try:
        with own_volley(tmp) as v:
            v.write_conf(receiver.hostport, threads=2, dkim=keys["dkim"])
            rows_of = {}
            for c in CASES:
                rows = [dict(email=f"{c['name']}{i}@example.test", **r) for i, r in enumerate(c["rows"])]
                columns = ["email"] + list(c["rows"][0].keys())
                f = dict(c["fields"])
                ini = v.write_campaign(f"{c['name']}.ini", cid=f.pop("id"), sender=f.pop("from"),
                                       subject=f.pop("subject", None), text=c["text"], html=c["html"],
                                       headers=c["headers"], defaults=c["defaults"], extra=f)
                csvp = v.write_recipients(rows, f"{c['name']}.csv", header=columns)
                assert v.push(ini, csvp) == c["cid"]
                rows_of[c["name"]] = rows
            total = sum(len(r) for r in rows_of.values())
            run = v.run_worker()
            assert receiver.wait_count(total, 5), f"{len(receiver.snapshot())} of {total} messages arrived"
            by_rcpt = {}
            for m in receiver.snapshot():
                assert len(m.rcpt_tos) == 1, m.rcpt_tos
                assert m.rcpt_tos[0] not in by_rcpt, f"{m.rcpt_tos[0]} received twice"
                by_rcpt[m.rcpt_tos[0]] = m
            out = {name: [(r, by_rcpt.get(r["email"])) for r in rows] for name, rows in rows_of.items()}
            yield {"cases": out, "keys": keys, "volley": v, "total": total, "worker_log": run.log}
    finally:
        receiver.stop()


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_message_renders_parses_and_verifies(delivered, c):
    keys = delivered["keys"]
    for row, rec in delivered["cases"][c["name"]]:
        label = f"{c['name']} -> {row['email']}"
        assert rec is not None, f"{label}: no message received"
        raw = rec.data
        check_wire(raw, label)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        check_no_defects(msg, label)

        # headers a recipient sees
        for h in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
            assert len(msg.get_all(h, [])) == 1, f"{label}: {h} x{len(msg.get_all(h, []))}"
        assert str(msg["subject"]) == value(c["subject"], row), label
        frm = msg["from"].addresses
        assert len(frm) == 1 and frm[0].display_name == value(c["display"], row), f"{label}: From {msg['from']!r}"
        assert str(msg["to"]) == row["email"], label
        assert rec.mail_from == frm[0].addr_spec, f"{label}: MAIL FROM {rec.mail_from}"
        when = msg["date"].datetime
        assert abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) < 600, label
        assert re.fullmatch(r"<[^<>@\s]+@" + re.escape(frm[0].domain) + ">", str(msg["message-id"])), label
        for name, want in c["want_headers"].items():
            assert len(msg.get_all(name, [])) == 1, f"{label}: {name} x{len(msg.get_all(name, []))}"
            assert str(msg[name]) == value(want, row), f"{label}: {name}"

        # the parts, decoded, are exactly the rendered text (CRLF line breaks)
        text, html = value(c["want_text"], row), value(c["want_html"], row)
        if text is not None and html is not None:
            assert msg.get_content_type() == "multipart/alternative", label
            parts = list(msg.iter_parts())
            assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"], label
            assert [p.get_content_charset() for p in parts] == ["utf-8", "utf-8"], label
            assert parts[0].get_content() == crlf(text), f"{label}: text part"
            assert parts[1].get_content() == crlf(html), f"{label}: html part"
        else:
            want_type, want = ("text/plain", text) if text is not None else ("text/html", html)
            assert msg.get_content_type() == want_type, label
            assert msg.get_content_charset() == "utf-8", label
            assert msg.get_content() == crlf(want), f"{label}: body"

        # DKIM: RSA then Ed25519, both verify with an independent verifier
        sigs = signatures(raw)
        assert len(sigs) == c["nsig"], f"{label}: {len(sigs)} DKIM-Signature headers"
        if c["nsig"] == 0:
            continue
        assert [s["a"] for s in sigs] == ["rsa-sha256", "ed25519-sha256"], label
        assert [s["s"] for s in sigs] == keys["selectors"], label
        for s in sigs:
            assert s["d"] == DOMAIN and s["c"] == "relaxed/relaxed" and "l" not in s and "x" not in s, (label, s)
            h = s["h"].lower().split(":")
            assert [x for x in h if x in BASE_SIGNED] == BASE_SIGNED, f"{label}: h={s['h']}"
            for name in c["signed_headers"]:
                assert name in h, f"{label}: {name} not covered by h={s['h']}"
        assert verify_each(raw, keys["records"]) == [True, True], f"{label}: DKIM verification"


def test_unsubscribe_headers_are_signed(delivered):
    """RFC 8058 one-click needs both List-Unsubscribe headers under the signature (Gmail, Yahoo)."""
    n = 0
    for name, pairs in delivered["cases"].items():
        for row, rec in pairs:
            msg = email.message_from_bytes(rec.data, policy=email.policy.default)
            if msg["List-Unsubscribe"] is None:
                continue
            n += 1
            for s in signatures(rec.data):
                h = s["h"].lower().split(":")
                assert "list-unsubscribe" in h and "list-unsubscribe-post" in h, f"{name}: h={s['h']}"
    assert n == 3


def _tamper(raw, how):
    head, body = raw.split(b"\r\n\r\n", 1)
    if how == "body_byte":
        i = body.index(b"Thanks")
        return head + b"\r\n\r\n" + body[:i] + b"t" + body[i + 1:]
    if how == "subject":
        return re.sub(rb"(?m)^Subject: Your order ", b"Subject: Your 0rder ", raw, count=1)
    if how == "list_unsubscribe":
        return raw.replace(b"https://shop.example/u/", b"https://evil.example/u/", 1)
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["body_byte", "subject", "list_unsubscribe"])
def test_altered_after_delivery_fails(delivered, how):
    for row, rec in delivered["cases"]["all-headers"]:
        raw = rec.data
        assert verify_each(raw, delivered["keys"]["records"]) == [True, True]
        bad = _tamper(raw, how)
        assert bad != raw and len(signatures(bad)) == 2
        assert verify_each(bad, delivered["keys"]["records"]) == [False, False], f"{how} still verifies"


def test_relay_changes_still_verify(delivered):
    """Control for the tamper test: what relays legitimately do (a Received header on top, blanks at the end)
    keeps both signatures valid, so the failures above are caused by the alteration."""
    row, rec = delivered["cases"]["all-headers"][0]
    relayed = b"Received: from volley.test by mx.receiver.test; Tue, 14 Nov 2023 10:00:01 +0000\r\n" + rec.data
    relayed = relayed.rstrip(b"\r\n") + b"  \r\n\r\n\r\n"
    assert verify_each(relayed, delivered["keys"]["records"]) == [True, True]


def test_every_job_delivered_in_redis(delivered):
    v = delivered["volley"]
    ev = v.events()
    assert len(ev) == delivered["total"]
    bad = [e for e in ev if e.get("status") != "delivered"]
    assert not bad, f"{len(bad)} jobs not delivered, first: {bad[0]}"
    assert v.dead() == []
    for c in CASES:
        assert v.stats(c["cid"]) == {"queued": len(c["rows"]), "delivered": len(c["rows"])}, c["cid"]
