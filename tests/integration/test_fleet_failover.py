"""
NAME
    test_fleet_failover - at-least-once delivery across a fleet of worker processes

DESCRIPTION
    Three `volley worker` processes (names fa, fb, fc; two threads each) share one redis-server and
    send 8,000 messages to volley-sink, which holds each reply batch a few ms so the run lasts
    seconds. Worker fc is SIGKILLed once about a quarter has arrived and is never restarted. The
    survivors (--exit-when-idle) wait for fc's pending jobs whether or not their own share is done,
    so a longer run only delays the take-over.

    What a user must be able to rely on:
    - every recipient receives the message at least once;
    - the jobs fc held (pending in Redis at the kill) are taken over by the survivors only after
      fc's heartbeat <p>:worker:fc expired (5 s TTL): while it lives its pending count never drops;
    - duplicates (a recipient received twice) are counted: the campaign's `reclaimed` counter is an
      upper bound on them, and it is small: at most what fc could hold (threads x max_inflight);
    - Redis records exactly one delivered event per job, stats delivered = 8,000, nothing pending.

    SIGTERM (test_sigterm_finishes_in_flight_then_restart): a worker sending to a slow sink gets
    SIGTERM mid-run; it exits 0 within [worker] shutdown_ms plus a small margin, leaving the jobs it had
    not started pending; a restarted worker of the same name delivers the rest. Nothing is lost, and a
    recipient received twice only if its job was in flight (pending) at the signal.
"""

import signal
import time
from collections import Counter

from volley_itest import HEARTBEAT_TTL_S, make_recipients, stop_process, tail, wait_for


N = 8000
THREADS = 2
MAX_INFLIGHT = 64


def test_three_workers_one_sigkilled(volley, volley_sink):
    sink = volley_sink("--delay-ms", "3", "--threads", "4")
    rows = make_recipients(N)
    confs = {name: volley.write_conf(sink.hostport, file=f"{name}.conf", name=name, threads=THREADS, connections=4,
                                     batch=32, max_inflight=MAX_INFLIGHT, queue={"claim_idle": "10s"})
             for name in ("fa", "fb", "fc")}
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows), timeout=30)
    assert volley.stats(cid)["queued"] == N

    t0 = time.monotonic()
    survivors = [volley.start_worker(confs[n], n, exit_when_idle=True) for n in ("fa", "fb")]
    victim = volley.start_worker(confs["fc"], "fc")
    hb = volley.key("worker", "fc")
    assert wait_for(lambda: volley.r.exists(hb), 10), f"fc never beat its heartbeat:\n{tail(victim.logpath)}"

    # kill fc once it is busy: about a quarter of the run delivered, fc holding jobs
    fc_consumers = [f"fc-{i}" for i in range(THREADS)]

    def fc_pending():
        p = volley.pending_by_consumer()
        return sum(p.get(c, 0) for c in fc_consumers)

    assert wait_for(lambda: len(sink.rcpts()) >= N // 4 and fc_pending() > 0, 60), (
        f"run did not get going: {len(sink.rcpts())} received, fc pending {fc_pending()}; "
        f"fc log:\n{tail(victim.logpath)}")
    assert victim.poll() is None, f"fc exited early ({victim.returncode}):\n{tail(victim.logpath)}"
    stop_process(victim, signal.SIGKILL)
    t_kill = time.monotonic()
    pending_at_kill = fc_pending()
    received_at_kill = len(sink.rcpts())
    assert 0 < received_at_kill < N, f"{received_at_kill} received at the kill: the run was not interrupted"
    assert 0 < pending_at_kill <= THREADS * MAX_INFLIGHT, pending_at_kill

    # while fc's heartbeat lives, nobody touches its jobs; after it expires the survivors take them
    dropped_while_alive = None
    t_hb_gone = t_taken = None
    deadline = t_kill + HEARTBEAT_TTL_S + 20
    while time.monotonic() < deadline:
        alive = volley.r.exists(hb)
        p = fc_pending()
        now = time.monotonic()
        if alive and p < pending_at_kill and dropped_while_alive is None:
            dropped_while_alive = (now - t_kill, p)
        if not alive and t_hb_gone is None:
            t_hb_gone = now
        if p == 0:
            t_taken = now
            break
        time.sleep(0.05)
    assert dropped_while_alive is None, (
        f"fc's pending jobs were claimed {dropped_while_alive[0]:.2f}s after the kill while its heartbeat "
        f"still lived (pending {pending_at_kill} -> {dropped_while_alive[1]})")
    assert t_taken is not None, (f"fc's {pending_at_kill} pending jobs were not taken over within "
                                 f"{HEARTBEAT_TTL_S + 20:.0f}s of the kill (heartbeat gone: {t_hb_gone is not None})")
    assert t_hb_gone is not None and t_taken - t_kill >= 1.0, (t_taken - t_kill)

    for w in survivors:
        rc = volley.wait_exit(w, 120)
        assert rc == 0, f"survivor exit {rc}:\n{tail(w.logpath)}"
    elapsed = time.monotonic() - t0
    logs = "".join(open(w.logpath, errors="replace").read() for w in survivors)
    assert "took over" in logs, "no survivor logged taking over fc's jobs"

    got = sink.final_rcpts()
    counts = Counter(got)
    want = {r["email"] for r in rows}
    missing = want - set(counts)
    assert not missing, f"{len(missing)} recipients never received their message, e.g. {sorted(missing)[:5]}"
    assert set(counts) == want, f"unexpected recipients: {sorted(set(counts) - want)[:5]}"
    dups = len(got) - len(counts)
    st = volley.stats(cid)
    reclaimed = st.get("reclaimed", 0)
    assert reclaimed <= pending_at_kill <= THREADS * MAX_INFLIGHT, (reclaimed, pending_at_kill, st)
    assert dups <= reclaimed, (f"{dups} recipients received twice but only {reclaimed} jobs were counted "
                               f"reclaimed ({pending_at_kill} pending on fc at the kill); stats {st}")
    assert max(counts.values()) <= 2, counts.most_common(3)

    ev = [e for e in volley.events() if e["status"] == "delivered"]
    firsts = [e for e in ev if e.get("duplicate") != "1"]
    assert len(firsts) == N and len({e["job"] for e in firsts}) == N, f"{len(firsts)} delivered events for {N} jobs"
    assert st.get("delivered") == N and st.get("queued") == N, st
    for k in ("bounced", "failed", "cancelled", "suppressed"):
        assert st.get(k, 0) == 0, st
    assert volley.r.xpending(volley.key("jobs"), "volley")["pending"] == 0
    assert volley.r.xlen(volley.key("jobs")) == 0
    print(f"{N} in {elapsed:.1f}s; fc killed at {received_at_kill} received with {pending_at_kill} pending; "
          f"taken over {t_taken - t_kill:.1f}s later (heartbeat gone after {t_hb_gone - t_kill:.1f}s); "
          f"reclaimed {reclaimed}, duplicates {dups}")


SHUTDOWN_MS = 1500


def test_sigterm_finishes_in_flight_then_restart(volley, volley_sink):
    n = 1000
    # ~40 ms per reply batch: a transaction takes ~100 ms, so many are in flight at the signal
    sink = volley_sink("--delay-ms", "40")
    rows = make_recipients(n, prefix="term")
    conf = volley.write_conf(sink.hostport, file="term.conf", name="term", threads=2, connections=8, batch=64,
                             max_inflight=256, shutdown_ms=SHUTDOWN_MS, retry={"schedule": "1s", "jitter": "0"})
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))

    w = volley.start_worker(conf, "term1")
    assert wait_for(lambda: len(sink.rcpts()) >= 200, 30), f"run did not start:\n{tail(w.logpath)}"
    assert w.poll() is None, f"worker exited early:\n{tail(w.logpath)}"
    pending_at_term = volley.r.xpending(volley.key("jobs"), "volley")["pending"]
    t = time.monotonic()
    w.send_signal(signal.SIGTERM)
    rc = volley.wait_exit(w, SHUTDOWN_MS / 1000 + 10)
    took = time.monotonic() - t
    assert rc == 0, f"SIGTERM exit {rc}:\n{tail(w.logpath)}"
    assert took <= SHUTDOWN_MS / 1000 + 1.5, f"exit took {took:.2f}s with shutdown_ms = {SHUTDOWN_MS}"
    received_at_exit = len(sink.rcpts())
    assert received_at_exit < n, "the run finished before SIGTERM: nothing was interrupted"
    # every job is recorded or still queued: in the stream (pending or not) or, if the deadline cut a
    # transaction, deferred in the retry set
    st = volley.stats(cid)
    left = volley.in_stream("jobs") + volley.r.zcard(volley.key("retry"))
    assert left > 0 and left == n - st.get("delivered", 0), (left, st)

    # restarted (same name: it resumes its own pending entries first); deferred ones come due after 1 s
    for run in range(3):
        w2 = volley.start_worker(conf, f"term{run + 2}", exit_when_idle=True)
        rc = volley.wait_exit(w2, 90)
        assert rc == 0, f"restarted worker exit {rc}:\n{tail(w2.logpath)}"
        if volley.r.zcard(volley.key("retry")) == 0:
            break
        time.sleep(1.2)

    got = sink.final_rcpts()
    counts = Counter(got)
    missing = {r["email"] for r in rows} - set(counts)
    assert not missing, f"{len(missing)} recipients lost after SIGTERM, e.g. {sorted(missing)[:5]}"
    dups = len(got) - len(counts)
    assert dups <= pending_at_term, f"{dups} duplicates, {pending_at_term} jobs were pending at SIGTERM"
    st = volley.stats(cid)
    assert st.get("delivered") == n, st
    assert volley.r.xpending(volley.key("jobs"), "volley")["pending"] == 0
    print(f"SIGTERM after {received_at_exit} received, exit in {took:.2f}s; {dups} duplicates "
          f"({pending_at_term} pending at the signal); stats {st}")
