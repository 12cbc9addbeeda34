"""Opportunistic TLS falls back to plain text when the handshake fails, and
remembers the host as broken; `required` and `[tls] policy.*` do not.

The receiving server here offers STARTTLS, answers 220, and then speaks
garbage instead of TLS: the handshake fails. In opportunistic mode volley
reconnects without STARTTLS and delivers; with a per-domain policy of
`required` the same server gets nothing and the message is deferred."""

import socketserver
import threading

import pytest

from volley_itest import make_recipients


class BrokenTlsHandler(socketserver.StreamRequestHandler):
    """A minimal SMTP server whose STARTTLS is broken; otherwise it accepts mail."""

    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        srv = self.server
        self.reply("220 broken-tls.test ESMTP")
        in_data = False
        body = []
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    with srv.lock:
                        srv.delivered.append(b"".join(body))
                    body = []
                    self.reply("250 2.0.0 ok")
                else:
                    body.append(line)
                continue
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO"):
                self.wfile.write(b"250-broken-tls.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
            elif cmd == b"STARTTLS":
                with srv.lock:
                    srv.starttls += 1
                self.reply("220 2.0.0 go ahead")
                self.wfile.write(b"this is not a TLS record\r\n" * 4)
                return
            elif cmd.startswith(b"MAIL") or cmd.startswith(b"RCPT") or cmd.startswith(b"RSET"):
                self.reply("250 2.1.0 ok")
            elif cmd == b"DATA":
                self.reply("354 go on")
                in_data = True
            elif cmd == b"QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 5.5.2 no")


@pytest.fixture
def broken_tls_server():
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), BrokenTlsHandler)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.delivered = []
    srv.starttls = 0
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_opportunistic_falls_back_to_plain_text(volley, broken_tls_server):
    hp = f"127.0.0.1:{broken_tls_server.server_address[1]}"
    volley.write_conf(hp, tls="opportunistic", threads=1, connections=1)
    rows = make_recipients(5, domains=("example.test",))
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
    run = volley.run_worker(timeout=40)
    assert len(broken_tls_server.delivered) == 5, run.tail()
    assert volley.stats(cid).get("delivered") == 5
    # one failed handshake, then the host is remembered as broken: no STARTTLS on the reconnects
    assert broken_tls_server.starttls == 1, broken_tls_server.starttls
    assert "using plain text to this host" in run.log
    assert all(e.get("tls", "") == "" for e in volley.events())


def test_policy_required_for_a_domain_defers_instead(volley, broken_tls_server):
    hp = f"127.0.0.1:{broken_tls_server.server_address[1]}"
    volley.write_conf(hp, tls={"mode": "opportunistic", "policy.secure.example.test": "required"}, threads=1,
                      connections=1, bad_host_ms=60000)
    rows = make_recipients(3, domains=("secure.example.test",))
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
    volley.run_worker(timeout=40)
    assert broken_tls_server.delivered == [], "required TLS must never fall back to plain text"
    st = volley.stats(cid)
    assert st.get("deferred") == 3 and not st.get("delivered"), st
    for e in volley.events():
        # the handshake fails on the garbage, or the server's close is seen first: either way no plain text
        assert e["status"] == "deferred" and ("TLS" in e["reply"] or "closed" in e["reply"]), e
