"""The one helper module of volley's Python tests: real servers on loopback only.

  processes   binary, free_port, port_free_on, wait_port, stop_process, tail, wait_for
  peers       RedisServer (optionally AOF, kill() / start() on the same port), TestCA, SmtpReceiver
              (aiosmtpd with reject/defer globs or a rule per RCPT),
              VolleySink (build/volley-sink)
  config      conf_text(): the one volley.conf builder (current keys only); Volley.write_conf writes it
  volley      Volley: campaign and CSV writers, run/push/status, the one worker launcher
              (start_worker in the background, run_worker to completion), Redis views
  data        make_recipients, rows_for, message_text, one_event, outcome_sum, max_in_window, ...

Separate peers keep their own modules: in tests/integration engine_dns.py (dnsmasq), engine_postfix.py,
engine_hostile.py, engine_relay.py (an AUTH relay), redis_secure.py (Redis with ACL and TLS), chaos_ledger.py;
tests/dkim_util.py (DKIM keys, signatures, verification) serves tests/templates too.

Everything a test starts binds 127.0.0.0/8 on a port chosen at run time and is stopped in a fixture's
teardown (tests/conftest.py), also when the test fails. Every volley process runs with a timeout so a hang
fails the test instead of hanging the suite.
"""

import contextlib
import csv
import email
import email.policy
import fnmatch
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / os.environ.get("VOLLEY_BUILD", "build")
PREFIX = "volley"

# Timeouts (seconds): generous for a loaded CI box, short enough that a hang
# fails within the ~3 minute budget of the whole integration run.
WORKER_TIMEOUT = 60
CMD_TIMEOUT = 20


def binary(name):
    """Path of a built binary; fail (not skip) when it is missing: `make` builds it."""
    p = BUILD / name
    if not p.exists():
        pytest.fail(f"{p} not found: run `make` first (VOLLEY_BUILD={BUILD})", pytrace=False)
    return p


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stopped_at_teardown(build):
    """The body of a factory fixture (`yield from stopped_at_teardown(build)`): the test gets make(*args, **kw)
    = build(n, *args, **kw), n counting from 0; everything made is stopped (.stop()) at teardown."""
    made = []

    def make(*args, **kw):
        made.append(build(len(made), *args, **kw))
        return made[-1]

    yield make
    for x in made:
        x.stop()


def port_free_on(addrs, tries=50):
    """A TCP port that was free on every address in addrs a moment ago (fake MX hosts share [smtp] mx_port)."""
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


def wait_port(port, addr="127.0.0.1", timeout=10.0):
    """True once something accepts TCP connections on addr:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((addr, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.01)
    return False


def stop_process(p, sig=signal.SIGTERM, timeout=10.0):
    """Stop a Popen we started; returns its exit status (SIGKILL after timeout)."""
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


def tail(path, n=30):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def wait_for(pred, timeout, step=0.05):
    """Poll pred() until it is truthy or timeout seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        val = pred()
        if val or time.monotonic() >= deadline:
            return val
        time.sleep(step)


# ---------------------------------------------------------------- redis


class RedisServer:
    """redis-server on a free loopback port; .client (text) and .raw (bytes) are redis-py clients.

    aof=True: `--appendonly yes --appendfsync always`, so kill() (SIGKILL, an outage) loses no
    acknowledged write and start() brings the same data back on the same port.
    extra_args(port): more redis-server arguments (later ones win); client_kw: for the redis-py clients.
    """

    def __init__(self, tmp, aof=False, extra_args=lambda port: [], client_kw=None):
        import redis  # python3-redis (scripts/deps.sh)

        self.dir = Path(tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "redis.log"
        self.aof, self.extra_args = aof, extra_args
        self.proc = None
        for _attempt in range(5):
            self.port = free_port()
            self.client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, **(client_kw or {}))
            # for values that are not text (the retry set holds binary-encoded jobs)
            self.raw = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=False, **(client_kw or {}))
            if self._spawn():
                return
            stop_process(self.proc)  # lost the port race or failed: try another port
        raise RuntimeError("redis-server did not start: " + tail(self.log))

    def _spawn(self, timeout=10.0):
        import redis

        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "yes" if self.aof else "no", "--dir", str(self.dir), "--logfile", str(self.log),
                "--daemonize", "no", "--protected-mode", "no"]
        if self.aof:
            args += ["--appendfsync", "always"]
        self.proc = subprocess.Popen(args + self.extra_args(self.port), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if self.client.ping():
                    return True
            except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                time.sleep(0.005)  # it listens within ~10 ms: a 50 ms step cost every test 40 ms
        return False

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def kill(self):
        """An outage: SIGKILL (with aof=True every acknowledged write is on disk)."""
        stop_process(self.proc, signal.SIGKILL)

    def start(self):
        """Start again after kill(), same port and directory."""
        if not self._spawn():
            raise RuntimeError("redis-server did not restart: " + tail(self.log))

    def stop(self):
        """End the server for good (SIGKILL: a throwaway server keeps nothing worth a clean shutdown, and redis acts
        on SIGTERM only in its next 100 ms cron tick, which every test's teardown waited for)."""
        for c in (self.client, self.raw):
            try:
                c.close()
            except Exception:
                pass
        stop_process(self.proc, signal.SIGKILL)


# ---------------------------------------------------------------- TLS


def openssl(*args):
    """Run `openssl ARGS...`; returns its stdout (bytes); a failure raises with its stderr."""
    p = subprocess.run(["openssl", *map(str, args)], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))}: {p.stderr.decode(errors='replace').strip()}")
    return p.stdout


def self_signed_cert(d):
    """(cert, key) of a self-signed RSA certificate for localhost / 127.0.0.1, made now in d."""
    cert, key = Path(d) / "cert.pem", Path(d) / "key.pem"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert)
    return cert, key


class TestCA:
    """A certificate authority for one test session; issue() makes server certificates."""

    __test__ = False  # not a test class

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pem = self.dir / "testCA.pem"
        self.key = self.dir / "testCA.key"
        self._n = 0
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Volley Test CA",
                "-keyout", self.key, "-out", self.pem, "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, names, ips=()):
        """(cert, key) for the given DNS names (first is the CN), signed by this CA."""
        self._n += 1
        base = self.dir / f"srv{self._n}"
        key, csr, crt, ext = (base.with_suffix(s) for s in (".key", ".csr", ".pem", ".ext"))
        san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{i}" for i in ips])
        ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n"
                       "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n")
        openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={names[0]}", "-keyout", key,
                "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", self.pem, "-CAkey", self.key, "-CAcreateserial", "-days", "2",
                "-out", crt, "-extfile", ext)
        return crt, key


# ---------------------------------------------------------------- aiosmtpd receiver


class Received:
    """One message as the receiver saw it."""

    def __init__(self, mail_from, rcpt_tos, data, tls, peer):
        self.mail_from = mail_from
        self.rcpt_tos = list(rcpt_tos)
        self.data = data  # bytes exactly as received (dot-unstuffed)
        self.tls = tls
        self.peer = peer
        self._msg = None

    @property
    def msg(self):
        if self._msg is None:
            self._msg = email.message_from_bytes(self.data, policy=email.policy.default)
        return self._msg


class _Handler:
    def __init__(self, owner):
        self.owner = owner

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.owner.lock:
            self.owner.ehlos += 1
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        o, addr = self.owner, address.lower()
        with o.lock:
            o.seen[addr] += 1
            n = o.seen[addr]
        reply = o.reply_to(addr, n)
        with o.lock:
            o.rcpts.append((time.monotonic(), int(time.time() * 1000), addr, reply or "250"))
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        m = Received(envelope.mail_from, envelope.rcpt_tos, envelope.original_content or envelope.content,
                     session.ssl is not None, session.peer)
        with self.owner.lock:
            self.owner.messages.append(m)
        return "250 2.0.0 OK queued"


class SmtpReceiver:
    """aiosmtpd in a thread; stores every message; optional STARTTLS and RCPT rules.

    reject / defer: lists of fnmatch globs on the (lower-cased) recipient, answered 550 5.1.1 and 450 4.2.1.
    rule(address, n): decides the other RCPTs, n counting the RCPTs seen for that address (1 on the first):
    None accepts, a reply line ("451 4.3.0 ...") refuses. Every RCPT is logged in .rcpts as
    (monotonic s, wall ms, address, reply or "250"); every message accepted in .messages (Received).
    """

    def __init__(self, cert=None, require_tls=False, reject=(), defer=(), rule=None):
        from aiosmtpd.controller import Controller
        import ssl

        self.lock = threading.Lock()
        self.messages = []
        self.rcpts = []
        self.seen = Counter()
        self.ehlos = 0
        self.reject = [g.lower() for g in reject]
        self.defer = [g.lower() for g in defer]
        self.rule = rule
        kw = {}
        if cert is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
            kw["tls_context"] = ctx
            kw["require_starttls"] = require_tls
        self.port = free_port()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     server_hostname="mx.receiver.test", ready_timeout=10, **kw)
        self.controller.start()

    def reply_to(self, addr, n):
        """The refusal for RCPT TO:<addr> (the n-th for it), or None to accept."""
        if any(fnmatch.fnmatchcase(addr, g) for g in self.reject):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % addr
        if any(fnmatch.fnmatchcase(addr, g) for g in self.defer):
            return "450 4.2.1 <%s>: The user you are trying to contact is receiving mail too quickly" % addr
        return self.rule(addr, n) if self.rule else None

    @property
    def hostport(self):
        return f"127.0.0.1:{self.port}"

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def received(self):
        """Every recipient of every message accepted, in arrival order."""
        return [r for m in self.snapshot() for r in m.rcpt_tos]

    def wait_count(self, n, timeout=10.0):
        return bool(wait_for(lambda: len(self.snapshot()) >= n, timeout))

    def stop(self):
        try:
            self.controller.stop()
        except Exception:
            pass


# ---------------------------------------------------------------- volley-sink


class VolleySink:
    """build/volley-sink as a subprocess with a maildir (maildir=False: none, for long runs) and a stats file in tmp."""

    def __init__(self, tmp, args=(), cert=None, maildir=True):
        self.dir = Path(tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.maildir = self.dir / "maildir"
        self.stats_file = self.dir / "stats.json"
        self.log_file = self.dir / "sink.log"
        self.stderr_path = self.dir / "sink.stderr"
        self.port = free_port()
        cmd = [str(binary("volley-sink")), "--listen", f"127.0.0.1:{self.port}",
               "--stats-file", str(self.stats_file), "--log-file", str(self.log_file)]
        if maildir:
            cmd += ["--maildir", str(self.maildir)]
        if cert is not None:
            cmd += ["--tls-cert", str(cert[0]), "--tls-key", str(cert[1])]
        cmd += [str(a) for a in args]
        self.cmd = cmd
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr)
        self.exit_status = None
        line = self._readline(10.0)
        if not line or not line.startswith("listening"):
            stop_process(self.proc, signal.SIGKILL)
            self._stderr.close()
            pytest.fail(f"volley-sink did not print 'listening' (got {line!r}); stderr: "
                        + tail(self.stderr_path), pytrace=False)
        self.listening = line.strip()

    def _readline(self, timeout):
        out = []

        def rd():
            out.append(self.proc.stdout.readline().decode(errors="replace"))

        t = threading.Thread(target=rd, daemon=True)
        t.start()
        t.join(timeout)
        return out[0] if out else None

    @property
    def hostport(self):
        return f"127.0.0.1:{self.port}"

    def files(self):
        d = self.maildir / "new"
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if p.is_file())

    def count(self):
        return len(self.files())

    def messages(self):
        """Every message in maildir/new, parsed with the email package."""
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in self.files()]

    def wait_count(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count() >= n:
                return True
            time.sleep(0.05)
        return False

    def log_records(self):
        """The --log-file as dicts in file order, one per accepted message: ms, src (source IP), conn,
        no (message number on the connection), tls, from, rcpts. Lines still being written are skipped.

        The sink writes its log from per-thread buffers every 200 ms (and at exit), so a running
        sink's log lags a little and its lines are grouped by thread.
        """
        out = []
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            parts = line.split(" ", 6)
            if len(parts) < 7:
                continue  # a line being written
            ms, src, conn, no, tls, frm, rcpts = parts
            out.append({"ms": int(ms), "src": src, "conn": int(conn), "no": int(no), "tls": tls == "1",
                        "from": frm, "rcpts": rcpts.split(",")})
        return out

    def log_lines(self):
        """The --log-file as [(unix_ms, source_ip, conn_id, [rcpt, ...])], sorted by the ms stamp."""
        out = [(r["ms"], r["src"], r["conn"], r["rcpts"]) for r in self.log_records()]
        out.sort(key=lambda x: x[0])
        return out

    def rcpts(self):
        """Every recipient the sink accepted a message for, once per message (the log lags while it runs)."""
        return [r for rec in self.log_records() for r in rec["rcpts"]]

    def final_rcpts(self):
        """Stop the sink (SIGTERM: it flushes its log) and return rcpts(); asserts it exited 0."""
        assert self.stop() == 0, "volley-sink did not exit 0 on SIGTERM"
        return self.rcpts()

    def stats(self):
        try:
            return json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            return None

    def stop(self):
        """SIGTERM; returns the exit status (the sink flushes its stats file on exit)."""
        if self.exit_status is None:
            self.exit_status = stop_process(self.proc)
            self.proc.stdout.close()
            self._stderr.close()
        return self.exit_status


# ---------------------------------------------------------------- volley.conf

# conf_text's flat keywords: the [worker] and [smtp] keys (the two sections nearly every test sets; the
# names are disjoint). Every other section is a dict keyword of its own.
WORKER_KEYS = frozenset({"threads", "hostname", "name", "batch", "max_inflight", "shutdown_ms", "max_message_bytes",
                         "max_inflight_bytes", "backend", "batch_wait_ms"})
SMTP_KEYS = frozenset({"connections", "messages_per_connection", "new_connections_per_sec", "idle_timeout_ms",
                       "timeout_ms", "connect_timeout_ms", "greeting_timeout_ms", "ehlo_timeout_ms", "mail_timeout_ms",
                       "rcpt_timeout_ms", "data_timeout_ms", "block_timeout_ms", "dot_timeout_ms",
                       "connection_max_ms", "bad_host_ms", "mx_port", "chunking"})
SECTIONS = ("redis", "worker", "smtp", "dns", "egress", "tls", "route", "retry", "queue", "events", "throttle", "warmup",
            "dkim", "feedback", "inbound", "log", "metrics")

# what every test starts from: small batches, quick SMTP timeouts, no TLS
CONF_DEFAULTS = {
    "worker": {"threads": 2, "hostname": "volley.test", "name": "itest", "batch": 64},
    "smtp": {"connections": 4, "messages_per_connection": 100, "timeout_ms": 10000},
    "tls": {"mode": "off"},
    "log": {"level": "info"},
}
# a deferred message stays deferred: no retry falls due inside a test
NO_RETRY = {"schedule": "10m"}
# presets (conf_text(preset=...)): the defaults of one family of tests, under the keywords of the call
ENGINE = {"worker": {"threads": 1, "name": "engine", "batch": 256, "shutdown_ms": 3000}, "smtp": {"timeout_ms": 5000},
          "retry": NO_RETRY, "log": {"level": "debug"}}
THROTTLE = {"worker": {"shutdown_ms": 2000}, "smtp": {"connections": 50}, "retry": {**NO_RETRY, "jitter": 0}}


def conf_text(redis_url, route=None, *, preset=None, tls=None, log=None, providers=None, prefix=PREFIX, **kw):
    """The text of a volley.conf: CONF_DEFAULTS, then preset, then the keywords (later wins).

    route: "host:port" for `* =`, a dict {domain: host:port}, or None (no [route]: direct MX).
    tls: a [tls] mode or a dict; log: a [log] level. Flat keywords are [worker] / [smtp] keys (WORKER_KEYS,
    SMTP_KEYS); redis, dns, egress, retry, queue, throttle, warmup, dkim, metrics are dicts for their sections
    ([redis] url defaults to redis_url); providers: {NAME: {key: value}} for [provider NAME].
    A value of None leaves the key out; a list value repeats the key (e.g. [dkim] key).
    The environment's VOLLEY_BACKEND (auto, io_uring, epoll) sets [worker] backend unless a keyword does, so
    the suite runs on either event loop (.ci/run's epoll pass).
    """
    secs = {name: dict(keys) for name, keys in CONF_DEFAULTS.items()}
    if os.environ.get("VOLLEY_BACKEND"):
        secs["worker"]["backend"] = os.environ["VOLLEY_BACKEND"]
    secs["redis"] = {"url": redis_url, "prefix": prefix}
    for name, keys in (preset or {}).items():
        secs.setdefault(name, {}).update(keys)
    for k, v in kw.items():
        if k in ("worker", "smtp"):
            raise TypeError(f"conf_text: pass [{k}] keys as keywords of their own, not {k}=...")
        if k in SECTIONS:
            secs.setdefault(k, {}).update(v)
        elif k in WORKER_KEYS or k in SMTP_KEYS:
            secs["worker" if k in WORKER_KEYS else "smtp"][k] = v
        else:
            raise TypeError(f"conf_text: {k} is neither a section nor a [worker] / [smtp] key")
    if route is not None:
        secs["route"] = route if isinstance(route, dict) else {"*": route}
    if tls is not None:
        secs["tls"].update(tls if isinstance(tls, dict) else {"mode": tls})
    if log is not None:
        secs["log"]["level"] = log
    for pname, keys in (providers or {}).items():
        secs[f"provider {pname}"] = keys
    lines = []
    for name in [s for s in SECTIONS if s in secs] + [s for s in secs if s not in SECTIONS]:
        lines.append(f"[{name}]")
        for k, v in secs[name].items():
            lines += [f"{k} = {x}" for x in (v if isinstance(v, list) else [v]) if x is not None]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- volley


class Volley:
    """Drives build/volley against one Redis: config, campaign, push, worker, status."""

    def __init__(self, tmp, redis_server):
        self.dir = Path(tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.redis = redis_server
        self.r = redis_server.client
        self.conf = self.dir / "volley.conf"
        self.workers = []  # Popen objects started by start_worker, killed at teardown
        self.nruns = 0

    # -- files

    def write_conf(self, route=None, file=None, **kw):
        """Write volley.conf from conf_text(self.redis.url, route, **kw); returns its path.

        file: also write the same text to <dir>/<file> (a worker process's own config) and return that path;
        volley.conf, which push, status, campaign and suppress read, always holds the last config written.
        """
        text = conf_text(self.redis.url, route, **kw)
        self.conf.write_text(text)
        if file is None:
            return self.conf
        p = self.dir / file
        p.write_text(text)
        return p

    def write_campaign(self, name="campaign.ini", cid=None, subject="Hello {{name}} [{{token}}]",
                       text="Dear {{name}},\nyour token is {{token}}.\n", html=None,
                       sender="Volley Test <news@sender.test>", headers=None, defaults=None, extra=None):
        """Write <dir>/<name>, a CAMPAIGN.ini; returns its path. cid, sender, subject: the [campaign] id, from
        and subject (None: left out); text / html: the bodies, written byte-exact (UTF-8) to files the ini
        names (None: no such part); extra: more [campaign] keys; headers / defaults: those sections."""
        keys = {"id": cid, "from": sender, "subject": subject}
        for part, body in (("txt", text), ("html", html)):
            if body is not None:
                (self.dir / f"{name}.{part}").write_bytes(body.encode())
                keys[f"{'text' if part == 'txt' else part}_file"] = f"{name}.{part}"
        keys.update(extra or {})
        lines = ["[campaign]"] + [f"{k} = {v}" for k, v in keys.items() if v is not None]
        for section, kv in (("headers", headers), ("defaults", defaults)):
            if kv:
                lines += ["", f"[{section}]"] + [f"{k} = {v}" for k, v in kv.items()]
        p = self.dir / name
        p.write_bytes(("\n".join(lines) + "\n").encode())
        return p

    def write_recipients(self, rows, name="recipients.csv", header=None):
        """Write <dir>/<name>, a CSV of rows (dicts; column `email` is the recipient); header: the columns
        (default: the keys of the first row; given, rows may be empty). Returns its path."""
        p = self.dir / name
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(header or rows[0].keys()), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        return p

    # -- commands

    def run(self, *args, timeout=CMD_TIMEOUT, input=None):
        """Run `volley ARGS...` (input: text on its stdin); returns CompletedProcess (text). A hang fails the test."""
        try:
            return subprocess.run([str(binary("volley"))] + [str(a) for a in args], capture_output=True,
                                  text=True, timeout=timeout, cwd=self.dir, input=input)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"volley {' '.join(map(str, args))} did not finish in {timeout}s; stderr: "
                        f"{(e.stderr or b'')[-2000:]!r}", pytrace=False)

    def push_rows(self, rows, name=None, timeout=CMD_TIMEOUT, **campaign):
        """Write a campaign (write_campaign keywords) and rows as <name>.ini / <name>.csv, push them;
        returns the campaign id."""
        ini = self.write_campaign(**({"name": f"{name}.ini"} if name else {}), **campaign)
        csv_path = self.write_recipients(rows, **({"name": f"{name}.csv"} if name else {}))
        return self.push(ini, csv_path, timeout=timeout)

    def push(self, campaign, recipients, timeout=CMD_TIMEOUT):
        p = self.run("push", "-c", self.conf, "--campaign", campaign, "--recipients", recipients,
                     timeout=timeout)
        assert p.returncode == 0, f"volley push exit {p.returncode}: {p.stderr.strip()}"
        cid = p.stdout.strip()
        assert cid and "\n" not in cid, f"push must print only the campaign id, got {p.stdout!r}"
        return cid

    def start_worker(self, conf=None, tag=None, exit_when_idle=False, args=(), wrap=()):
        """Start `volley worker -c conf [args]` in the background (conf: default volley.conf); the log goes to
        <dir>/<tag>.log (tag: default worker<n>). The Popen has .logpath and .name (= tag); it is SIGKILLed
        at teardown if still running. wrap: a command line the worker runs under (e.g. build/tools/no-uring)."""
        self.nruns += 1
        tag = tag or f"worker{self.nruns}"
        cmd = [*map(str, wrap), str(binary("volley")), "worker", "-c", str(conf or self.conf), *map(str, args)]
        if exit_when_idle:
            cmd.append("--exit-when-idle")
        log = self.dir / f"{tag}.log"
        with open(log, "wb") as f:
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=self.dir)
        p.logpath, p.name = log, tag
        self.workers.append(p)
        return p

    def run_worker(self, timeout=WORKER_TIMEOUT, conf=None, tag=None, expect=0, wrap=()):
        """Run `volley worker --exit-when-idle` to completion; returns a WorkerRun.

        expect: the exit status the test needs; a worker still running after timeout seconds is killed and,
        like another exit status, fails the test with the queue state and the log tail. expect=None (tests
        bounding a hostile peer): nothing is checked here, the run says timed_out. wrap: as start_worker's.
        """
        t0 = time.monotonic()
        p = self.start_worker(conf, tag, exit_when_idle=True, wrap=wrap)
        try:
            rc, timed_out = p.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            rc, timed_out = stop_process(p, signal.SIGKILL), True
        run = WorkerRun(rc, p.logpath.read_text(errors="replace"), time.monotonic() - t0, timed_out)
        if expect is not None and (timed_out or rc != expect):
            why = f"did not exit in {timeout}s" if timed_out else f"exit {rc}, expected {expect}"
            pytest.fail(f"volley worker --exit-when-idle {why}; queue: {self.queue_state()}; log tail:\n{run.tail()}",
                        pytrace=False)
        return run

    def deliver(self, addresses, timeout=WORKER_TIMEOUT):
        """Push a campaign to addresses, run a worker to completion and assert each got exactly one
        `delivered` event; returns events_by_to()."""
        self.push_rows(rows_for(addresses))
        self.run_worker(timeout)
        evs = self.events_by_to()
        assert all(one_event(evs, a)["status"] == "delivered" for a in addresses), evs
        return evs

    def wait_exit(self, p, timeout):
        """Wait for a background worker to exit; a hang fails the test with the queue state."""
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(p, signal.SIGKILL)
            pytest.fail(f"worker {p.args} did not exit in {timeout}s; queue: {self.queue_state()}; "
                        f"log tail:\n{tail(p.logpath)}", pytrace=False)

    def status(self, campaign=None):
        args = ["status", "-c", self.conf] + ([campaign] if campaign else [])
        return self.run(*args)

    # -- Redis views

    def key(self, *parts):
        return ":".join((PREFIX,) + parts)

    def events(self):
        """Every entry of <p>:events in its readable form, as `volley events` (the decoder of the stream's compact
        encoding, docs/redis-contract.md "Event fields") prints it: a dict of strings, stream id under '_id'."""
        p = self.run("events", "-c", self.conf, "--format", "jsonl")
        assert p.returncode == 0, f"volley events exit {p.returncode}: {p.stderr.strip()}"
        out = []
        for line in p.stdout.splitlines():
            e = json.loads(line)
            e["_id"] = e.pop("id")
            out.append(e)
        return out

    def events_by_to(self):
        """{recipient: [event, ...]} from <p>:events."""
        out = {}
        for e in self.events():
            out.setdefault(e.get("to"), []).append(e)
        return out

    def stats(self, cid):
        return {k: int(v) for k, v in self.r.hgetall(self.key("stats", cid)).items()}

    def dead(self):
        return [dict(f) for _id, f in self.r.xrange(self.key("dead"), "-", "+")]

    def retry_members(self):
        """[(member bytes, due ms)] of <p>:retry; members are opaque (binary) encodings of jobs."""
        return self.redis.raw.zrange(self.key("retry"), 0, -1, withscores=True)

    def in_stream(self, *parts):
        """Jobs of a stream not yet recorded: undelivered (the group's lag) + pending. XLEN is not that:
        the stream keeps recorded entries until the record script can trim them (docs/redis-contract.md)."""
        key = self.key(*(parts or ("jobs",)))
        for g in self.r.xinfo_groups(key) if self.r.exists(key) else []:
            if g["name"] in ("volley", b"volley"):
                lag = g.get("lag")
                assert lag is not None, f"lag of {key} unknown: {g}"
                return lag + g["pending"]
        return self.r.xlen(key)

    def queue_state(self):
        try:
            jobs = self.r.xlen(self.key("jobs"))
            pend = self.r.xpending(self.key("jobs"), "volley")["pending"] if jobs or self.r.exists(
                self.key("jobs")) else 0
            return {"jobs_xlen": jobs, "pending": pend, "retry": self.r.zcard(self.key("retry")),
                    "events": self.r.xlen(self.key("events"))}
        except Exception as e:  # the group may not exist yet
            return {"error": str(e)}

    def pending_by_consumer(self, stream="jobs"):
        """{consumer: pending count} of group volley on <p>:<stream>."""
        try:
            info = self.r.xinfo_consumers(self.key(stream), "volley")
        except Exception:
            return {}
        return {c["name"]: int(c["pending"]) for c in info}

    def campaign_snapshot(self, cid):
        """(stats, jobs of cid in the streams, retry-set size, held) read in one MULTI/EXEC (atomic). A stream
        entry counts when it is pending or after the group's last-delivered id: the streams also keep recorded
        entries until the record script trims them (docs/redis-contract.md, "Trimming")."""
        p = self.r.pipeline(transaction=True)
        p.hgetall(self.key("stats", cid))
        streams = (self.key("jobs"), self.key("jobs", "high"))
        for st in streams:
            p.xrange(st, "-", "+")
            p.xinfo_groups(st)
            p.xpending_range(st, "volley", "-", "+", 100000)
        p.zcard(self.key("retry"))
        p.xlen(self.key("hold", cid))
        out = p.execute()
        stats = {k: int(v) for k, v in out[0].items()}
        in_streams = 0
        for k in range(len(streams)):
            entries, groups, pending = out[1 + 3 * k:4 + 3 * k]
            last = next((g["last-delivered-id"] for g in groups if g["name"] == "volley"), "0-0")
            pend = {x["message_id"] for x in pending}
            in_streams += sum(1 for i, f in entries
                              if f.get("campaign") == cid and (i in pend or _id_key(i) > _id_key(last)))
        return stats, in_streams, out[-2], out[-1]

    def dump_bytes(self):
        """Every key and value in the Redis db as one bytes string (to search for secrets)."""
        r, parts = self.redis.raw, []
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
        return b"\n".join(parts)

    def stop(self):
        for p in self.workers:
            stop_process(p, signal.SIGKILL)


@contextlib.contextmanager
def own_volley(tmp):
    """A redis-server and a Volley driver on it in tmp, both stopped on leaving: for module-scoped runs, which
    the function-scoped redis_server / volley fixtures cannot serve."""
    redis = RedisServer(Path(tmp) / "redis")
    try:
        v = Volley(Path(tmp) / "volley", redis)
        try:
            yield v
        finally:
            v.stop()
    finally:
        redis.stop()


class WorkerRun:
    """What Volley.run_worker saw: exit status, the worker's log, seconds, whether it was killed at the bound."""

    def __init__(self, rc, log, secs, timed_out):
        self.rc, self.log, self.secs, self.timed_out = rc, log, secs, timed_out

    def __repr__(self):
        return f"WorkerRun(rc={self.rc}, secs={self.secs:.1f}, timed_out={self.timed_out})"

    def tail(self, n=40):
        return "\n".join(self.log.splitlines()[-n:])


def _id_key(i):
    ms, seq = i.split("-")
    return int(ms), int(seq)


# ---------------------------------------------------------------- recipients and results


# a worker process beats <p>:worker:<name> every second with this TTL (engine/worker.c)
HEARTBEAT_TTL_S = 5.0
# [worker] keys that spread jobs over a fleet's processes: a thread holds at most this many messages
SPREAD = {"batch": 16, "max_inflight": 32}


def make_recipients(n, domains=("example.test", "mail.example.test", "example.com"), prefix="user"):
    """n rows {email, name, token}; the token is unique per recipient and random per run."""
    rows = []
    for i in range(n):
        rows.append({
            "email": f"{prefix}{i:05d}@{domains[i % len(domains)]}",
            "name": f"Name{i:05d}",
            "token": f"T{i:05d}x{secrets.token_hex(6)}",
        })
    return rows


def message_text(msg):
    """Every text part (plain and HTML) of a parsed message, decoded, joined."""
    parts = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            parts.append(part.get_content())
    return "\n".join(parts)


def rows_for(addresses):
    """Rows {email, name, token} for the given addresses."""
    return [{"email": a, "name": f"N{i}", "token": f"T{i}x{secrets.token_hex(4)}"} for i, a in enumerate(addresses)]


def one_event(evs, to):
    """The one event of evs (Volley.events_by_to) for recipient to."""
    got = evs.get(to, [])
    assert len(got) == 1, f"expected exactly one event for {to}, got {got}"
    return got[0]


def outcome_sum(st):
    """Final outcomes of a campaign's counters (what `queued` must be covered by)."""
    return sum(st.get(k, 0) for k in ("delivered", "bounced", "failed", "cancelled", "suppressed"))


def stop_workers(procs, timeout=10.0):
    """SIGTERM each (SIGKILL after timeout); returns the exit statuses."""
    return [stop_process(p, signal.SIGTERM, timeout) for p in procs]


def log_tails(procs, n=15):
    """The last n log lines of each worker Popen (from Volley.start_worker), for failure messages."""
    return "\n".join(f"--- {p.name} (exit {p.poll()}):\n{tail(p.logpath, n)}" for p in procs)


def delivered_by(procs):
    """{worker name: (delivered, deferred) of its last `done:` log line} (workers must have exited)."""
    import re

    out = {}
    for p in procs:
        m = re.findall(r"done: delivered=(\d+) deferred=(\d+)", Path(p.logpath).read_text(errors="replace"))
        out[p.name] = (int(m[-1][0]), int(m[-1][1])) if m else None
    return out


def stale_slots(v, provider="gmail"):
    """(late, idle): rate slots of provider that expired unspent, summed over its source IPs, as the throttle
    counted them in Redis (p:thr:status:*): late = at a worker that held mail for them but ran late (a loaded
    machine), idle = at a worker that held none (slots leased for nothing)."""
    late = idle = 0
    for k in v.r.scan_iter(match=v.key("thr", "status", provider) + ":*"):
        h = v.r.hgetall(k)
        late += int(h.get("stale_late", 0))
        idle += int(h.get("stale_idle", 0))
    return late, idle


def max_in_window(times, window_ms=1000):
    """(count, start_ms) of the window [t, t + window_ms) holding the most timestamps."""
    ts = sorted(times)
    best, best_t, j = 0, None, 0
    for i, t in enumerate(ts):
        while j < len(ts) and ts[j] < t + window_ms:
            j += 1
        if j - i > best:
            best, best_t = j - i, t
    return best, best_t


def at_day_start(day_seconds, slack=0.15):
    """Sleep until `slack` seconds after the next multiple of day_seconds (a test day starts);
    returns (day index, day start ms, day end ms)."""
    now = time.time()
    start = (int(now // day_seconds) + 1) * day_seconds
    time.sleep(start + slack - now)
    return int(start // day_seconds), int(start * 1000), int((start + day_seconds) * 1000)


def utc_date(days_ago):
    import datetime

    return (datetime.datetime.now(datetime.timezone.utc).date() - datetime.timedelta(days=days_ago)).isoformat()
