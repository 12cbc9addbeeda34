"""
NAME
    test_dkim_verify - volley's DKIM signatures verify with an independent verifier

DESCRIPTION
    Generates an RSA-2048 and an Ed25519 key with `openssl genpkey`, writes a
    volley.conf with a [dkim] section, signs a matrix of messages with
    build/tools/dkim-sign (templates/dkim.c underneath) and verifies every
    signature with python3-dkim (dkimpy), whose DNS lookups are answered from
    the generated public keys. Tampered messages must fail, so a verifier
    that accepted anything would be caught.
"""
import subprocess

import dkim
import pytest

from dkim_util import make_dkim_keys, signatures, verify_each
from volley_itest import binary, conf_text

DOMAIN = "example.com"


def crlf(text):
    """Message text written with \\n, returned as CRLF bytes (UTF-8)."""
    return text.replace("\n", "\r\n").encode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """The keys, the TXT records a user publishes (docs/dkim.md) and a config per algorithm for dkim-sign."""
    d = tmp_path_factory.mktemp("dkim")
    made = make_dkim_keys(d, DOMAIN, rsa_sel="rsa1", ed_sel="ed1")
    rsa, ed = made["dkim"]["key"]
    confs = {}
    for name, lines in {"rsa": [rsa], "ed25519": [ed], "dual": [rsa, ed]}.items():
        confs[name] = d / f"{name}.conf"
        confs[name].write_text(conf_text("redis://127.0.0.1:6379", dkim={"key": lines}))
    return {"confs": confs, "records": made["records"]}


def sign_run(keys, conf, msg):
    """build/tools/dkim-sign -c <conf of keys> with msg on stdin."""
    return subprocess.run([binary("tools/dkim-sign"), "-c", keys["confs"][conf]], input=msg, capture_output=True,
                          timeout=20)


def sign(keys, conf, msg):
    r = sign_run(keys, conf, msg)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout


def verify_all(keys, signed):
    """python3-dkim's verdict on every DKIM-Signature of signed."""
    return verify_each(signed, keys["records"])


MULTIPART = """From: Shop <news@example.com>
To: alice@example.org
Subject: Multipart
Date: Tue, 14 Nov 2023 10:00:00 +0000
Message-ID: <1700000000000-0@example.com>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="=_b1"

--=_b1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Hello Alice,  prices   from 5 \u20ac
.
..leading dots
--=_b1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p>Hello =E2=82=AC</p>\t
--=_b1--
"""

MESSAGES = {
    "ascii": "From: news@example.com\nTo: bob@example.org\nSubject: Hello\n\nHello Bob.\n",
    "utf8_headers": (
        "From: =?UTF-8?B?w4lsw6huZQ==?= <news@example.com>\n"
        "To: \"J\u00fcrgen\" <j@example.org>\n"
        "Subject: Gr\u00fc\u00dfe \u2014 caf\u00e9 \U0001F600\n"
        "Subject-Ignored: x\n\n"
        "Caf\u00e9 cr\u00e8me \u2014 8bit body\n"
    ),
    "folded_headers": (
        "From: \"A very long display name, with a comma\"\n <news@example.com>\n"
        "To: alice@example.org,\n\tbob@example.org,\n   carol@example.org\n"
        "Subject: a subject that\n  goes on\n\t and on  \n"
        "Content-Type: text/plain;\n charset=us-ascii\n\n"
        "body\n"
    ),
    "multipart": MULTIPART,
    "trailing_blank_lines": "From: news@example.com\nSubject: t\n\nlast line\n\n\n\n   \n\t\n",
    "trailing_spaces": "From: news@example.com\nSubject: t  \n\nline with spaces   \nand\ttabs\t\t\n  lead  \n",
    "dot_lines": "From: news@example.com\nSubject: dots\n\n.\n..\n.leading\n. \nend\n.\n",
    "empty_body": "From: news@example.com\nSubject: empty\n\n",
    "no_final_crlf": "From: news@example.com\nSubject: nf\n\nno newline at the end",
    "all_signed_headers": (
        "Return-Path: <bounce@example.com>\n"
        "From: Shop <news@example.com>\n"
        "Reply-To: help@example.com\n"
        "To: alice@example.org\n"
        "Subject: everything\n"
        "Date: Tue, 14 Nov 2023 10:00:00 +0000\n"
        "Message-ID: <x@example.com>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "List-Unsubscribe: <https://example.com/u/abc>, <mailto:u@example.com?subject=abc>\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\n"
        "Feedback-ID: camp1:shop:volley\n"
        "X-Mailer: volley\n\n"
        "hi\n"
    ),
    "repeated_headers_bottom_up": (
        "From: news@example.com\nTo: first@example.org\nSubject: two To\nTo: second@example.org\n\nx\n"
    ),
    "odd_case_names_and_from_forms": (
        "fROM: \"Quoted \\\"at@sign\\\" name\" (a comment) <News@EXAMPLE.COM> (trailing)\n"
        "SUBJECT:no space after colon\n\nbody\n"
    ),
    "large_body": "From: news@example.com\nSubject: big\n\n"
    + "".join(f"line {i}  with \t runs   of blanks {'x' * (i % 97)}   \n" for i in range(3000)),
}


@pytest.mark.parametrize("algo", ["rsa", "ed25519"])
@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_signature_verifies(keys, algo, name):
    msg = crlf(MESSAGES[name])
    signed = sign(keys, algo, msg)
    assert signed.endswith(msg), "the message itself must be passed through unchanged"
    sigs = signatures(signed)
    assert len(sigs) == 1
    assert sigs[0]["a"] == ("rsa-sha256" if algo == "rsa" else "ed25519-sha256")
    assert sigs[0]["c"] == "relaxed/relaxed" and "l" not in sigs[0] and sigs[0]["d"] == DOMAIN
    assert verify_all(keys, signed) == [True]
    # header lines of the signature stay short (b= is folded)
    sig_head = signed[: len(signed) - len(msg)]
    assert max(len(line) for line in sig_head.split(b"\r\n")) <= 78


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_dual_signed_both_verify(keys, name):
    signed = sign(keys, "dual", crlf(MESSAGES[name]))
    sigs = signatures(signed)
    assert [s["a"] for s in sigs] == ["rsa-sha256", "ed25519-sha256"]
    assert [s["s"] for s in sigs] == ["rsa1", "ed1"]
    assert verify_all(keys, signed) == [True, True]
    # dkimpy's one-call API checks the first signature
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: keys["records"].get(name))


def test_signed_header_list(keys):
    signed = sign(keys, "rsa", crlf(MESSAGES["all_signed_headers"]))
    h = signatures(signed)[0]["h"].split(":")
    assert h == ["from", "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
                 "reply-to", "list-unsubscribe", "list-unsubscribe-post", "feedback-id"]
    signed = sign(keys, "rsa", crlf(MESSAGES["repeated_headers_bottom_up"]))
    assert signatures(signed)[0]["h"].split(":") == ["from", "from", "to", "to", "subject"]


@pytest.mark.parametrize("algo", ["rsa", "ed25519", "dual"])
@pytest.mark.parametrize("tamper", ["body_byte", "subject", "extra_from_top", "extra_from_bottom",
                                    "list_unsubscribe", "second_to"])
def test_tampered_message_fails(keys, algo, tamper):
    signed = sign(keys, algo, crlf(MESSAGES["all_signed_headers"]))
    nsig = len(signatures(signed))
    assert verify_all(keys, signed) == [True] * nsig
    head, body = signed.split(b"\r\n\r\n", 1)
    if tamper == "body_byte":
        bad = head + b"\r\n\r\n" + body.replace(b"hi", b"hI")
    elif tamper == "subject":
        bad = signed.replace(b"Subject: everything", b"Subject: everythinG")
    elif tamper == "extra_from_top":
        bad = b"From: evil@attacker.example\r\n" + signed
    elif tamper == "extra_from_bottom":
        bad = head + b"\r\nFrom: evil@attacker.example\r\n\r\n" + body
    elif tamper == "list_unsubscribe":
        bad = signed.replace(b"https://example.com/u/abc", b"https://example.com/u/abd")
    else:
        bad = head + b"\r\nTo: eve@attacker.example\r\n\r\n" + body
    assert bad != signed
    assert verify_all(keys, bad) == [False] * nsig


def test_unsigned_header_and_whitespace_changes_still_verify(keys):
    """Relaxed canonicalisation is meant to survive what relays do: added trace
    headers, refolding, trailing blanks. Guards against over-strict signing."""
    signed = sign(keys, "dual", crlf(MESSAGES["all_signed_headers"]))
    relayed = b"Received: from relay by mx; Tue, 14 Nov 2023 10:00:01 +0000\r\n" + signed
    relayed = relayed.replace(b"Subject: everything", b"Subject:   everything  ")
    relayed = relayed.replace(b"\r\n\r\nhi\r\n", b"\r\n\r\nhi   \r\n\r\n\r\n")
    assert verify_all(keys, relayed) == [True, True]


@pytest.mark.parametrize("frm", ["news@other.example", "news@sub.example.com", "Example <news@example.com.evil>"])
def test_no_key_for_domain_adds_nothing(keys, frm):
    msg = crlf(f"From: {frm}\nSubject: s\n\nbody\n")
    assert sign(keys, "dual", msg) == msg


@pytest.mark.parametrize("head", ["Subject: no from\n", "From: a@example.com\nFrom: b@example.com\n",
                                  "From: a@example.com, b@example.com\n"])
def test_unsignable_from_is_refused(keys, head):
    r = sign_run(keys, "dual", crlf(head + "\nbody\n"))
    assert r.returncode == 1 and b"From" in r.stderr and r.stdout == b""


@pytest.mark.parametrize("fields,vars", [
    ({"from": "\"Shop \\\"Best\\\", Inc.\" <news@example.com>", "subject": "Cze\u015b\u0107 {{name}} \u2014 " + "x" * 90,
      "text": "Hi {{name}},  \n.\n..dots\n\n\n", "html": "<p>Hi {{name}}</p>\t \n"}, {"name": "\u0141ucja"}),
    ({"from": "news@example.com", "subject": "plain", "text": "t"}, {}),
])
def test_rendered_message_verifies(keys, render_msg, fields, vars):
    """End to end with the real renderer (templates/message.c via tpl-render):
    what volley renders, volley signs, and an independent verifier accepts."""
    msg = render_msg(fields, vars)[0]
    signed = sign(keys, "dual", msg)
    assert signed.endswith(msg)
    assert verify_all(keys, signed) == [True, True]
