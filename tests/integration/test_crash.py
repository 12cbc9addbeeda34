"""A worker killed with SIGKILL mid-run loses nothing: a restarted worker
delivers every remaining recipient. Messages delivered but not yet recorded
at the kill may arrive twice; there can be no more of those than jobs that
were accepted by the receiver but not yet recorded in Redis when the worker
died (and no more than were pending there)."""

import email.parser
import email.policy
import email.utils
import signal
import time
from collections import Counter

from volley_itest import make_recipients, stop_process

N = 5000


def recipients_in(sink):
    parser = email.parser.BytesHeaderParser(policy=email.policy.default)
    out = []
    for p in sink.files():
        with open(p, "rb") as f:
            h = parser.parse(f)
        out.append(email.utils.parseaddr(str(h["To"]))[1])
    return out


def test_sigkill_mid_run_then_restart(volley, volley_sink):
    # the sink holds each message --delay-ms before answering: the run takes seconds, not milliseconds
    sink = volley_sink("--delay-ms", "4")
    rows = make_recipients(N)
    # claim_idle: pending entries of a consumer that does not come back are claimed after 10 s (the least)
    volley.write_conf(sink.hostport, threads=2, connections=4, queue={"claim_idle": "10s"})
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))

    w = volley.start_worker()
    deadline = time.monotonic() + 30
    while sink.count() < 500 and time.monotonic() < deadline and w.poll() is None:
        time.sleep(0.02)
    assert w.poll() is None, f"worker exited early ({w.returncode}):\n{open(w.logpath).read()[-3000:]}"
    stop_process(w, signal.SIGKILL)
    at_kill = sink.count()
    assert 0 < at_kill < N, f"{at_kill} messages at the kill: the test did not interrupt a run"
    pending_at_kill = volley.r.xpending(volley.key("jobs"), "volley")["pending"]
    time.sleep(0.3)  # let the sink finish writing anything it accepted before the connections dropped
    recorded_at_kill = {e["to"] for e in volley.events() if e["status"] == "delivered"}
    delivered_events_at_kill = len(recorded_at_kill)
    # accepted by the receiver but never recorded: the only messages a restart may send again
    unrecorded = sink.count() - delivered_events_at_kill

    volley.run_worker(timeout=90)

    got = recipients_in(sink)
    counts = Counter(got)
    missing = {r["email"] for r in rows} - set(counts)
    assert not missing, f"{len(missing)} recipients never received a message, e.g. {sorted(missing)[:5]}"
    assert set(counts) == {r["email"] for r in rows}
    dups = len(got) - len(counts)
    twice = sorted(r for r, c in counts.items() if c > 1)
    twice_recorded = [r for r in twice if r in recorded_at_kill]
    assert dups <= min(pending_at_kill, unrecorded), (
        f"{dups} duplicate messages but only {unrecorded} messages were received-but-unrecorded "
        f"({pending_at_kill} jobs pending) at the kill ({at_kill} received then, "
        f"{delivered_events_at_kill} recorded); {len(twice_recorded)} of the {len(twice)} recipients "
        f"received more than once had their delivery recorded before the kill, e.g. {twice_recorded[:3]}")

    # Redis: every job recorded exactly once (outcome and acknowledgement are one atomic step)
    ev = [e for e in volley.events() if e["status"] == "delivered"]
    assert len(ev) == N and len({e["job"] for e in ev}) == N, f"{len(ev)} delivered events for {N} jobs"
    assert volley.stats(cid).get("delivered") == N, volley.stats(cid)
    assert volley.r.xpending(volley.key("jobs"), "volley")["pending"] == 0
    print(f"killed at {at_kill}/{N} received, {pending_at_kill} pending, {unrecorded} unrecorded, "
          f"{dups} duplicates after restart")
