"""Helpers for the fleet tests (test_fleet_*.py): several worker processes on one Redis.

  fleet_conf(volley, name, route, ...)   a volley.conf of its own for worker process `name`
                                         ([worker] name = name), with [retry] / [queue] keys
  start_named(volley, conf, tag, args=)  `volley worker -c conf [args]` in the background; killed at the
                                         volley fixture's teardown like start_worker()'s workers
  AofRedis                               a redis-server with AOF (appendfsync always) that can be
                                         killed and started again on the same port and directory
  sink_log(sink)                         volley-sink's --log-file as [(unix_ms, [rcpt, ...])]
  campaign_snapshot(volley, cid)         a campaign's counters and what is still queued, atomically
  final_rcpts(sink)                      stop the sink, then every recipient it accepted
  wait_for(pred, timeout)                poll until pred() is true

Everything binds 127.0.0.1; every process started here is stopped by a fixture teardown,
also when the test fails (see the aof_volley fixture in test_fleet_outage.py).
"""

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from volley_itest import Volley, binary, free_port, stop_process, tail, wait_for  # noqa: F401 (wait_for: for the tests)

# a worker process beats <p>:worker:<name> every second with this TTL (engine/worker.c)
HEARTBEAT_TTL_S = 5.0


def fleet_conf(volley, name, route, retry=None, queue=None, **worker):
    """Write <dir>/<name>.conf for one worker process; returns its path.

    retry / queue: dicts for the [retry] / [queue] sections. volley.conf (used by
    push, status, campaign, suppress) is left with the same Redis and sections.
    """
    extra = []
    if retry:
        extra += ["[retry]"] + [f"{k} = {v}" for k, v in retry.items()] + [""]
    if queue:
        extra += ["[queue]"] + [f"{k} = {v}" for k, v in queue.items()] + [""]
    src = volley.write_conf(route, name=name, extra="\n".join(extra) if extra else None, **worker)
    dst = volley.dir / f"{name}.conf"
    dst.write_text(Path(src).read_text())
    return dst


def start_named(volley, conf, tag, exit_when_idle=False, args=()):
    """Start `volley worker -c conf [args]` in the background; log in <dir>/<tag>.log."""
    log = volley.dir / f"{tag}.log"
    cmd = [str(binary("volley")), "worker", "-c", str(conf), *map(str, args)]
    if exit_when_idle:
        cmd.append("--exit-when-idle")
    with open(log, "wb") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=volley.dir)
    p.logpath = log
    volley.workers.append(p)  # SIGKILLed at teardown if still running
    return p


def wait_exit(volley, p, timeout):
    """Wait for a background worker to exit; a hang fails the test with the queue state."""
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(p, signal.SIGKILL)
        pytest.fail(f"worker {p.args} did not exit in {timeout}s; queue: {volley.queue_state()}; "
                    f"log tail:\n{tail(p.logpath)}", pytrace=False)


def pending_by_consumer(volley, stream="jobs"):
    """{consumer: pending count} of group volley on <p>:<stream>."""
    try:
        info = volley.r.xinfo_consumers(volley.key(stream), "volley")
    except Exception:
        return {}
    return {c["name"]: int(c["pending"]) for c in info}


def sink_log(sink):
    """volley-sink's log: [(unix_ms, [rcpt, ...])], one per accepted message, sorted by time.

    A running sink's log lags a little (VolleySink.log_lines); for final counts use final_rcpts(),
    which stops the sink first.
    """
    return [(t, rcpts) for t, _src, _conn, rcpts in sink.log_lines()]


def sink_rcpts(sink):
    """Every recipient volley-sink accepted a message for, once per message."""
    return [r for _ms, rcpts in sink_log(sink) for r in rcpts]


def final_rcpts(sink):
    """Stop volley-sink (SIGTERM: it flushes its log) and return every recipient it accepted."""
    assert sink.stop() == 0, "volley-sink did not exit 0 on SIGTERM"
    return sink_rcpts(sink)


def outcome_sum(st):
    """Final outcomes of a campaign's counters (what `queued` must be covered by)."""
    return sum(st.get(k, 0) for k in ("delivered", "bounced", "failed", "cancelled", "suppressed"))


def campaign_snapshot(volley, cid):
    """(stats, jobs of cid in the streams, retry-set size, held) read in one MULTI/EXEC (atomic)."""
    p = volley.r.pipeline(transaction=True)
    p.hgetall(volley.key("stats", cid))
    p.xrange(volley.key("jobs"), "-", "+")
    p.xrange(volley.key("jobs", "high"), "-", "+")
    p.zcard(volley.key("retry"))
    p.xlen(volley.key("hold", cid))
    stats, jobs, high, retry, held = p.execute()
    stats = {k: int(v) for k, v in stats.items()}
    in_streams = sum(1 for _id, f in jobs + high if f.get("campaign") == cid)
    return stats, in_streams, retry, held


class AofRedis:
    """redis-server with `--appendonly yes --appendfsync always`; kill() and start() keep port and data.

    Quacks like volley_itest.RedisServer (url, client, raw, stop) so Volley can drive it.
    """

    def __init__(self, tmp):
        import redis

        self.dir = Path(tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "redis.log"
        self.proc = None
        self.port = free_port()
        self.start()
        self.client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
        self.raw = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=False)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout=10.0):
        import redis

        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir),
                "--logfile", str(self.log), "--daemonize", "no", "--protected-mode", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if c.ping():
                        return
                except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                    time.sleep(0.05)
        finally:
            c.close()
        raise RuntimeError("redis-server (AOF) did not start: " + tail(self.log))

    def kill(self):
        """An outage: SIGKILL (with appendfsync always every acknowledged write is on disk)."""
        stop_process(self.proc, signal.SIGKILL)

    def stop(self):
        for c in (self.client, self.raw):
            try:
                c.close()
            except Exception:
                pass
        if self.proc is not None:
            stop_process(self.proc)


def make_volley(tmp, redis_server):
    """A Volley driver on any redis server object (teardown: volley.stop())."""
    return Volley(Path(tmp), redis_server)


class ScriptedSmtp:
    """aiosmtpd on loopback whose RCPT answer is decided per attempt by rule(addr, n).

    rule(address, n) -> None to accept, or a reply line ("451 4.3.0 ...") to refuse; n counts
    the RCPTs seen for that address (1 on the first). Every RCPT is logged in .rcpts as
    (monotonic s, wall ms, address, reply or "250"), every accepted message in .messages.
    """

    def __init__(self, rule):
        import threading

        from aiosmtpd.controller import Controller

        self.rule = rule
        self.lock = threading.Lock()
        self.seen = Counter()
        self.rcpts = []
        self.messages = []
        owner = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                with owner.lock:
                    owner.seen[address.lower()] += 1
                    n = owner.seen[address.lower()]
                reply = owner.rule(address.lower(), n)
                with owner.lock:
                    owner.rcpts.append((time.monotonic(), int(time.time() * 1000), address.lower(), reply or "250"))
                if reply:
                    return reply
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 OK"

            async def handle_DATA(self, server, session, envelope):
                with owner.lock:
                    owner.messages.append((int(time.time() * 1000), list(envelope.rcpt_tos)))
                return "250 2.0.0 OK queued"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     server_hostname="mx.scripted.test", ready_timeout=10)
        self.controller.start()

    @property
    def hostport(self):
        return f"127.0.0.1:{self.port}"

    def received(self):
        with self.lock:
            return [r for _ms, rc in self.messages for r in rc]

    def stop(self):
        try:
            self.controller.stop()
        except Exception:
            pass
