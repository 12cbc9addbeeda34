"""
NAME
    test_fleet_outage - a Redis outage mid-run loses nothing

DESCRIPTION
    redis-server runs with `--appendonly yes --appendfsync always` (every acknowledged write is on
    disk). A worker sends 6,000 messages to volley-sink; when about 1,500 have arrived, redis-server
    is SIGKILLed, stays down 5 s, and is started again on the same port with the same AOF file.

    The worker keeps running through the outage (it keeps outcomes in memory and reconnects with
    backoff), says so in one clear log line per connection (thread) and one when it is back, and then
    finishes the run: every recipient received the message exactly once, stats delivered equals the
    number of recipients, every recipient has a delivered event (a batch recorded just before the
    crash whose reply was lost may be recorded again as an event marked duplicate, which is allowed,
    but counters are never counted twice), nothing pending, nothing left in the stream.

    An outage longer than the heartbeat lease (test_redis_outage_longer_than_the_lease): the worker
    stops sending within the lease, re-confirms its held jobs when Redis is back, then sends the rest.
"""

import re
import signal
import time
from collections import Counter

import pytest

from volley_itest import make_recipients, stop_process, tail, wait_for


N = 6000
THREADS = 2
OUTAGE_S = 5.0


def test_redis_outage_mid_run(aof_volley, volley_sink):
    volley = aof_volley
    sink = volley_sink("--delay-ms", "2")
    rows = make_recipients(N, prefix="outage")
    conf = volley.write_conf(sink.hostport, file="ow.conf", name="ow", threads=THREADS, connections=4, batch=64,
                             max_inflight=256)
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))

    w = volley.start_worker(conf, "outage")
    assert wait_for(lambda: len(sink.rcpts()) >= N // 4, 30), f"run did not start:\n{tail(w.logpath)}"
    volley.redis.kill()
    at_kill = len(sink.rcpts())
    assert at_kill < N, "the run finished before the outage"
    time.sleep(OUTAGE_S)
    assert w.poll() is None, f"worker died during the Redis outage ({w.returncode}):\n{tail(w.logpath)}"
    during = len(sink.rcpts()) - at_kill
    volley.redis.start()

    def finished():
        try:
            st = volley.stats(cid)
            return st.get("delivered", 0) >= N and volley.r.xlen(volley.key("jobs")) == 0
        except Exception:
            return False

    ok = wait_for(finished, 60, step=0.2)
    assert w.poll() is None, f"worker exited after the outage ({w.returncode}):\n{tail(w.logpath)}"
    assert ok, (f"run did not finish after Redis came back: stats {volley.stats(cid)}, queue "
                f"{volley.queue_state()}; worker log:\n{tail(w.logpath)}")
    assert stop_process(w, signal.SIGTERM, timeout=15) == 0, tail(w.logpath)

    log = open(w.logpath, errors="replace").read()
    down = [ln for ln in log.splitlines() if re.search(r"redis \S+: .*outcomes are kept until it is back", ln)]
    back = [ln for ln in log.splitlines() if re.search(r"redis \S+: connected again", ln)]
    assert 1 <= len(down) <= THREADS, (f"expected one line about the outage (at most one per thread), got "
                                      f"{len(down)}:\n" + "\n".join(down[:10]))
    assert 1 <= len(back) <= THREADS, "no line saying Redis is back:\n" + tail(w.logpath)
    assert len(log.splitlines()) < 200, f"the outage flooded the log ({len(log.splitlines())} lines):\n{tail(w.logpath)}"

    got = sink.final_rcpts()
    counts = Counter(got)
    missing = {r["email"] for r in rows} - set(counts)
    if missing:
        evs = [e for e in volley.events() if e["to"] in missing]
        in_maildir = [m for m in sink.messages() if str(m["To"]).split("<")[-1].rstrip(">") in missing]
        pytest.fail(f"{len(missing)} recipients lost in the outage (recorded delivered, never received), e.g. "
                    f"{sorted(missing)[:5]}; their events: {evs[:6]}; in the maildir: {len(in_maildir)}; "
                    f"outage began after {at_kill} messages", pytrace=False)
    twice = [r for r, c in counts.items() if c > 1]
    assert not twice, f"{len(twice)} recipients received twice though no worker died, e.g. {twice[:5]}"

    st = volley.stats(cid)
    assert st.get("queued") == N and st.get("delivered") == N, st
    for k in ("bounced", "failed", "cancelled", "suppressed"):
        assert st.get(k, 0) == 0, st
    ev = [e for e in volley.events() if e["status"] == "delivered"]
    assert {e["to"] for e in ev} == {r["email"] for r in rows}
    firsts = [e for e in ev if e.get("duplicate") != "1"]
    assert len(firsts) == N and len({e["job"] for e in firsts}) == N, f"{len(firsts)} counted delivered events"
    assert volley.r.xpending(volley.key("jobs"), "volley")["pending"] == 0
    print(f"outage at {at_kill}/{N} received, {during} received during the 5 s outage; "
          f"{len(ev) - len(firsts)} duplicate-marked events; log lines: {down[0]!r}")


def test_redis_outage_longer_than_the_lease(aof_volley, volley_sink):
    """A Redis outage longer than the heartbeat lease (4 s): the worker stops starting transactions
    within the lease, since it cannot know whether others took its jobs; when Redis is back it
    re-confirms the jobs it holds (all still its own: nobody else runs), then sends the rest, each
    exactly once."""
    volley = aof_volley
    n, lease_s, outage_s = 400, 4.0, 7.0
    # ~33 messages/s per connection: the held queue outlasts the lease. --no-chunking: one message per delayed round
    # trip (DATA); BDAT would carry up to 4 per round trip and the queue would be sent before the lease ran out
    sink = volley_sink("--delay-ms", "30", "--no-chunking")
    rows = make_recipients(n, prefix="lease")
    conf = volley.write_conf(sink.hostport, file="lw.conf", name="lw", threads=1, connections=2, batch=256)
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
    w = volley.start_worker(conf, "lease")
    assert wait_for(lambda: len(sink.rcpts()) >= 50, 30), f"run did not start:\n{tail(w.logpath)}"
    volley.redis.kill()
    t_kill = time.time()
    time.sleep(outage_s)
    assert w.poll() is None, f"worker died during the outage:\n{tail(w.logpath)}"
    volley.redis.start()
    t_back = time.time()
    sent_late = [r for ms, _src, _conn, rcpts in sink.log_lines() for r in rcpts
                 if t_kill + lease_s + 0.5 < ms / 1000 < t_back]
    assert not sent_late, f"{len(sent_late)} messages went out after the lease ran out, Redis still down"

    assert wait_for(lambda: volley.stats(cid).get("delivered", 0) >= n, 60, step=0.2), (
        f"run did not finish after Redis came back: {volley.stats(cid)}\n{tail(w.logpath)}")
    assert stop_process(w, signal.SIGTERM, timeout=15) == 0, tail(w.logpath)
    log = open(w.logpath, errors="replace").read()
    assert "fencing: the heartbeat lease ran out" in log, tail(w.logpath)
    assert re.search(r"fencing: the \d+ held jobs are still ours", log), tail(w.logpath)
    counts = Counter(sink.final_rcpts())
    assert set(counts) == {r["email"] for r in rows}, f"{n - len(counts)} recipients lost"
    twice = [r for r, c in counts.items() if c > 1]
    assert not twice, f"{len(twice)} recipients received twice though no worker died, e.g. {twice[:5]}"
    st = volley.stats(cid)
    assert st.get("queued") == n and st.get("delivered") == n, st
