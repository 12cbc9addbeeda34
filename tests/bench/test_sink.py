"""
NAME
    test_sink - volley-sink behaves like a real receiving MTA, rules included

DESCRIPTION
    Starts build/volley-sink (VOLLEY_BUILD, default "build") on 127.0.0.1 with
    port 0 (the sink prints the real port) and talks to it with smtplib and
    raw sockets: plain and STARTTLS delivery, pipelining, dot-unstuffing
    against the maildir copy, every rule, SIZE, the stats and log files,
    garbage and a 10 MB line, and SIGTERM. Every process started is stopped.
"""
import json
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from volley_itest import binary


class Sink:
    """One running volley-sink; stop() sends SIGTERM and returns (rc, stdout)."""

    def __init__(self, tmp_path, *args, stats=True):
        self.stats_path = str(tmp_path / "stats.json") if stats else None
        cmd = [str(binary("volley-sink")), "--listen", "127.0.0.1:0"] + list(args)
        if stats:
            cmd += ["--stats-file", self.stats_path]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening 127.0.0.1:"), line + self.proc.stderr.read()
        self.port = int(line.strip().rsplit(":", 1)[1])

    def smtp(self, **kw):
        return smtplib.SMTP("127.0.0.1", self.port, timeout=10, **kw)

    def raw(self, source="127.0.0.1"):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10, source_address=(source, 0))
        return s

    def stats(self):
        with open(self.stats_path) as f:
            return json.load(f)

    def wait_stats(self, pred, timeout=5.0):
        """the stats file is rewritten every 200 ms: poll until pred holds"""
        deadline = time.time() + timeout
        st = None
        while time.time() < deadline:
            try:
                st = self.stats()
                if pred(st):
                    return st
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError("stats never matched: %r" % (st,))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        return self.proc.returncode, out

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def sink(tmp_path):
    started = []

    def start(*args, **kw):
        s = Sink(tmp_path, *args, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    crt, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return crt, key


def read_reply(f):
    """one complete (possibly multi-line) SMTP reply from a socket file: (code, [lines])"""
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise EOFError("connection closed")
        line = line.decode().rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return int(line[:3]), lines


def maildir_messages(d):
    new = os.path.join(d, "new")
    return [open(os.path.join(new, n), "rb").read() for n in sorted(os.listdir(new))]


def test_plain_delivery_is_counted_and_stored(sink, tmp_path):
    md = str(tmp_path / "md")
    s = sink("--maildir", md)
    msg = b"From: a@x.test\r\nTo: b@y.test\r\nSubject: hi\r\n\r\nhello\r\n"
    with s.smtp() as c:
        code, ehlo = c.ehlo("client.test")
        assert code == 250
        for ext in (b"PIPELINING", b"SIZE 52428800", b"8BITMIME", b"ENHANCEDSTATUSCODES"):
            assert ext in ehlo
        assert b"STARTTLS" not in ehlo  # no certificate given
        assert c.sendmail("a@x.test", ["b@y.test", "c@y.test"], msg) == {}
        assert c.verify("b@y.test")[0] == 252
        assert c.noop()[0] == 250
        assert c.rset()[0] == 250
    st = s.wait_stats(lambda st: st["messages"] == 1)
    assert st["recipients"] == 2 and st["connections"] == 1 and st["bytes"] == len(msg)
    [stored] = maildir_messages(md)
    assert stored == b"Return-Path: <a@x.test>\r\nX-Volley-Sink-Rcpt: b@y.test, c@y.test\r\n" + msg
    assert not os.listdir(os.path.join(md, "tmp"))


def test_starttls_delivery(sink, cert, tmp_path):
    log = str(tmp_path / "msgs.log")
    s = sink("--tls-cert", cert[0], "--tls-key", cert[1], "--log-file", log)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with s.smtp() as c:
        c.ehlo("client.test")
        assert c.has_extn("starttls")
        assert c.starttls(context=ctx)[0] == 220
        code, ehlo = c.ehlo("client.test")  # state was reset: a new EHLO is required and accepted
        assert code == 250 and b"STARTTLS" not in ehlo
        assert c.sendmail("a@x.test", ["b@y.test"], b"Subject: tls\r\n\r\nsecret\r\n") == {}
    st = s.wait_stats(lambda st: st["messages"] == 1)
    assert st["tls_connections"] == 1
    rc, _ = s.stop()
    assert rc == 0
    [line] = open(log).read().splitlines()
    assert line.split()[4] == "1"


def test_starttls_forgets_pipelined_plaintext(sink, cert):
    s = sink("--tls-cert", cert[0], "--tls-key", cert[1])
    sock = s.raw()
    f = sock.makefile("rb")
    assert read_reply(f)[0] == 220
    sock.sendall(b"EHLO c\r\n")
    assert read_reply(f)[0] == 250
    # an injected command after STARTTLS in the same packet must not survive the handshake (RFC 3207)
    sock.sendall(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n")
    assert read_reply(f)[0] == 220
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(sock, server_hostname="localhost")
    tf = t.makefile("rb")
    t.sendall(b"MAIL FROM:<a@x.test>\r\n")
    assert read_reply(tf)[0] == 503  # HELO state and the injected MAIL are gone
    t.sendall(b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n")
    assert read_reply(tf)[0] == 250
    assert read_reply(tf)[0] == 250
    assert read_reply(tf)[0] == 250
    t.close()


def test_pipelined_transactions(sink, tmp_path):
    md = str(tmp_path / "md")
    s = sink("--maildir", md, "--reject-rcpt", "nobody@*")
    sock = s.raw()
    f = sock.makefile("rb")
    read_reply(f)
    sock.sendall(b"EHLO c\r\n")
    read_reply(f)
    # one write: MAIL, three RCPTs (one rejected) and DATA, as a PIPELINING client sends them
    sock.sendall(b"MAIL FROM:<a@x.test> BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<nobody@y.test>\r\n"
                 b"RCPT TO:<c@y.test>\r\nDATA\r\n")
    codes = [read_reply(f)[0] for _ in range(5)]
    assert codes == [250, 250, 550, 250, 354]
    # then the body, the final dot and a whole second transaction plus QUIT in one write
    sock.sendall(b"Subject: one\r\n\r\nbody\r\n.\r\nRSET\r\nMAIL FROM:<>\r\nRCPT TO:<d@y.test>\r\nDATA\r\n")
    assert [read_reply(f)[0] for _ in range(5)] == [250, 250, 250, 250, 354]
    sock.sendall(b"Subject: two\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert read_reply(f)[0] == 250
    assert read_reply(f)[0] == 221
    assert f.read() == b""  # closed after QUIT
    st = s.wait_stats(lambda st: st["messages"] == 2)
    assert st["recipients"] == 3 and st["rejected"] == 1
    msgs = maildir_messages(md)
    assert sorted(m.split(b"\r\n")[1] for m in msgs) == [b"X-Volley-Sink-Rcpt: b@y.test, c@y.test",
                                                         b"X-Volley-Sink-Rcpt: d@y.test"]
    assert any(m.startswith(b"Return-Path: <>\r\n") for m in msgs)


def test_dot_unstuffing_matches_what_was_sent(sink, tmp_path):
    md = str(tmp_path / "md")
    s = sink("--maildir", md)
    body = (b"Subject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\n...three\r\nmid . dot\r\n. \r\n.\r\n"
            b"x\r\n.\rodd\r\nlast\r\n")
    with s.smtp() as c:
        c.sendmail("a@x.test", ["b@y.test"], body)  # smtplib dot-stuffs on the wire
    sock = s.raw()
    f = sock.makefile("rb")
    read_reply(f)
    # hand-stuffed on the wire: "..x" arrives as ".x", and an empty message is allowed
    sock.sendall(b"HELO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
    assert [read_reply(f)[0] for _ in range(4)] == [250, 250, 250, 354]
    sock.sendall(b"..x\r\n....\r\n.\r\n")
    assert read_reply(f)[0] == 250
    sock.close()
    s.wait_stats(lambda st: st["messages"] == 2)
    msgs = maildir_messages(md)
    bodies = sorted(m.split(b"\r\n", 2)[2] for m in msgs)
    assert bodies == sorted([body, b".x\r\n...\r\n"])


def test_bdat_chunks_pipelined_refused_and_split(sink, tmp_path):
    """RFC 3030: CHUNKING advertised; chunks taken byte for byte (no unstuffing, CRLF.CRLF inside is data); one
    reply per chunk; a refused BDAT's chunk is still read (the stream stays in step) and ends the transaction;
    a chunk may arrive across several reads."""
    md = str(tmp_path / "md")
    s = sink("--maildir", md, "--reject-rcpt", "nobody@*", "--data-reply", "spam@*=554 5.7.1 spam")
    sock = s.raw()
    f = sock.makefile("rb")
    read_reply(f)
    sock.sendall(b"EHLO c\r\n")
    assert "250-CHUNKING" in read_reply(f)[1]
    one = b"Subject: one\r\n\r\n.dot\r\n.\r\nend\r\n"
    part1, part2 = b"Subject: two\r\n\r\nfirst ", b"second\r\n"
    # a whole pipelined run in one write: a two-chunk message, one with no accepted recipient, a refused one, one
    # BDAT 0 LAST, and BDAT without MAIL
    sock.sendall(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT %d LAST\r\n%s" % (len(one), one)
                 + b"MAIL FROM:<a@x.test>\r\nRCPT TO:<c@y.test>\r\nBDAT %d\r\n%sBDAT %d LAST\r\n%s"
                 % (len(part1), part1, len(part2), part2)
                 + b"MAIL FROM:<a@x.test>\r\nRCPT TO:<nobody@y.test>\r\nBDAT 5 LAST\r\nxxxxx"
                 + b"MAIL FROM:<a@x.test>\r\nRCPT TO:<spam@y.test>\r\nBDAT 3 LAST\r\nyyy"
                 + b"BDAT 4 LAST\r\nzzzz"
                 + b"MAIL FROM:<a@x.test>\r\nRCPT TO:<d@y.test>\r\nBDAT 0 LAST\r\n")
    codes = [read_reply(f)[0] for _ in range(17)]
    assert codes == [250, 250, 250,            # one: delivered
                     250, 250, 250, 250,       # two: a chunk, then LAST
                     250, 550, 554,            # no valid recipients: BDAT refused, chunk skipped
                     250, 250, 554,            # --data-reply answers BDAT LAST
                     503,                      # the refused BDAT ended the transaction
                     250, 250, 250], codes     # an empty message
    # a chunk split over writes, then QUIT right behind it
    sock.sendall(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<e@y.test>\r\nBDAT 10 LAST\r\n01234")
    assert [read_reply(f)[0] for _ in range(2)] == [250, 250]
    time.sleep(0.1)
    sock.sendall(b"56789QUIT\r\n")
    assert [read_reply(f)[0] for _ in range(2)] == [250, 221]
    st = s.wait_stats(lambda st: st["messages"] == 4)
    assert st["chunked"] == 4 and st["rejected"] == 2, st
    bodies = sorted(m.split(b"\r\n", 2)[2] for m in maildir_messages(md))
    assert bodies == sorted([one, part1 + part2, b"", b"0123456789"])


def test_no_chunking(sink):
    s = sink("--no-chunking")
    sock = s.raw()
    f = sock.makefile("rb")
    read_reply(f)
    sock.sendall(b"EHLO c\r\n")
    assert not any("CHUNKING" in ln for ln in read_reply(f)[1])
    # refused, but its chunk is skipped: the next command is read as one
    sock.sendall(b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 6 LAST\r\nNOOP\r\nNOOP\r\n")
    assert [read_reply(f)[0] for _ in range(4)] == [250, 250, 502, 250]
    sock.close()


def test_reject_and_defer_patterns(sink):
    s = sink("--reject-rcpt", "*@bad.test", "--defer-rcpt", "slow*@*", "--reject-rcpt", "slowpoke@never.test")
    with s.smtp() as c:
        c.ehlo("c")
        c.mail("a@x.test")
        assert c.rcpt("u@BAD.test") == (550, b"5.1.1 <u@BAD.test>: user unknown")
        assert c.rcpt("slowpoke@never.test") == (450, b"4.2.1 <slowpoke@never.test>: try again later")
        assert c.rcpt("ok@y.test")[0] == 250
        assert c.data(b"Subject: x\r\n\r\nx\r\n")[0] == 250
    st = s.wait_stats(lambda st: st["messages"] == 1)
    assert st["rejected"] == 1 and st["deferred"] == 1 and st["recipients"] == 1


def test_rcpt_reply_and_data_reply(sink):
    s = sink("--rcpt-reply", "*@gm.test=421 4.7.28 rate limited", "--rcpt-reply", "*@ok.test=251 2.1.5 fine",
             "--data-reply", "*@full.test=452 4.3.1 insufficient storage",
             "--data-reply", "*@spam.test=554 5.7.1 spam")
    with s.smtp() as c:
        c.ehlo("c")
        c.mail("a@x.test")
        assert c.rcpt("u@ok.test") == (251, b"2.1.5 fine")
        assert c.data(b"x\r\n")[0] == 250
        for dom, code in (("full.test", 452), ("spam.test", 554)):
            c.mail("a@x.test")
            c.rcpt("u@" + dom)
            assert c.data(b"x\r\n")[0] == code  # the answer to the final dot
        c.mail("a@x.test")
        assert c.rcpt("u@gm.test") == (421, b"4.7.28 rate limited")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            c.noop()  # a 421 closes the connection
    st = s.wait_stats(lambda st: st["messages"] == 1 and st["deferred"] == 2)
    assert st["rejected"] == 1


def test_defer_percent_is_exact(sink):
    s = sink("--defer-percent", "30")
    deferred = 0
    with s.smtp() as c:
        for _ in range(20):
            try:
                c.sendmail("a@x.test", ["b@y.test"], b"x\r\n")
            except smtplib.SMTPDataError as e:
                assert (e.smtp_code, e.smtp_error) == (451, b"4.3.0 temporary failure")
                deferred += 1
    assert deferred == 6  # deterministic: exactly 30 of every 100
    st = s.wait_stats(lambda st: st["messages"] == 14)
    assert st["deferred"] == 6


def test_drop_percent_closes_without_reply(sink):
    s = sink("--drop-percent", "25")
    dropped = 0
    t0 = time.monotonic()
    for _ in range(8):
        with s.smtp() as c:
            try:
                c.sendmail("a@x.test", ["b@y.test"], b"x\r\n")
            except smtplib.SMTPServerDisconnected:
                dropped += 1  # no reply at all to the final dot: the connection is gone
    assert dropped == 2  # deterministic: exactly 25 of every 100
    assert time.monotonic() - t0 < 5, "a dropped connection must close at once, not when the client gives up"
    st = s.wait_stats(lambda st: st["messages"] == 6)
    assert st["dropped"] == 2 and st["deferred"] == 0


def test_421_after_n_messages(sink):
    s = sink("--421-after", "3")
    with s.smtp() as c:
        for _ in range(3):
            c.sendmail("a@x.test", ["b@y.test"], b"x\r\n")
        assert c.mail("a@x.test") == (421, b"4.7.0 too many messages, closing")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            c.noop()
    with s.smtp() as c:  # a new connection starts a new count
        c.sendmail("a@x.test", ["b@y.test"], b"x\r\n")
    st = s.wait_stats(lambda st: st["messages"] == 4)
    assert st["max_msgs_per_conn"] == 3 and st["connections"] == 2


def test_delay_holds_replies_without_blocking_the_thread(sink):
    s = sink("--delay-ms", "300", "--threads", "1")
    t0 = time.time()
    with s.smtp() as c:  # greeting and EHLO are delayed
        t1 = time.time()
        c.noop()
        t2 = time.time()
    assert t1 - t0 >= 0.28 and t2 - t1 >= 0.28
    # eight clients at once on one thread: timers, not sleeps, so they overlap
    times = []

    def one():
        a = time.time()
        with s.smtp() as c:
            c.noop()
        times.append(time.time() - a)

    t0 = time.time()
    ths = [threading.Thread(target=one) for _ in range(8)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert len(times) == 8 and min(times) >= 0.55
    assert time.time() - t0 < 2.0  # serial would take 8 * 0.9 s


def test_idle_connections_are_closed(sink):
    s = sink("--idle-timeout-ms", "300")
    sock = s.raw()
    f = sock.makefile("rb")
    read_reply(f)
    t0 = time.time()
    sock.sendall(b"EHLO c\r\n")
    read_reply(f)
    assert read_reply(f) == (421, ["421 4.4.2 volley-sink.test Error: timeout exceeded"])
    assert f.read() == b""
    assert 0.28 <= time.time() - t0 < 1.5
    assert s.wait_stats(lambda st: st["concurrent"] == 0)["connections"] == 1


def test_greeting_554_refuses_service(sink):
    s = sink("--greeting", "554 5.7.1 no service for you")
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP("127.0.0.1", s.port, timeout=10)
    assert e.value.smtp_code == 554
    sock = s.raw()
    f = sock.makefile("rb")
    assert read_reply(f) == (554, ["554 5.7.1 no service for you"])
    sock.sendall(b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nQUIT\r\n")
    assert [read_reply(f)[0] for _ in range(3)] == [503, 503, 221]
    assert s.wait_stats(lambda st: st["connections"] == 2)["messages"] == 0


def test_max_conns(sink):
    s = sink("--max-conns", "2")
    a, b = s.smtp(), s.smtp()
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP("127.0.0.1", s.port, timeout=10)
    assert e.value.smtp_code == 421
    a.quit()
    s.wait_stats(lambda st: st["concurrent"] == 1)
    with s.smtp() as c:  # a slot is free again
        assert c.sendmail("a@x.test", ["b@y.test"], b"x\r\n") == {}
    b.quit()
    st = s.wait_stats(lambda st: st["concurrent"] == 0)
    assert st["peak_concurrent"] == 2 and st["refused_connections"] == 1 and st["connections"] == 3


def test_size_limit(sink):
    s = sink("--max-size", "1000")
    with s.smtp() as c:
        c.ehlo("c")
        assert c.esmtp_features["size"] == "1000"
        assert c.mail("a@x.test", ["SIZE=2000"])[0] == 552
        c.mail("a@x.test")  # no SIZE given: the limit is enforced at the final dot
        c.rcpt("b@y.test")
        assert c.data(b"x" * 1500 + b"\r\n")[0] == 552
        assert c.sendmail("a@x.test", ["b@y.test"], b"x" * 900 + b"\r\n") == {}  # session still usable
    st = s.wait_stats(lambda st: st["messages"] == 1)
    assert st["rejected"] == 2


def test_stats_and_log_file(sink, tmp_path):
    log = str(tmp_path / "msgs.log")
    s = sink("--log-file", log)
    before = int(time.time() * 1000)
    c = smtplib.SMTP("127.0.0.1", s.port, timeout=10, source_address=("127.0.0.2", 0))
    c.sendmail("a@x.test", ["b@y.test", "c@y.test"], b"x\r\n")
    c.sendmail("", ["d@y.test"], b"x\r\n")
    c.quit()
    with s.smtp() as c:
        c.sendmail("e@x.test", ["f@y.test"], b"x\r\n")
    st = s.wait_stats(lambda st: st["messages"] == 3 and st["concurrent"] == 0)
    assert st["connections"] == 2 and st["recipients"] == 4 and st["peak_concurrent"] >= 1
    assert st["by_source_ip"] == {"127.0.0.1": {"connections": 1, "messages": 1},
                                  "127.0.0.2": {"connections": 1, "messages": 2}}
    assert st["max_msgs_per_conn"] == 2
    deadline = time.time() + 3
    while len(open(log).read().splitlines()) < 3 and time.time() < deadline:
        time.sleep(0.05)
    # lines are buffered per worker thread, so across threads they are not in time order
    lines = sorted((l.split(" ") for l in open(log).read().splitlines()), key=lambda l: (int(l[2]), int(l[3])))
    assert len(lines) == 3
    for l in lines:
        assert len(l) == 7 and before <= int(l[0]) <= time.time() * 1000 and l[4] == "0"
    assert [l[1:] for l in lines[:2]] == [["127.0.0.2", lines[0][2], "1", "0", "a@x.test", "b@y.test,c@y.test"],
                                          ["127.0.0.2", lines[0][2], "2", "0", "<>", "d@y.test"]]
    assert lines[2][1] == "127.0.0.1" and lines[2][2] != lines[0][2] and lines[2][5:] == ["e@x.test", "f@y.test"]


def test_garbage_and_huge_lines_do_not_hurt(sink):
    s = sink()
    sock = s.raw()
    f = sock.makefile("rb")
    read_reply(f)
    sock.sendall(bytes(range(256)) * 4 + b"\r\n\x00\x00\r\nMAIL\r\nRCPT TO:<\r\nDATA\r\n")
    sock.sendall(b"A" * (10 * 1024 * 1024) + b"\r\nNOOP\r\n")  # a 10 MB command line
    sock.shutdown(socket.SHUT_WR)
    replies = f.read().decode(errors="replace").splitlines()
    assert any(r.startswith("500 5.5.2 Error: line too long") for r in replies)
    assert replies[-1].startswith("250 2.0.0")  # NOOP after the long line is still answered
    sock.close()
    # a 10 MB line inside DATA is just body text
    with s.smtp() as c:
        big = b"B" * (10 * 1024 * 1024) + b"\r\n"
        assert c.sendmail("a@x.test", ["b@y.test"], big) == {}
    # a client that never stops sending bad commands is cut off, not served forever
    sock = s.raw()
    f = sock.makefile("rb")
    read_reply(f)
    sock.sendall(b"BOGUS\r\n" * 100)
    codes = []
    try:
        while True:
            codes.append(read_reply(f)[0])
    except (EOFError, ConnectionResetError):
        pass
    assert codes[-1] == 421 and codes.count(500) < 100
    st = s.wait_stats(lambda st: st["messages"] == 1)
    assert st["bytes"] == len(big)
    assert s.proc.poll() is None


def test_sigterm_prints_summary_and_exits_0(sink, tmp_path):
    s = sink()
    with s.smtp() as c:
        c.sendmail("a@x.test", ["b@y.test", "c@y.test"], b"x\r\n")
    rc, out = s.stop()
    assert rc == 0
    summary = dict(kv.split("=") for kv in out.strip().splitlines()[-1].split())
    assert summary["messages"] == "1" and summary["recipients"] == "2" and summary["connections"] == "1"
    assert s.stats()["messages"] == 1  # written once more at exit


def test_bad_flags_exit_2_naming_the_flag():
    for args, flag in ((["--listen", "nowhere"], "--listen"), (["--listen", "127.0.0.1:0", "--threads", "x"],
                                                               "--threads"),
                       (["--listen", "127.0.0.1:0", "--rcpt-reply", "bad"], "--rcpt-reply"),
                       (["--listen", "127.0.0.1:0", "--frobnicate"], "--frobnicate"),
                       (["--listen", "127.0.0.1:0", "--tls-cert", "/nonexistent", "--tls-key", "/nonexistent"],
                        "--tls-cert")):
        p = subprocess.run([str(binary("volley-sink"))] + args, capture_output=True, text=True, timeout=10)
        assert p.returncode == 2, args
        assert len(p.stderr.strip().splitlines()) == 1 and flag in p.stderr, p.stderr
    p = subprocess.run([str(binary("volley-sink")), "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0
    for opt in ("--listen", "--tls-cert", "--idle-timeout-ms", "--maildir", "--threads", "--reject-rcpt", "--defer-rcpt",
                "--defer-percent", "--drop-percent", "--rcpt-reply", "--data-reply", "--421-after", "--delay-ms", "--greeting",
                "--max-conns", "--stats-file", "--log-file", "--max-size"):
        assert opt in p.stdout
