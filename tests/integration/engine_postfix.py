"""A real Postfix smtpd as a receiving MX for the engine tests: an isolated instance on a loopback port.

  Postfix(addr, port, cert, key, hostname, domains, extra_main=())
    its own config_directory / queue_directory / data_directory in a fresh temp dir (mode 0755: the
    postfix user must reach it, pytest's tmp dirs are 0700); started with `postfix -c DIR start-fg`
    (log to stdout -> DIR/maillog); master.cf has one smtpd on ADDR:PORT. STARTTLS with the given
    certificate (smtpd_tls_security_level = may, TLS noted in the Received header), every recipient
    of `domains` is delivered by the virtual agent to one maildir (DIR/mail/box/new).
    .log_text(), .messages() (parsed), .wait_messages(n), .stop() (postfix stop, then the process
    group it was started in, then the temp dir is removed). extra_main: more main.cf lines (later
    lines win), e.g. relay_domains and transport_maps for a relay that bounces.

Needs root (Postfix drops to the `postfix` user itself) and the Debian postfix package.
"""

import email
import email.policy
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from volley_itest import wait_port

MASTER_CF = """\
{addr}:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
tlsmgr    unix  - - n 1000? 1 tlsmgr
"""


class Postfix:
    def __init__(self, addr, port, cert, key, hostname, domains, extra_main=()):
        self.addr, self.port = addr, port
        self.dir = Path(tempfile.mkdtemp(prefix="volley-postfix-"))
        os.chmod(self.dir, 0o755)
        self.conf = self.dir / "conf"
        pw = pwd.getpwnam("postfix")
        for sub in ("conf", "queue", "data", "mail"):
            (self.dir / sub).mkdir()
        for sub in ("data", "mail"):
            os.chown(self.dir / sub, pw.pw_uid, pw.pw_gid)
        shutil.copy(cert, self.conf / "cert.pem")
        shutil.copy(key, self.conf / "key.pem")
        os.chmod(self.conf / "key.pem", 0o600)
        self.maildir = self.dir / "mail" / "box"
        self.logfile = self.dir / "maillog"
        (self.conf / "main.cf").write_text("\n".join([
            "compatibility_level = 3.6",
            f"queue_directory = {self.dir / 'queue'}",
            f"data_directory = {self.dir / 'data'}",
            "mail_owner = postfix", "setgid_group = postdrop",
            # the listener is in master.cf; inet_interfaces must name an interface address
            "inet_interfaces = 127.0.0.1", "inet_protocols = ipv4",
            f"myhostname = {hostname}", "mydestination =", "mynetworks = 127.0.0.0/8",
            "maillog_file = /dev/stdout", "notify_classes =", "alias_maps =", "alias_database =", "biff = no",
            "smtpd_peername_lookup = no",
            f"virtual_mailbox_domains = {' '.join(domains)}",
            f"virtual_mailbox_base = {self.dir / 'mail'}", "virtual_mailbox_maps = static:box/",
            f"virtual_uid_maps = static:{pw.pw_uid}", f"virtual_gid_maps = static:{pw.pw_gid}",
            f"smtpd_tls_cert_file = {self.conf / 'cert.pem'}", f"smtpd_tls_key_file = {self.conf / 'key.pem'}",
            "smtpd_tls_security_level = may", "smtpd_tls_loglevel = 1", "smtpd_tls_received_header = yes",
            *extra_main,
            "",
        ]))
        (self.conf / "master.cf").write_text(MASTER_CF.format(addr=addr, port=port))
        self._log = open(self.logfile, "wb")
        self.proc = subprocess.Popen(["postfix", "-c", str(self.conf), "start-fg"], stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_port(port, addr, timeout=20):
            self.stop()
            raise RuntimeError(f"postfix did not listen on {addr}:{port}; log:\n{self.log_text()}")

    def log_text(self):
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def files(self):
        d = self.maildir / "new"
        return sorted(d.iterdir()) if d.is_dir() else []

    def messages(self):
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in self.files()]

    def wait_messages(self, n, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.files()) >= n:
                return True
            time.sleep(0.1)
        return False

    def stop(self):
        if self.proc.poll() is None:
            subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True, timeout=30)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group we started: master and its children
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._log.close()
        self.saved_log = self.log_text()
        shutil.rmtree(self.dir, ignore_errors=True)
