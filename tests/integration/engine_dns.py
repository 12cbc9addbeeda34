"""A local DNS server for the engine tests: dnsmasq on 127.0.0.1 and a free port, serving a test zone.

The zone (every name under .test; anything else under .test is NXDOMAIN because of --local=/test/):

  two.test       MX 10 mx1.two.test (127.0.0.11: nothing listens there), MX 20 mx2.two.test (127.0.0.12)
  plain.test     no MX, A 127.0.0.13 (implicit MX)
  null.test      null MX "0 ." (RFC 7505)
  nx.test        does not exist
  timeout.test   forwarded to a UDP socket that never answers: the lookup times out
  one.test       MX 10 mxs1.shared.test, MX 20 mxs2.shared.test  \\ one MX set in other orders:
  other.test     MX 5 mxs2.shared.test, MX 50 mxs1.shared.test   /  one site (MX rollup)
                 mxs1.shared.test 127.0.0.14, mxs2.shared.test 127.0.0.15
  lim1.test,     MX 10 mx.limits.test (127.0.0.20)
  lim2.test
  pf.test        MX 10 mx.pf.test (127.0.0.60: the Postfix test server)
  wrongname.test MX 10 wrong.pf.test (127.0.0.60 too, but not a name on the certificate)
  hostile.test   MX 10 mx.hostile.test (127.0.0.70)

Fake MX hosts all listen on one port per test ([smtp] mx_port) at these addresses.
"""

import socket
import subprocess
import time

from volley_itest import stop_process

DNSMASQ = "/usr/sbin/dnsmasq"

ZONE = [
    "--mx-host=two.test,mx1.two.test,10", "--mx-host=two.test,mx2.two.test,20",
    "--host-record=mx1.two.test,127.0.0.11", "--host-record=mx2.two.test,127.0.0.12",
    "--host-record=plain.test,127.0.0.13",
    "--dns-rr=null.test,15,000000",
    "--mx-host=one.test,mxs1.shared.test,10", "--mx-host=one.test,mxs2.shared.test,20",
    "--mx-host=other.test,mxs2.shared.test,5", "--mx-host=other.test,mxs1.shared.test,50",
    "--host-record=mxs1.shared.test,127.0.0.14", "--host-record=mxs2.shared.test,127.0.0.15",
    "--mx-host=lim1.test,mx.limits.test,10", "--mx-host=lim2.test,mx.limits.test,10",
    "--host-record=mx.limits.test,127.0.0.20",
    "--mx-host=pf.test,mx.pf.test,10", "--host-record=mx.pf.test,127.0.0.60",
    "--mx-host=wrongname.test,wrong.pf.test,10", "--host-record=wrong.pf.test,127.0.0.60",
    "--mx-host=hostile.test,mx.hostile.test,10", "--host-record=mx.hostile.test,127.0.0.70",
]

ADDR = {
    "mx1.two.test": "127.0.0.11", "mx2.two.test": "127.0.0.12", "plain.test": "127.0.0.13",
    "mxs1.shared.test": "127.0.0.14", "mxs2.shared.test": "127.0.0.15", "mx.limits.test": "127.0.0.20",
    "mx.pf.test": "127.0.0.60", "mx.hostile.test": "127.0.0.70",
}


def _free_udp_tcp_port():
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port for dnsmasq")


def _query_a(port, name, timeout=0.5):
    """A minimal DNS query for name/A over UDP: True when dnsmasq answered at all."""
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(512)
        except OSError:
            return False
        return data[:2] == b"\x12\x34"


class Dnsmasq:
    def __init__(self, tmp):
        # the upstream of timeout.test: receives queries and never answers
        self.silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.silent.bind(("127.0.0.1", 0))
        silent_port = self.silent.getsockname()[1]
        self.log = tmp / "dnsmasq.log"
        for _attempt in range(5):
            self.port = _free_udp_tcp_port()
            cmd = [DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
                   f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
                   "--no-hosts", "--cache-size=0", "--local=/test/", "--user=root", "--group=root",
                   f"--server=/timeout.test/127.0.0.1#{silent_port}", "--log-queries",
                   f"--log-facility={self.log}"] + ZONE
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _query_a(self.port, "plain.test"):
                    return
                time.sleep(0.05)
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
            stop_process(self.proc)
        self.silent.close()
        raise RuntimeError(f"dnsmasq did not start: {err}")

    @property
    def conf(self):
        """The [dns] section (conf_text(dns=...)) that sends a worker's lookups here, one quick try each."""
        return {"servers": f"127.0.0.1:{self.port}", "timeout_ms": 500, "tries": 1}

    def stop(self):
        stop_process(self.proc)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.silent.close()
