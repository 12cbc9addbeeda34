"""Rendered messages are standards-clean: a matrix of campaigns parsed back by Python's email package.

Each case renders one message with build/tools/tpl-render and checks what a recipient's mail client would see:
no parser defects anywhere, the decoded parts equal the expected text exactly (line breaks are CRLF on the wire,
so the expectation is compared in that form), Subject and the From display name decode to the expected
Unicode, and the wire format keeps the limits (CRLF only, no line over 998 octets, QP lines <= 76, header
lines <= 78 where a break is possible).
"""

import email
import email.policy
import re

import pytest

POLISH = "Zażółć gęślą jaźń. Łódź, Kraków i Gdańsk czekają — ŻÓŁW!"
CJK = "你好，世界。こんにちは、元気ですか？안녕하세요 반갑습니다"
LONG_LINE = "x" * 1200 + " ąę " + "y" * 1300  # a source line far over 998 octets
DOT_TEXT = ".starts with a dot\n..two dots\n.\nFrom the desk of\nend"

BASE_FROM = '"Shop Name" <news@shop.example>'


def crlf(s):
    return s.replace("\n", "\r\n")


def case(cid, fields, vars, subject=None, display="Shop Name", text=None, html=None):
    f = {"from": BASE_FROM}
    f.update(fields)
    return pytest.param(f, vars, subject, display, text, html, id=cid)


CASES = [
    case("ascii-both", {"subject": "Hello {{name}}", "text": "Hi {{name}},\nsee you.\n",
                        "html": "<p>Hi {{name}}</p>\n"},
         {"name": "Ann"}, subject="Hello Ann", text="Hi Ann,\nsee you.\n", html="<p>Hi Ann</p>\n"),
    case("polish-subject-text", {"subject": "Cześć {{name}}! " + POLISH, "text": "{{name}}: " + POLISH},
         {"name": "Łucja"}, subject="Cześć Łucja! " + POLISH, text="Łucja: " + POLISH),
    case("cjk-everything", {"from": '"{{shop}}" <news@shop.example>', "subject": CJK + " {{name}}",
                            "text": CJK + "\n" + CJK * 5 + "\n", "html": "<p>" + CJK + "{{name}}</p>"},
         {"name": "王小明", "shop": "東京ショップ"}, subject=CJK + " 王小明", display="東京ショップ",
         text=CJK + "\n" + CJK * 5 + "\n", html="<p>" + CJK + "王小明</p>"),
    case("utf8-display-name", {"from": "Sklep Żółw <news@shop.example>", "subject": "ok", "text": "t"},
         {}, subject="ok", display="Sklep Żółw", text="t"),
    case("ascii-specials-display-name", {"from": '"Shop \\"Best\\", Inc." <news@shop.example>',
                                         "subject": "ok", "text": "t"},
         {}, subject="ok", display='Shop "Best", Inc.', text="t"),
    case("bare-from-address", {"from": "news@shop.example", "subject": "ok", "html": "<b>x</b>"},
         {}, subject="ok", display="", html="<b>x</b>"),
    case("dot-and-from-lines", {"subject": "dots", "text": DOT_TEXT, "html": "<pre>\n" + DOT_TEXT + "\n</pre>"},
         {}, subject="dots", text=DOT_TEXT, html="<pre>\n" + DOT_TEXT + "\n</pre>"),
    case("long-source-lines", {"subject": "long", "text": "{{a}}\n" + LONG_LINE + "\n", "html": LONG_LINE},
         {"a": LONG_LINE}, subject="long", text=LONG_LINE + "\n" + LONG_LINE + "\n", html=LONG_LINE),
    case("html-escaping", {"subject": "Deal: {{deal}}", "text": "Deal: {{deal}}",
                           "html": '<a title="{{deal}}">{{deal}}</a> raw:{{{deal}}} amp:{{& deal}}'},
         {"deal": "<b>\"50%\" & 'more'</b>"}, subject="Deal: <b>\"50%\" & 'more'</b>",
         text="Deal: <b>\"50%\" & 'more'</b>",
         html='<a title="&lt;b&gt;&quot;50%&quot; &amp; &#39;more&#39;&lt;/b&gt;">'
              "&lt;b&gt;&quot;50%&quot; &amp; &#39;more&#39;&lt;/b&gt;</a> raw:<b>\"50%\" & 'more'</b>"
              " amp:<b>\"50%\" & 'more'</b>"),
    case("empty-and-missing-vars",
         {"subject": "Hi {{name}}{{^name}}there{{/name}}{{missing}}",
          "text": "A{{empty}}B{{#empty}}never{{/empty}}{{^missing}}C{{/missing}}{{missing}}\n",
          "html": "<p>{{empty}}{{missing}}</p>"},
         {"empty": "", "name": ""}, subject="Hi there", text="ABC\n", html="<p></p>"),
    case("defaults-and-override",
         {"subject": "For {{name}} in {{city}}", "text": "{{name}}/{{city}}", "default.name": "friend",
          "default.city": "Warszawa"},
         {"city": "Kraków"}, subject="For friend in Kraków", text="friend/Kraków"),
    case("text-only-trailing-space-tab", {"subject": "ws", "text": "trailing space \nand tab\t\n end  "},
         {}, subject="ws", text="trailing space \nand tab\t\n end  "),
    case("html-only-utf8", {"subject": POLISH, "html": "<h1>{{t}}</h1>"}, {"t": POLISH},
         subject=POLISH, html="<h1>" + POLISH + "</h1>"),
    case("long-ascii-subject", {"subject": "word " * 60 + "{{n}}", "text": "t"}, {"n": "end"},
         subject="word " * 60 + "end", text="t"),
    case("subject-looks-encoded", {"subject": "=?utf-8?B?Zm9v?= is literal", "text": "t"}, {},
         subject="=?utf-8?B?Zm9v?= is literal", text="t"),
    case("long-unbreakable-subject", {"subject": "{{w}}", "text": "t"}, {"w": "z" * 1500},
         subject="z" * 1500, text="t"),
    case("all-headers", {"subject": "S", "text": "t", "reply_to": '"Help Desk" <help@shop.example>',
                         "list_unsubscribe": "https://shop.example/u/{{token}}",
                         "list_unsubscribe_mailto": "unsub+{{token}}@shop.example",
                         "feedback_id": "{{camp}}:shop:news", "header.X-Campaign": "spring {{camp}}",
                         "header.X-Note": "Zażółć", "created_ms": "1700000000000"},
         {"token": "abc123", "camp": "c42"}, subject="S", text="t"),
]


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def check_wire(raw):
    assert b"\0" not in raw
    assert re.search(rb"(?<!\r)\n", raw) is None, "bare LF on the wire"
    assert re.search(rb"\r(?!\n)", raw) is None, "bare CR on the wire"
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998
    for line in head.split(b"\r\n"):
        # only an unbreakable token may push a header line past 78
        if len(line) > 78:
            assert b" " not in line.strip()[line.index(b":") + 2:] or line.startswith(b"List-Unsubscribe"), line
    in_qp = False
    for line in body.split(b"\r\n"):
        if line.lower().startswith(b"content-transfer-encoding: quoted-printable"):
            in_qp = True
        elif line.startswith(b"--=_"):
            in_qp = False
        elif in_qp:
            assert len(line) <= 76, line
            assert not line.endswith((b" ", b"\t")), line
            assert all(b < 0x80 for b in line)


@pytest.mark.parametrize("fields,vars,subject,display,text,html", CASES)
def test_matrix(render_msg, fields, vars, subject, display, text, html):
    raw = render_msg(fields, vars)[0]
    check_wire(raw)
    msg = parse(raw)
    assert msg.defects == []
    for part in msg.walk():
        assert part.defects == [], (part.get_content_type(), part.defects)
        for name, value in part.items():
            assert getattr(value, "defects", ()) == (), (name, value.defects)
    if subject is not None:
        assert str(msg["subject"]) == subject
    assert len(msg["from"].addresses) == 1
    assert msg["from"].addresses[0].display_name == display
    assert msg["from"].addresses[0].addr_spec == "news@shop.example"
    assert str(msg["to"]) == "rcpt@example.net"
    assert msg["date"].datetime.timestamp() == 1700000000
    assert re.fullmatch(r"<1700000000000-0\.[0-9a-f]{32}@shop\.example>", str(msg["message-id"]))
    assert str(msg["mime-version"]) == "1.0"
    for h in ("From", "To", "Subject", "Date", "Message-ID"):
        assert len(msg.get_all(h, [])) <= 1, h
    if text is not None and html is not None:
        assert msg.get_content_type() == "multipart/alternative"
        parts = list(msg.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        assert parts[0].get_content() == crlf(text)
        assert parts[1].get_content() == crlf(html)
    else:
        want_type, want = ("text/plain", text) if text is not None else ("text/html", html)
        assert msg.get_content_type() == want_type
        assert msg.get_content_charset() == "utf-8"
        assert msg["content-transfer-encoding"] == "quoted-printable"
        assert msg.get_content() == crlf(want)


def test_all_headers_values(render_msg):
    fields = dict(CASES[-1].values[0])
    raw = render_msg(fields, CASES[-1].values[1])[0]
    msg = parse(raw)
    assert msg["reply-to"].addresses[0].display_name == "Help Desk"
    assert msg["reply-to"].addresses[0].addr_spec == "help@shop.example"
    assert str(msg["list-unsubscribe"]) == "<https://shop.example/u/abc123>, <mailto:unsub+abc123@shop.example>"
    assert str(msg["list-unsubscribe-post"]) == "List-Unsubscribe=One-Click"
    assert str(msg["feedback-id"]) == "c42:shop:news"
    assert str(msg["x-campaign"]) == "spring c42"
    assert str(msg["x-note"]) == "Zażółć"
    assert "created_ms" not in raw.decode().lower()
    assert "created_ms" not in msg


def test_multipart_boundary_unique_and_absent_from_content(render_msg):
    fields = {"from": BASE_FROM, "subject": "b", "text": "{{t}}", "html": "{{t}}"}
    # content that tries to contain a boundary-looking line
    msgs = render_msg(fields, {"t": "--=_vly0000\n--=_vly0000--\n"}, count=5)
    bounds = {parse(m).get_boundary() for m in msgs}
    assert len(bounds) == 5
    for m in msgs:
        msg = parse(m)
        assert [p.get_content() for p in msg.iter_parts()] == [crlf("--=_vly0000\n--=_vly0000--\n")] * 2
