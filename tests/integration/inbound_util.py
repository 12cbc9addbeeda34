"""`volley inbound` for the feedback tests, and the reports the tests send it.

  feedback_conf(volley, inbound_port, http_port, **inbound)  -> the feedback= / inbound= sections (writes the secret)
  Inbound(volley)            starts `volley inbound -c volley.conf`, waits for its SMTP port; .stop(), .log()
  smtp_session(port)         smtplib.SMTP on 127.0.0.1 after EHLO
  verp_of(received)          the tag of a message volley sent (from its envelope sender)
  yahoo_arf(...), jmrp_arf(...)  complaint reports shaped as those providers send them (RFC 5965)
  unmatched(volley)          entries of <p>:inbound:unmatched
"""

import secrets
import smtplib
import subprocess

from volley_itest import binary, stop_process, wait_port

DOMAIN = "bounce.test"
SECRET = "itest-feedback-secret-" + "x" * 10


def feedback_conf(volley, inbound_port, http_port=None, unsub_base="https://unsub.test", **inbound):
    """{"feedback": ..., "inbound": ...} for Volley.write_conf; the secret file goes in the volley dir."""
    sf = volley.dir / "feedback.secret"
    sf.write_text(SECRET + "\n")
    sf.chmod(0o600)
    ib = {"listen": f"127.0.0.1:{inbound_port}", "timeout_ms": 3000}
    if http_port:
        ib["http_listen"] = f"127.0.0.1:{http_port}"
    ib.update(inbound)
    return {"feedback": {"domain": DOMAIN, "secret_file": sf, "unsubscribe_base": unsub_base}, "inbound": ib}


class Inbound:
    def __init__(self, volley, port):
        self.port = port
        self.logpath = volley.dir / "inbound.log"
        with open(self.logpath, "wb") as f:
            self.proc = subprocess.Popen([str(binary("volley")), "inbound", "-c", str(volley.conf)], stdout=f,
                                         stderr=subprocess.STDOUT, cwd=volley.dir)
        if not wait_port(port, timeout=10):
            self.stop()
            raise RuntimeError(f"volley inbound did not listen on {port}: {self.log()}")

    def log(self):
        return self.logpath.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        return stop_process(self.proc)


def smtp_session(port, helo="reporter.test"):
    s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    s.ehlo(helo)
    return s


def verp_of(received):
    """The VERP tag of a message volley sent: the part of the envelope sender between '+' and '@'."""
    local, _, dom = received.mail_from.rpartition("@")
    assert dom == DOMAIN, received.mail_from
    return local.rpartition("+")[2]


def yahoo_arf(rcpt, returned, verp=None):
    """An ARF report as Yahoo's CFL sends it: Original-Mail-From with the return path when known, the whole
    returned message as message/rfc822."""
    b = "part1_" + secrets.token_hex(6)
    omf = f"Original-Mail-From: <{verp}>\r\n" if verp else ""
    return (f"From: feedback@arf.mail.yahoo.test\r\nTo: fbl@{DOMAIN}\r\nSubject: FW: complaint\r\n"
            "MIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=feedback-report;\r\n\tboundary=\"{b}\"\r\n\r\n"
            f"--{b}\r\nContent-Type: text/plain; charset=\"US-ASCII\"\r\n\r\n"
            "This is an email abuse report for an email message received from IP 127.0.0.1.\r\n\r\n"
            f"--{b}\r\nContent-Type: message/feedback-report\r\n\r\n"
            "Feedback-Type: abuse\r\nUser-Agent: Yahoo!-Mail-Feedback/2.0\r\nVersion: 0.1\r\n"
            f"{omf}Original-Rcpt-To: <{rcpt}>\r\nArrival-Date: Thu, 8 Mar 2025 14:00:00 -0400\r\n"
            "Reported-Domain: sender.test\r\nSource-IP: 127.0.0.1\r\n\r\n"
            f"--{b}\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
            f"{returned}\r\n--{b}--\r\n")


def jmrp_arf(headers_only):
    """A Microsoft JMRP report: no Original-Rcpt-To, the returned message's headers only (text/rfc822-headers),
    the envelope (and so the VERP address) gone."""
    b = "----=_NextPart_" + secrets.token_hex(6)
    return (f"From: staff@hotmail.test\r\nTo: fbl@{DOMAIN}\r\nSubject: complaint about message from 127.0.0.1\r\n"
            "MIME-Version: 1.0\r\n"
            f"Content-Type: multipart/report; report-type=\"feedback-report\"; boundary=\"{b}\"\r\n\r\n"
            f"--{b}\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
            f"--{b}\r\nContent-Type: message/feedback-report\r\n\r\n"
            "Feedback-Type: abuse\r\nUser-Agent: Microsoft JMRP\r\nVersion: 1\r\nSource-IP: 127.0.0.1\r\n\r\n"
            f"--{b}\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers_only}\r\n--{b}--\r\n")


def unmatched(volley):
    return [dict(f) for _id, f in volley.r.xrange(volley.key("inbound", "unmatched"), "-", "+")]
