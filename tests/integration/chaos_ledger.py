"""
NAME
    chaos_ledger - a fleet under faults, then a ledger: every job has exactly one final outcome

SYNOPSIS
    make chaos                                        200,000 recipients (CHAOS_RECIPIENTS to change)
    VOLLEY_BUILD=build CHAOS_RECIPIENTS=20000 /usr/bin/python3 tests/integration/chaos_ledger.py [DIR]
    run_chaos(tmp, n, ...) -> ledger dict            (tests/integration/test_chaos.py: the small variant)

DESCRIPTION
    Three `volley worker` processes started from one config file (no name: each claims <host>-<n>)
    send one campaign to volley-sink on loopback. The sink misbehaves the way real receivers do:
    it defers a share of messages at the final dot (--defer-percent), drops the connection without
    a reply for another share (--drop-percent: the message is not accepted), closes connections
    after a few messages (--421-after), and rejects one recipient in 97 (--reject-rcpt: bounced).
    One recipient in 101 is on the suppression list. Meanwhile one worker, chosen at random, is
    SIGKILLed and restarted every 5-10 s, and Redis (AOF, appendfsync always) is SIGKILLed and
    restarted once, when about 40% of the recipients have a final outcome. When every recipient
    has one, the workers get SIGTERM and the ledger is checked from the sink's log and the
    <p>:events stream:
      - every recipient has exactly one final outcome (delivered, bounced, failed, cancelled,
        suppressed or expired) among the events not marked duplicate;
      - every delivered recipient reached the sink at least once;
      - the duplicates at the sink are at most the campaign's `reclaimed` counter: the jobs that
        may have been sent twice (taken over from a dead worker, or resumed by a restarted worker
        from its own name's pending list);
      - the campaign counters equal the final outcomes counted from the events, and add up to
        the recipients; nothing is left queued, pending or waiting for a retry.
    Workers are only ever SIGKILLed (a stalled worker, SIGSTOP, is a different test).

    Everything binds 127.0.0.1; every process started is stopped at the end, also on failure.
"""

import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: volley_itest

from volley_itest import RedisServer, Volley, VolleySink, stop_process, tail  # noqa: E402

FINAL = ("delivered", "bounced", "failed", "cancelled", "suppressed", "expired")
DOMAINS = ("chaos.test", "mail.chaos.test", "chaos.example")


class ChaosError(AssertionError):
    pass


def recipients(n):
    """n rows; one in 97 is rejected by the sink (bounce*), one in 101 is suppressed (supp*)."""
    rows = []
    for i in range(n):
        kind = "bounce" if i % 97 == 5 else "supp" if i % 101 == 7 else "r"
        rows.append({"email": f"{kind}{i:07d}@{DOMAINS[i % len(DOMAINS)]}", "name": f"N{i}"})
    return rows


def _try(fn, default=None):
    """A Redis read that may hit the restart window."""
    import redis

    try:
        return fn()
    except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError, redis.exceptions.TimeoutError):
        return default


def _finals(st):
    # expired jobs are bounced with an `expired` mark: they are counted in bounced and in expired
    return sum(st.get(k, 0) for k in FINAL if k != "expired")


def _events(volley):
    """Every event, readable (volley events decodes the stream's compact form)."""
    return volley.events()


def run_chaos(tmp, n, threads=1, delay_ms=2, kill_every=(5.0, 10.0), redis_restart_at=0.4, timeout_s=1800,
              seed=None, log=print):
    """Run the fleet under faults until every recipient has a final outcome; return the ledger."""
    tmp = Path(tmp)
    rnd = random.Random(seed)
    redis_srv = RedisServer(tmp / "redis", aof=True)
    volley = Volley(tmp / "volley", redis_srv)
    sink = VolleySink(tmp / "sink", maildir=False,
                      args=("--threads", "2", "--delay-ms", str(delay_ms), "--defer-percent", "3",
                            "--drop-percent", "2", "--421-after", "40", "--reject-rcpt", "bounce*@*"))
    workers = []
    try:
        conf = volley.write_conf(sink.hostport, file="chaos.conf", name="chaos", threads=threads, connections=4,
                                 batch=64, max_inflight=256, shutdown_ms=2000, queue={"claim_idle": "10s"},
                                 retry={"schedule": "1s", "jitter": "0"})
        conf.write_text("".join(ln for ln in conf.read_text().splitlines(True) if not ln.startswith("name =")))
        rows = recipients(n)
        supp = [r["email"] for r in rows if r["email"].startswith("supp")]
        if supp:
            volley.r.sadd(volley.key("suppressed"), *supp)
        t_push = time.monotonic()
        cid = volley.push(volley.write_campaign(), volley.write_recipients(rows), timeout=max(60, n // 500))
        log(f"chaos: pushed {n} recipients in {time.monotonic() - t_push:.1f}s; campaign {cid}")

        seq = 0

        def start():
            nonlocal seq
            seq += 1
            return volley.start_worker(conf, f"worker{seq}")

        workers = [start() for _ in range(3)]
        t0 = time.monotonic()
        next_kill = t0 + rnd.uniform(*kill_every)
        kills, redis_restarts, self_exits = 0, 0, []
        last_report = t0
        while True:
            now = time.monotonic()
            st = _try(lambda: volley.stats(cid), {})
            done = _finals(st)
            if done >= n:
                q = _try(lambda: (volley.r.xlen(volley.key("jobs")), volley.r.zcard(volley.key("retry"))))
                if q == (0, 0):
                    break
            if now - t0 > timeout_s:
                raise ChaosError(f"not done after {timeout_s}s: {st}; queue {volley.queue_state()}")
            for i, w in enumerate(workers):
                if w.poll() is not None:  # exited by itself (e.g. its name was taken): noted, restarted
                    if w.returncode == 2:
                        raise ChaosError(f"worker refused to start:\n{tail(w.logpath)}")
                    self_exits.append((w.returncode, tail(w.logpath, 3)))
                    workers[i] = start()
            if now >= next_kill:
                i = rnd.randrange(len(workers))
                workers[i].send_signal(signal.SIGKILL)
                workers[i].wait()
                workers[i] = start()
                kills += 1
                next_kill = now + rnd.uniform(*kill_every)
            if redis_restarts == 0 and done >= redis_restart_at * n:
                log(f"chaos: restarting redis at {done}/{n} final outcomes")
                redis_srv.kill()
                time.sleep(1.0)
                redis_srv.start()
                redis_restarts += 1
            if now - last_report >= 10:
                log(f"chaos: {now - t0:.0f}s {done}/{n} final, {kills} kills, stats {st}")
                last_report = now
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        exits = [stop_process(w, signal.SIGTERM, timeout=30) for w in workers]
        sink.stop()
        return ledger(volley, sink, cid, rows, workers_seen=seq, kills=kills, redis_restarts=redis_restarts,
                      self_exits=self_exits, exits=exits, elapsed=elapsed, logs=sorted(volley.dir.glob("worker*.log")))
    finally:
        for w in volley.workers:
            stop_process(w, signal.SIGKILL)
        sink.stop()
        redis_srv.stop()


def ledger(volley, sink, cid, rows, **run):
    """Check the run against the sink's log and the events stream; returns the figures, raises on a break."""
    want = {r["email"].lower() for r in rows}
    finals, outcome, dup_events, deferred = Counter(), {}, 0, 0
    for e in _events(volley):
        if e.get("duplicate") == "1":
            dup_events += 1  # a late outcome of a job recorded already: counted nowhere
            continue
        st, to = e.get("status"), e.get("to", "").lower()
        if st == "deferred":
            deferred += 1
        elif st in FINAL:
            finals[to] += 1
            outcome[to] = "expired" if e.get("expired") == "1" else st
    at_sink = Counter(r.lower() for rec in sink.log_records() for r in rec["rcpts"])
    st = volley.stats(cid)
    by_outcome = Counter(outcome.values())
    dups = sum(c - 1 for c in at_sink.values())
    figures = {
        "recipients": len(want), "final": sum(by_outcome.values()),
        **{k: by_outcome.get(k, 0) for k in FINAL},
        "deferred_attempts": deferred, "duplicate_events": dup_events,
        "sink_messages": sum(at_sink.values()), "sink_duplicates": dups,
        "reclaimed": st.get("reclaimed", 0),
        "kills": run["kills"], "redis_restarts": run["redis_restarts"], "worker_processes": run["workers_seen"],
        "self_exits": len(run["self_exits"]), "exit_codes": run["exits"], "elapsed_s": round(run["elapsed"], 1),
    }
    problems = []
    missing = sorted(want - set(finals))
    if missing:
        problems.append(f"{len(missing)} recipients without a final outcome, e.g. {missing[:5]}")
    multi = sorted(r for r, c in finals.items() if c > 1)
    if multi:
        problems.append(f"{len(multi)} recipients with more than one final outcome, e.g. {multi[:5]}")
    extra = sorted(set(finals) - want)
    if extra:
        problems.append(f"final outcomes for unknown recipients: {extra[:5]}")
    lost = sorted(r for r, o in outcome.items() if o == "delivered" and at_sink[r] == 0)
    if lost:
        problems.append(f"{len(lost)} recorded delivered but never reached the sink, e.g. {lost[:5]}")
    if dups > figures["reclaimed"]:
        problems.append(f"{dups} duplicates at the sink > reclaimed {figures['reclaimed']}")
    for k in ("delivered", "cancelled", "suppressed", "failed"):
        if st.get(k, 0) != by_outcome.get(k, 0):
            problems.append(f"counter {k} = {st.get(k, 0)}, events say {by_outcome.get(k, 0)}")
    if st.get("bounced", 0) != by_outcome.get("bounced", 0) + by_outcome.get("expired", 0):
        problems.append(f"counter bounced = {st.get('bounced', 0)}, events say bounced + expired "
                        f"{by_outcome.get('bounced', 0) + by_outcome.get('expired', 0)}")
    if st.get("expired", 0) != by_outcome.get("expired", 0):
        problems.append(f"counter expired = {st.get('expired', 0)}, events say {by_outcome.get('expired', 0)}")
    if st.get("queued") != len(rows) or _finals(st) != len(rows):
        problems.append(f"counters do not add up to {len(rows)} recipients: {st}")
    q = volley.queue_state()
    if q.get("jobs_xlen") or q.get("pending") or q.get("retry"):
        problems.append(f"work left in Redis: {q}")
    bad_exits = [c for c in run["exits"] if c not in (0, 1)]
    if bad_exits:
        problems.append(f"workers exited {bad_exits} on SIGTERM")
    figures["problems"] = problems
    return figures


def summary(f):
    """The ledger as a few printable lines."""
    lines = [
        f"chaos ledger: {f['recipients']} recipients, {f['final']} final outcomes in {f['elapsed_s']}s "
        f"({f['kills']} worker kills, {f['redis_restarts']} redis restart, {f['worker_processes']} worker processes, "
        f"{f['self_exits']} exited by themselves)",
        "  " + " ".join(f"{k}={f[k]}" for k in FINAL),
        f"  deferred attempts={f['deferred_attempts']} duplicate (late) events={f['duplicate_events']}",
        f"  sink: messages={f['sink_messages']} duplicates={f['sink_duplicates']} "
        f"(bound: reclaimed={f['reclaimed']})",
        f"  worker exit codes at the end: {f['exit_codes']}",
    ]
    lines += [f"  PROBLEM: {p}" for p in f["problems"]] or ["  ledger OK"]
    return "\n".join(lines)


def main():
    import tempfile

    n = int(os.environ.get("CHAOS_RECIPIENTS", "200000"))
    tmp = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="volley-chaos-"))
    print(f"chaos: {n} recipients, work dir {tmp}", flush=True)
    f = run_chaos(tmp, n, seed=int(os.environ["CHAOS_SEED"]) if "CHAOS_SEED" in os.environ else None,
                  log=lambda s: print(s, flush=True))
    print(summary(f))
    return 1 if f["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
