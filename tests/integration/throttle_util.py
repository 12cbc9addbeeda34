"""Helpers for the throttle end-to-end tests (test_throttle_*.py): a fleet of worker processes on one Redis.

  throttle_conf(v, name, routes, ...)   <dir>/<name>.conf for worker process `name` ([worker] name = name),
                                        with [smtp], [egress], [retry], [throttle], [warmup] and
                                        [provider NAME] sections; v.conf (push, status, warmup) gets the same
  start_workers(v, names)               one `volley worker -c <name>.conf` process per name, in the
                                        background; SIGKILLed at the volley fixture's teardown
  stop_workers(procs)                   SIGTERM each (then SIGKILL), returns the exit statuses
  sink_lines(sink)                      volley-sink's --log-file as [(unix_ms, source_ip, conn_id, [rcpt, ...])]
  max_in_window(times, ms)              the most timestamps in any window [t, t + ms) (sliding)
  rate_between(times, t0, t1)           messages per second among times in [t0, t1)
  wait_for(pred, timeout)               poll until pred() is truthy
  at_day_start(day_seconds)             sleep until just after a test-day boundary (epoch multiples)

Everything binds loopback addresses; every process started here is stopped by a fixture
teardown, also when a test fails.
"""

import datetime
import signal
import subprocess
import time
from pathlib import Path

from volley_itest import PREFIX, binary, stop_process, wait_for  # noqa: F401 (wait_for: for the tests)


def _section(name, keys):
    return [f"[{name}]"] + [f"{k} = {val}" for k, val in keys.items()] + [""]


def throttle_conf(v, name, routes, *, threads=2, worker_extra=None, smtp=None, egress=None, retry=None, throttle=None,
                  warmup=None, providers=None, log="info"):
    """Write <dir>/<name>.conf (and v.conf with the same content); returns the path.

    routes: {domain: host:port}. providers: {NAME: {key: value}} for [provider NAME].
    Retries never fall due inside a test unless `retry` says otherwise.
    """
    w = {"threads": threads, "hostname": "volley.test", "name": name, "batch": 64, "shutdown_ms": 2000}
    w.update(worker_extra or {})
    s = {"connections": 50, "messages_per_connection": 100, "timeout_ms": 10000}
    s.update(smtp or {})
    r = {"schedule": "10m", "jitter": 0}
    r.update(retry or {})
    lines = ["[redis]", f"url = {v.redis.url}", f"prefix = {PREFIX}", ""]
    lines += _section("worker", w) + _section("smtp", s)
    if egress:
        lines += _section("egress", egress)
    lines += _section("tls", {"mode": "off"}) + _section("route", routes) + _section("retry", r)
    lines += _section("queue", {"claim_idle": "5m"})
    if throttle:
        lines += _section("throttle", throttle)
    if warmup:
        lines += _section("warmup", warmup)
    for pname, keys in (providers or {}).items():
        lines += _section(f"provider {pname}", keys)
    lines += _section("log", {"level": log})
    text = "\n".join(lines)
    v.conf.write_text(text)
    p = v.dir / f"{name}.conf"
    p.write_text(text)
    return p


def start_worker_named(v, name, exit_when_idle=False):
    """`volley worker -c <dir>/<name>.conf` in the background; log in <dir>/<name>.log."""
    log = v.dir / f"{name}.log"
    cmd = [str(binary("volley")), "worker", "-c", str(v.dir / f"{name}.conf")]
    if exit_when_idle:
        cmd.append("--exit-when-idle")
    with open(log, "wb") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=v.dir)
    p.logpath = log
    p.name = name
    v.workers.append(p)  # SIGKILLed at the volley fixture's teardown if still running
    return p


def start_workers(v, names, exit_when_idle=False):
    return [start_worker_named(v, n, exit_when_idle) for n in names]


def stop_workers(procs, timeout=10.0):
    return [stop_process(p, signal.SIGTERM, timeout) for p in procs]


def log_tails(procs, n=15):
    out = []
    for p in procs:
        try:
            lines = Path(p.logpath).read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        out.append(f"--- {p.name} (exit {p.poll()}):\n" + "\n".join(lines[-n:]))
    return "\n".join(out)


def sink_lines(sink):
    """volley-sink's log: [(unix_ms, source_ip, conn_id, [rcpt, ...])] sorted by time."""
    return sink.log_lines()


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


def rate_between(times, t0, t1):
    n = sum(1 for t in times if t0 <= t < t1)
    return n / ((t1 - t0) / 1000.0) if t1 > t0 else 0.0


def at_day_start(day_seconds, slack=0.15):
    """Sleep until `slack` seconds after the next multiple of day_seconds (a test day starts);

    returns (day index, day start ms, day end ms)."""
    now = time.time()
    start = (int(now // day_seconds) + 1) * day_seconds
    time.sleep(start + slack - now)
    return int(start // day_seconds), int(start * 1000), int((start + day_seconds) * 1000)


def utc_date(days_ago):
    return (datetime.datetime.now(datetime.timezone.utc).date() - datetime.timedelta(days=days_ago)).isoformat()


def gmail_rows(n, prefix="user", domain="gmail.com"):
    import secrets

    return [{"email": f"{prefix}{i:05d}@{domain}", "name": f"N{i}", "token": f"T{i}x{secrets.token_hex(4)}"}
            for i in range(n)]


def push(v, rows, name="c"):
    return v.push(v.write_campaign(name=f"{name}.ini"), v.write_recipients(rows, name=f"{name}.csv"))


# a worker thread holds at most this many messages: the jobs spread over the fleet's processes
SPREAD = {"batch": 16, "max_inflight": 32}


def delivered_by(procs):
    """{worker name: delivered=N from its last `done:` log line} (workers must have exited)."""
    import re

    out = {}
    for p in procs:
        text = Path(p.logpath).read_text(errors="replace")
        m = re.findall(r"done: delivered=(\d+) deferred=(\d+)", text)
        out[p.name] = (int(m[-1][0]), int(m[-1][1])) if m else None
    return out
