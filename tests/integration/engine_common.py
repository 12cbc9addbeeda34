"""Shared helpers for the delivery-engine end-to-end tests (test_engine_*.py).

  test_ca            session fixture: a throwaway certificate authority made with openssl;
                     .pem is its certificate, .issue(names) signs a server certificate
  write_engine_conf  a volley.conf with [smtp], [dns], [egress], [tls], [route] sections
  port_free_on       a TCP port free on several 127.x addresses at once (fake MX hosts share mx_port)
  run_worker         `volley worker --exit-when-idle` with a hard timeout that does not fail the
                     test by itself (the caller asserts on the exit and on what happened)

Everything binds loopback addresses only (127.0.0.0/8 works on Linux without setup).
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from volley_itest import PREFIX, binary, stop_process

# retries must not happen inside a test run: a deferred message stays deferred
NO_RETRY_MS = 600000


# ---------------------------------------------------------------- addresses and ports


def port_free_on(addrs, tries=50):
    """A port that was free on every address in addrs a moment ago."""
    for _ in range(tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((addrs[0], 0))
            port = s.getsockname()[1]
        ok = True
        for a in addrs:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((a, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError(f"no common free port on {addrs}")


def wait_listen(addr, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((addr, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# ---------------------------------------------------------------- test CA


class TestCA:
    """A certificate authority for one test session; issue() makes server certificates."""

    __test__ = False  # not a test class

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pem = self.dir / "testCA.pem"
        self.key = self.dir / "testCA.key"
        self._n = 0
        self._run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                   "-subj", "/CN=Volley Test CA", "-keyout", str(self.key), "-out", str(self.pem),
                   "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    @staticmethod
    def _run(cmd):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")

    def issue(self, names, ips=()):
        """(cert, key) for the given DNS names (first is the CN), signed by this CA."""
        self._n += 1
        base = self.dir / f"srv{self._n}"
        key, csr, crt, ext = (base.with_suffix(s) for s in (".key", ".csr", ".pem", ".ext"))
        san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{i}" for i in ips])
        ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n"
                       "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n")
        self._run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={names[0]}",
                   "-keyout", str(key), "-out", str(csr)])
        self._run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.pem), "-CAkey", str(self.key),
                   "-CAcreateserial", "-days", "2", "-out", str(crt), "-extfile", str(ext)])
        return crt, key


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    return TestCA(tmp_path_factory.mktemp("testca"))


# ---------------------------------------------------------------- volley config


def write_engine_conf(v, *, threads=1, name="engine", dns_port=None, dns=None, smtp=None, egress=None,
                      tls=None, routes=None, log="debug", worker=None):
    """Write v.conf (v: a volley_itest.Volley). Every section is a dict; order is kept.

    smtp defaults keep tests quick (short timeouts); retries never fall due inside a test.
    """
    w = {"threads": threads, "hostname": "volley.test", "name": name, "batch": 256,
         "shutdown_ms": 3000}
    w.update(worker or {})
    s = {"connections": 4, "messages_per_connection": 100, "timeout_ms": 5000}
    s.update(smtp or {})
    lines = ["[redis]", f"url = {v.redis.url}", f"prefix = {PREFIX}", "", "[worker]"]
    lines += [f"{k} = {val}" for k, val in w.items()]
    lines += ["", "[smtp]"] + [f"{k} = {val}" for k, val in s.items()]
    lines += ["", "[retry]", f"schedule = {NO_RETRY_MS // 1000}s"]
    if dns_port is not None or dns:
        d = {"timeout_ms": 500, "tries": 1}
        if dns_port is not None:
            d["servers"] = f"127.0.0.1:{dns_port}"
        d.update(dns or {})
        lines += ["", "[dns]"] + [f"{k} = {val}" for k, val in d.items()]
    if egress:
        lines += ["", "[egress]"] + [f"{k} = {val}" for k, val in egress.items()]
    t = {"mode": "off"}
    t.update(tls or {})
    lines += ["", "[tls]"] + [f"{k} = {val}" for k, val in t.items()]
    if routes:
        lines += ["", "[route]"] + [f"{k} = {val}" for k, val in routes.items()]
    lines += ["", "[log]", f"level = {log}", ""]
    v.conf.write_text("\n".join(lines))
    return v.conf


def push_rows(v, rows, **campaign):
    """Campaign + recipients -> campaign id (asserts push succeeded)."""
    return v.push(v.write_campaign(**campaign), v.write_recipients(rows))


def rows_for(addresses):
    return [{"email": a, "name": f"N{i}", "token": f"T{i}x{os.urandom(4).hex()}"} for i, a in enumerate(addresses)]


class WorkerRun:
    def __init__(self, rc, log, secs, timed_out):
        self.rc, self.log, self.secs, self.timed_out = rc, log, secs, timed_out

    def __repr__(self):
        return f"WorkerRun(rc={self.rc}, secs={self.secs:.1f}, timed_out={self.timed_out})"

    def tail(self, n=40):
        return "\n".join(self.log.splitlines()[-n:])


def run_worker(v, timeout):
    """`volley worker --exit-when-idle`; on timeout it is killed (timed_out=True), not a test failure."""
    v.nruns += 1
    log = v.dir / f"worker{v.nruns}.log"
    t0 = time.monotonic()
    timed_out = False
    with open(log, "wb") as f:
        p = subprocess.Popen([str(binary("volley")), "worker", "-c", str(v.conf), "--exit-when-idle"],
                             stdout=f, stderr=subprocess.STDOUT, cwd=v.dir)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            rc = stop_process(p, signal.SIGKILL)
    return WorkerRun(rc, log.read_text(errors="replace"), time.monotonic() - t0, timed_out)


def events_by_to(v):
    """{recipient: [event, ...]} from <p>:events."""
    out = {}
    for e in v.events():
        out.setdefault(e.get("to"), []).append(e)
    return out


def one_event(evs, to):
    got = evs.get(to, [])
    assert len(got) == 1, f"expected exactly one event for {to}, got {got}"
    return got[0]


def retry_raw(v):
    """Members of <p>:retry as bytes (the encoding of a job is opaque and may be binary)."""
    import redis

    raw = redis.Redis(host="127.0.0.1", port=v.redis.port, decode_responses=False)
    try:
        return raw.zrange(f"{PREFIX}:retry".encode(), 0, -1)
    finally:
        raw.close()


def redis_dump_bytes(v):
    """Every key and value in the Redis db as one bytes string (to search for secrets)."""
    import redis

    r = redis.Redis(host="127.0.0.1", port=v.redis.port, decode_responses=False)
    parts = []
    try:
        for k in r.scan_iter(count=1000):
            t = r.type(k)
            parts.append(k)
            if t == b"string":
                parts.append(r.get(k) or b"")
            elif t == b"hash":
                parts += [a + b"=" + b for a, b in r.hgetall(k).items()]
            elif t == b"list":
                parts += r.lrange(k, 0, -1)
            elif t == b"set":
                parts += list(r.smembers(k))
            elif t == b"zset":
                parts += r.zrange(k, 0, -1)
            elif t == b"stream":
                for _id, fields in r.xrange(k, "-", "+"):
                    parts += [a + b"=" + b for a, b in fields.items()]
    finally:
        r.close()
    return b"\n".join(parts)


def sink_log(sink):
    """volley-sink log lines as dicts (the sink flushes its log on exit: stop it first)."""
    return sink.log_records()
