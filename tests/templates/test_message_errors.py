"""What the templates module refuses, and how it says so.

Header injection (a CR or LF arriving from a variable or a default into any header) fails the render with a
reason naming the variable and the header, and appends nothing (tpl-render exits 1 with "BUG" if a failed render
left bytes behind). Compile errors name the field, line and column. Message-IDs never repeat.
"""

import email
import email.policy
import re

import pytest

FROM = '"Shop" <news@shop.example>'


@pytest.mark.parametrize("fields,vars,reason", [
    ({"subject": "Hi {{name}}"}, {"name": "Ann\r\nBcc: victim@example.org"},
     "header injection: CR/LF in variable 'name' used in Subject"),
    ({"subject": "Hi {{name}}"}, {"name": "Ann\nBcc: victim@example.org"},
     "header injection: CR/LF in variable 'name' used in Subject"),
    ({"subject": "Hi {{name}}", "default.name": "a\rb"}, {},
     "header injection: CR/LF in variable 'name' used in Subject"),
    ({"from": '"{{shop}}" <news@shop.example>'}, {"shop": "X\r\nTo: other@example.org"},
     "header injection: CR/LF in variable 'shop' used in From"),
    ({"header.X-Campaign": "{{c}}"}, {"c": "1\r\nX-Evil: 1"},
     "header injection: CR/LF in variable 'c' used in X-Campaign"),
    ({"reply_to": "{{r}}"}, {"r": "a@b.example\r\nBcc: x@y.example"},
     "header injection: CR/LF in variable 'r' used in Reply-To"),
    ({"list_unsubscribe": "https://u.example/{{t}}"}, {"t": "x\r\nBcc: y@z.example"},
     "header injection: CR/LF in variable 't' used in List-Unsubscribe"),
    ({"feedback_id": "{{f}}:x"}, {"f": "\n"}, "header injection: CR/LF in variable 'f' used in Feedback-ID"),
    ({"reply_to": "{{r}}"}, {"r": "not an address"}, "reply_to: invalid Reply-To address"),
    ({"list_unsubscribe": "{{u}}"}, {"u": "http://plain.example/u"}, "needs an https:// URL"),
])
def test_render_refused(render_msg, fields, vars, reason):
    f = {"from": FROM, "subject": "s", "text": "body {{name}}"}
    f.update(fields)
    r = render_msg(f, vars, check=False)
    assert r.returncode == 3, r.stderr
    assert reason in r.stderr.decode()
    assert r.stdout == b""


def test_crlf_in_body_variable_is_fine(render_msg):
    raw = render_msg({"from": FROM, "subject": "s", "text": "A {{x}} B"}, {"x": "line1\r\nline2\nline3"})[0]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content() == "A line1\r\nline2\r\nline3 B"


@pytest.mark.parametrize("to,why", [
    ("no-at-sign.example", "no '@'"),
    ("a@b@c.example", "more than one '@'"),
    ("", "empty address"),
    ("x" * 65 + "@example.org", "local part"),
    ("a@" + "d" * 254, "domain"),
    ("a b@example.org", "invalid character in local part"),
    ("a@exa mple.org", "invalid character in domain"),
    ("a\r\nBcc: x@y@example.org", "CR, LF or NUL"),
    ("ząb@example.org", "non-ASCII"),
])
def test_bad_recipient_refused(render_msg, to, why):
    r = render_msg({"from": FROM, "subject": "s", "text": "t"}, to=to, check=False)
    assert r.returncode == 3
    assert "invalid recipient address" in r.stderr.decode() and why in r.stderr.decode()


@pytest.mark.parametrize("fields,err", [
    ({"subject": "Hello {{name"}, "subject: line 1, column 7: unclosed tag"),
    ({"text": "line one\n  {{#vip}}\nVIP!\n"}, "text: line 2, column 3: unclosed section 'vip'"),
    ({"html": "<p>\nŻółw {{#a}}x{{/b}}</p>"}, "html: line 2, column 13: closing tag 'b' does not match open section 'a'"),
    ({"text": "x {{/a}}"}, "text: line 1, column 3: closing tag 'a' without an open section"),
    ({"text": "x {{> partial}}"}, "text: line 1, column 3: partials are not supported"),
    ({"subject": "a\nb"}, "subject: line 1, column 2: line break or NUL in a header template"),
    ({"from": "news@"}, "from: invalid From address"),
    ({"from": '"X" <{{addr}}@shop.example>'}, "from: the From address must be literal"),
    ({"from": ""}, "from: missing"),
    ({"text": "", "html": ""}, "at least one body part is required"),
    ({"header.Subject": "x"}, "header.Subject: Subject is written by volley"),
    ({"header.message-id": "x"}, "header.message-id: Message-ID is written by volley"),
    ({"header.Bad:Name": "x"}, "header.Bad:Name: not a valid header field name"),
    ({"header.X Y": "x"}, "not a valid header field name"),
    ({"mail_from": "bounce@@x.example"}, "mail_from: invalid address"),
    ({"list_unsubscribe": "mailto:u@shop.example"}, "needs an https:// URL"),
    ({"list_unsubscribe_mailto": "u@shop.example"}, "list_unsubscribe_mailto: needs list_unsubscribe"),
])
def test_compile_errors(render_msg, fields, err):
    f = {"from": FROM, "subject": "s", "text": "t"}
    f.update(fields)
    r = render_msg(f, check=False)
    assert r.returncode == 2, r.stderr
    assert err in r.stderr.decode()


def test_unknown_fields_ignored_and_envelope(render_msg, tpl_render):
    import subprocess
    args = [tpl_render, "message", "f:from=" + FROM, "f:text=t", "f:created_ms=1", "f:updated_ms=2",
            "f:future_option=yes", "f:mail_from=bounces+x@mail.shop.example"]
    r = subprocess.run(args, capture_output=True, timeout=10)
    assert r.returncode == 0
    assert r.stderr.decode().splitlines()[0] == "mail_from=bounces+x@mail.shop.example from_domain=shop.example"
    r = subprocess.run(args[:4], capture_output=True, timeout=10)
    assert r.stderr.decode().splitlines()[0] == "mail_from=news@shop.example from_domain=shop.example"


def test_message_id_unique(render_msg):
    f = {"from": FROM, "subject": "s", "text": "t"}
    ids = []
    for _ in range(2):  # two processes: the per-thread random part differs
        for raw in render_msg(f, count=300):
            ids.append(email.message_from_bytes(raw, policy=email.policy.default)["message-id"])
    assert len(ids) == 600 and len(set(ids)) == 600
    for i in ids:
        assert re.fullmatch(r"<1700000000000-0\.[0-9a-f]{32}@shop\.example>", i)
