"""Helpers for volley's end-to-end tests: real servers on loopback only.

Everything a test starts (redis-server, aiosmtpd receivers, volley-sink,
volley workers) binds 127.0.0.1 on a port chosen at run time and is stopped
in the fixture's teardown, also when the test fails. Every volley process runs
with a timeout so a hang fails the test instead of hanging the suite.

The fixtures wrapping these are in conftest.py.
"""

import csv
import email
import email.policy
import fnmatch
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
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
    """extra_args(port): more redis-server arguments (later ones win); client_kw: for the redis-py clients."""

    def __init__(self, tmp, appendonly=False, extra_args=lambda port: [], client_kw=None):
        import redis  # python3-redis (scripts/deps.sh)

        self.dir = Path(tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "redis.log"
        for _attempt in range(5):
            self.port = free_port()
            args = [
                "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--save", "", "--appendonly", "yes" if appendonly else "no",
                "--dir", str(self.dir), "--logfile", str(self.log),
                "--daemonize", "no", "--protected-mode", "no",
            ] + extra_args(self.port)
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, **(client_kw or {}))
            # for values that are not text (the retry set holds binary-encoded jobs)
            self.raw = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=False, **(client_kw or {}))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if self.client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)
            stop_process(self.proc)  # lost the port race or failed: try another port
        raise RuntimeError("redis-server did not start: " + tail(self.log))

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def stop(self):
        for c in (self.client, self.raw):
            try:
                c.close()
            except Exception:
                pass
        stop_process(self.proc)


# ---------------------------------------------------------------- TLS


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
        o = self.owner
        if any(fnmatch.fnmatchcase(address.lower(), g) for g in o.reject):
            with o.lock:
                o.rejected.append(address)
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if any(fnmatch.fnmatchcase(address.lower(), g) for g in o.defer):
            with o.lock:
                o.deferred.append(address)
            return "450 4.2.1 <%s>: The user you are trying to contact is receiving mail too quickly" % address
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

    reject / defer: lists of fnmatch globs on the (lower-cased) recipient,
    answered 550 5.1.1 and 450 4.2.1.
    """

    def __init__(self, cert=None, require_tls=False, reject=(), defer=()):
        from aiosmtpd.controller import Controller
        import ssl

        self.lock = threading.Lock()
        self.messages = []
        self.rejected = []
        self.deferred = []
        self.ehlos = 0
        self.reject = [g.lower() for g in reject]
        self.defer = [g.lower() for g in defer]
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

    @property
    def hostport(self):
        return f"127.0.0.1:{self.port}"

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait_count(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return True
            time.sleep(0.05)
        return False

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

    def stats(self):
        import json

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

    SMTP_KEYS = {"connections", "messages_per_connection", "new_connections_per_sec", "idle_timeout_ms", "timeout_ms"}

    def write_conf(self, route, tls="off", threads=2, name="itest", extra=None, log="info", **worker):
        """route: "host:port" for `* =`, or a dict {domain: host:port}; keys of SMTP_KEYS go to [smtp]."""
        routes = route if isinstance(route, dict) else {"*": route}
        w = {"threads": threads, "hostname": "volley.test", "name": name, "batch": 64}
        s = {"connections": 4, "messages_per_connection": 100, "timeout_ms": 10000}
        for k, v in worker.items():
            (s if k in self.SMTP_KEYS else w)[k] = v
        lines = ["[redis]", f"url = {self.redis.url}", f"prefix = {PREFIX}", "", "[worker]"]
        lines += [f"{k} = {v}" for k, v in w.items()]
        lines += ["", "[smtp]"] + [f"{k} = {v}" for k, v in s.items()]
        lines += ["", "[route]"] + [f"{d} = {hp}" for d, hp in routes.items()]
        lines += ["", "[tls]", f"mode = {tls}", "", "[log]", f"level = {log}", ""]
        if extra:
            lines.append(extra)
        self.conf.write_text("\n".join(lines) + "\n")
        return self.conf

    def write_campaign(self, name="campaign.ini", cid=None, subject="Hello {{name}} [{{token}}]",
                       text="Dear {{name}},\nyour token is {{token}}.\n", html=None,
                       sender="Volley Test <news@sender.test>", headers=None, defaults=None, extra=None):
        lines = ["[campaign]"]
        if cid:
            lines.append(f"id = {cid}")
        lines.append(f"from = {sender}")
        lines.append(f"subject = {subject}")
        if text is not None:
            (self.dir / (name + ".txt")).write_text(text)
            lines.append(f"text_file = {name}.txt")
        if html is not None:
            (self.dir / (name + ".html")).write_text(html)
            lines.append(f"html_file = {name}.html")
        if extra:
            lines += [f"{k} = {v}" for k, v in extra.items()]
        if headers:
            lines += ["", "[headers]"] + [f"{k} = {v}" for k, v in headers.items()]
        if defaults:
            lines += ["", "[defaults]"] + [f"{k} = {v}" for k, v in defaults.items()]
        p = self.dir / name
        p.write_text("\n".join(lines) + "\n")
        return p

    def write_recipients(self, rows, name="recipients.csv"):
        """rows: list of dicts sharing keys; column `email` is the recipient."""
        p = self.dir / name
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        return p

    # -- commands

    def run(self, *args, timeout=CMD_TIMEOUT):
        """Run `volley ARGS...`; returns CompletedProcess (text). A hang fails the test."""
        try:
            return subprocess.run([str(binary("volley"))] + [str(a) for a in args], capture_output=True,
                                  text=True, timeout=timeout, cwd=self.dir)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"volley {' '.join(map(str, args))} did not finish in {timeout}s; stderr: "
                        f"{(e.stderr or b'')[-2000:]!r}", pytrace=False)

    def push(self, campaign, recipients, timeout=CMD_TIMEOUT):
        p = self.run("push", "-c", self.conf, "--campaign", campaign, "--recipients", recipients,
                     timeout=timeout)
        assert p.returncode == 0, f"volley push exit {p.returncode}: {p.stderr.strip()}"
        cid = p.stdout.strip()
        assert cid and "\n" not in cid, f"push must print only the campaign id, got {p.stdout!r}"
        return cid

    def _worker_cmd(self, exit_when_idle):
        cmd = [str(binary("volley")), "worker", "-c", str(self.conf)]
        if exit_when_idle:
            cmd.append("--exit-when-idle")
        return cmd

    def worker(self, timeout=WORKER_TIMEOUT):
        """Run `volley worker --exit-when-idle` to completion; returns (returncode, stderr text, seconds)."""
        self.nruns += 1
        log = self.dir / f"worker{self.nruns}.log"
        t0 = time.monotonic()
        with open(log, "wb") as f:
            p = subprocess.Popen(self._worker_cmd(True), stdout=f, stderr=subprocess.STDOUT, cwd=self.dir)
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                pytest.fail(f"volley worker --exit-when-idle did not exit in {timeout}s; "
                            f"queue: {self.queue_state()}; log tail:\n{tail(log)}", pytrace=False)
        return rc, log.read_text(errors="replace"), time.monotonic() - t0

    def start_worker(self, exit_when_idle=False):
        """Start a worker in the background (killed at teardown)."""
        self.nruns += 1
        log = self.dir / f"worker{self.nruns}.log"
        f = open(log, "wb")
        p = subprocess.Popen(self._worker_cmd(exit_when_idle), stdout=f, stderr=subprocess.STDOUT, cwd=self.dir)
        f.close()
        p.logpath = log
        self.workers.append(p)
        return p

    def status(self, campaign=None):
        args = ["status", "-c", self.conf] + ([campaign] if campaign else [])
        return self.run(*args)

    # -- Redis views

    def key(self, *parts):
        return ":".join((PREFIX,) + parts)

    def events(self):
        """Every entry of <p>:events as a dict (stream id under '_id')."""
        out = []
        for eid, fields in self.r.xrange(self.key("events"), "-", "+"):
            fields = dict(fields)
            fields["_id"] = eid
            out.append(fields)
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

    def stop(self):
        for p in self.workers:
            stop_process(p, signal.SIGKILL)


# ---------------------------------------------------------------- recipients


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


