"""The harness itself: the receivers and Redis the end-to-end tests rely on
behave as the tests assume (checked with Python's own smtplib, not volley).
If these fail, every other integration result is meaningless."""

import smtplib
import ssl

import pytest


def _send(port, rcpt, starttls=False):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        if starttls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s.starttls(context=ctx)
            s.ehlo("client.test")
        return s.sendmail("a@sender.test", [rcpt], b"Subject: hi\r\nTo: %s\r\n\r\nbody\r\n" % rcpt.encode())


def test_redis_fixture_is_a_real_server(redis_server):
    r = redis_server.client
    r.xadd("volley:jobs", {"to": "a@example.test"})
    assert r.xlen("volley:jobs") == 1
    assert r.info("server")["tcp_port"] == redis_server.port


def test_receiver_stores_messages_and_applies_rules(smtp_receiver):
    rx = smtp_receiver(reject=["bad*@example.test"], defer=["slow*@example.test"])
    assert _send(rx.port, "ok@example.test") == {}
    with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
        _send(rx.port, "bad1@example.test")
    assert e.value.recipients["bad1@example.test"][0] == 550
    assert b"5.1.1" in e.value.recipients["bad1@example.test"][1]
    with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
        _send(rx.port, "slow1@example.test")
    assert e.value.recipients["slow1@example.test"][0] == 450
    msgs = rx.snapshot()
    assert len(msgs) == 1 and msgs[0].rcpt_tos == ["ok@example.test"] and not msgs[0].tls
    assert msgs[0].msg["Subject"] == "hi"


def test_receiver_starttls_required(smtp_receiver):
    rx = smtp_receiver(tls=True, require_tls=True)
    with pytest.raises(smtplib.SMTPException):
        _send(rx.port, "plain@example.test")  # refused without STARTTLS
    _send(rx.port, "tls@example.test", starttls=True)
    msgs = rx.snapshot()
    assert [m.rcpt_tos for m in msgs] == [["tls@example.test"]]
    assert msgs[0].tls


def test_volley_sink_receives_into_maildir(volley_sink):
    sink = volley_sink()
    assert sink.listening.startswith("listening")
    _send(sink.port, "x@example.test")
    assert sink.wait_count(1)
    assert sink.messages()[0]["Subject"] == "hi"
    assert sink.stop() == 0, "volley-sink must exit 0 on SIGTERM"
    st = sink.stats()
    assert st is not None and st["messages"] == 1 and st["connections"] >= 1


def test_volley_sink_starttls(volley_sink):
    sink = volley_sink(tls=True)
    _send(sink.port, "x@example.test", starttls=True)
    assert sink.wait_count(1)
    assert sink.stop() == 0
    assert sink.stats()["tls_connections"] >= 1
