"""A hostile SMTP server for the engine tests: each instance misbehaves in one way (its mode).

Modes
  ok              a well-behaved minimal ESMTP server (no PIPELINING, so every stage is its own round trip)
  garbage         the greeting is not SMTP at all
  garbage_mail    a normal session, but the reply to MAIL is garbage
  huge            a 10 MB greeting line
  endless         EHLO is answered with "250-..." lines forever
  stall_greeting  accepts and never says anything
  stall_ehlo, stall_mail, stall_rcpt, stall_data
                  answers normally up to that command, then goes silent (keeps reading)
  stall_dot       reads the whole message and never answers the final dot
  drop_data       answers DATA with 354, reads the first line of content and closes the connection
  blocklisted     refuses the session in its greeting: 554 5.7.1 ... blocked using zen.spamhaus.org

The server runs in threads of the test process, binds a loopback address, records every
connection and command line (`.connections`, `.commands`, `.ehlo` names by peer IP) and
closes every socket in stop(), also when a test fails.
"""

import socket
import threading
import time

MODES = ("ok", "garbage", "garbage_mail", "huge", "endless", "stall_greeting", "stall_ehlo", "stall_mail",
         "stall_rcpt", "stall_data", "stall_dot", "drop_data", "blocklisted")
BLOCKLISTED = "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"

HUGE = 10 * 1024 * 1024


class _Closed(Exception):
    pass


class HostileServer:
    def __init__(self, mode, addr="127.0.0.1", port=0):
        assert mode in MODES, mode
        self.mode = mode
        self.addr = addr
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.connections = 0
        self.commands = []  # (peer ip, line)
        self.ehlo = []  # (peer ip, name)
        self.messages = 0
        self._socks = []
        self._threads = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name=f"hostile-{mode}", daemon=True)
        t.start()
        self._threads.append(t)

    @property
    def hostport(self):
        return f"{self.addr}:{self.port}"

    # -- plumbing

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                c, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self._socks.append(c)
            t = threading.Thread(target=self._serve, args=(c, peer[0]), daemon=True)
            t.start()
            with self.lock:
                self._threads.append(t)

    def _serve(self, c, peer):
        c.settimeout(0.2)
        try:
            self._session(c, peer)
        except (_Closed, OSError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _send(self, c, data):
        if isinstance(data, str):
            data = data.encode()
        view = memoryview(data)
        while view:
            if self.stopping.is_set():
                raise _Closed()
            try:
                n = c.send(view[:65536])
            except socket.timeout:
                continue
            view = view[n:]

    def _recv(self, c):
        while True:
            if self.stopping.is_set():
                raise _Closed()
            try:
                b = c.recv(65536)
            except socket.timeout:
                continue
            if not b:
                raise _Closed()
            return b

    def _readline(self, c, buf):
        while b"\n" not in buf[0]:
            buf[0] += self._recv(c)
        line, _, rest = buf[0].partition(b"\n")
        buf[0] = rest
        return line.rstrip(b"\r").decode(errors="replace")

    def _silent(self, c):
        """Say nothing more; read and discard until the client gives up."""
        while True:
            self._recv(c)

    # -- the session

    def _session(self, c, peer):
        m = self.mode
        if m == "stall_greeting":
            self._silent(c)
        if m == "garbage":
            self._send(c, "hello there, this is not SMTP\r\n")
            self._silent(c)
        if m == "huge":
            self._send(c, b"220 " + b"x" * HUGE + b"\r\n")
            self._silent(c)
        if m == "blocklisted":
            self._send(c, BLOCKLISTED + "\r\n")
            self._silent(c)
        self._send(c, "220 hostile.test ESMTP\r\n")
        buf = [b""]
        while True:
            line = self._readline(c, buf)
            with self.lock:
                self.commands.append((peer, line))
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                with self.lock:
                    self.ehlo.append((peer, line[5:].strip()))
                if m == "stall_ehlo":
                    self._silent(c)
                if m == "endless":
                    chunk = b"250-hostile.test says hello again and again\r\n" * 1000
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:
                        self._send(c, chunk)
                    raise _Closed()
                self._send(c, "250-hostile.test\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n")
            elif verb == "MAIL":
                if m == "stall_mail":
                    self._silent(c)
                if m == "garbage_mail":
                    self._send(c, "2x0 what?\r\n")
                    continue
                self._send(c, "250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                if m == "stall_rcpt":
                    self._silent(c)
                self._send(c, "250 2.1.5 Ok\r\n")
            elif verb == "DATA":
                if m == "stall_data":
                    self._silent(c)
                self._send(c, "354 End data with <CR><LF>.<CR><LF>\r\n")
                first = True
                while True:
                    dl = self._readline(c, buf)
                    if m == "drop_data" and first:
                        c.shutdown(socket.SHUT_RDWR)
                        raise _Closed()
                    first = False
                    if dl == ".":
                        break
                if m == "stall_dot":
                    self._silent(c)
                with self.lock:
                    self.messages += 1
                self._send(c, "250 2.0.0 Ok: queued\r\n")
            elif verb == "RSET" or verb == "NOOP":
                self._send(c, "250 2.0.0 Ok\r\n")
            elif verb == "QUIT":
                self._send(c, "221 2.0.0 Bye\r\n")
                raise _Closed()
            else:
                self._send(c, "502 5.5.2 Error: command not recognized\r\n")

    def stop(self):
        self.stopping.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            socks, threads = list(self._socks), list(self._threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(timeout=5)
