"""
NAME
    test_fleet_stop - cancel and pause stop a campaign within a second, whatever the worker holds

DESCRIPTION
    One worker (one thread, one connection, the default max_inflight: it reads all 400 jobs into
    memory at once) sends to volley-sink holding each reply batch 30 ms, about 33 messages/s.
    Once 30 have arrived, `volley campaign cancel` (or `pause`) is run.

    What an operator must be able to rely on (issue 11):
    - after the command returns, at most the transactions on the wire (two per connection with
      pipelining) plus one second's worth of messages (33) arrive, and nothing at all arrives more
      than a second after it;
    - cancel: within a few seconds delivered + cancelled + suppressed equals the recipients, and
      the sink got exactly the delivered ones, once each;
    - pause: the counters add up with the held jobs (queued = final outcomes + held + still in the
      streams), nothing more goes out for 3 s, and after `resume` the rest is sent exactly once.

    Before the workers watched <p>:ctl:version, the jobs already read were sent regardless: 370 of
    400 went out after the cancel and the campaign ended delivered 400, cancelled 0.
"""

import signal
import time
from collections import Counter

from volley_itest import make_recipients, outcome_sum, stop_process, tail, wait_for


N = 400
CONNS = 1
RATE = 33  # messages/s the sink takes on one connection (30 ms per reply batch)
ON_WIRE = 2 * CONNS  # with pipelining a connection carries at most two transactions at once


def send_then(volley, volley_sink, action):
    """Start sending campaign `action`, run `volley campaign ACTION` after 30 arrived, check it stopped.

    Returns (sink, campaign id, worker, messages seen before, wall time the command returned, sent after it).
    """
    sink = volley_sink("--delay-ms", "30")
    conf = volley.write_conf(sink.hostport, file=f"{action}.conf", name=action, threads=1, connections=CONNS, batch=256)
    rows = make_recipients(N, prefix=action)
    cid = volley.push(volley.write_campaign(cid=action), volley.write_recipients(rows))
    w = volley.start_worker(conf, action)
    assert wait_for(lambda: len(sink.log_records()) >= 30, 30), f"sending did not start:\n{tail(w.logpath)}"
    before = len(sink.log_records())
    t_cmd = command(volley, action, cid)
    went = assert_stopped(sink, t_cmd, action)
    return sink, cid, w, before, t_cmd, went


def command(volley, action, cid):
    """Run `volley campaign ACTION`; returns the wall time (s) it returned at."""
    p = volley.run("campaign", "-c", volley.conf, action, cid)
    assert p.returncode == 0, (action, p.returncode, p.stdout, p.stderr)
    return time.time()


def after(sink, t):
    """Messages the sink accepted after wall time t (s)."""
    return [r for ms, _src, _conn, rcpts in sink.log_lines() for r in rcpts if ms > t * 1000]


def assert_stopped(sink, t_cmd, what):
    time.sleep(1.0 + 0.5)  # the second allowed, and the sink's log flush (200 ms)
    went = after(sink, t_cmd)
    late = after(sink, t_cmd + 1.0)
    assert len(went) <= ON_WIRE + RATE, f"{len(went)} messages went out after the {what} (allowed {ON_WIRE + RATE})"
    assert not late, f"{len(late)} messages went out more than 1 s after the {what}, e.g. {late[:3]}"
    return len(went)


def test_cancel_stops_within_a_second(volley, volley_sink):
    sink, cid, w, before, t_cmd, went = send_then(volley, volley_sink, "cancel")
    assert wait_for(lambda: outcome_sum(volley.stats(cid)) == N, 5), (
        f"counters did not add up after the cancel: {volley.stats(cid)}\n{tail(w.logpath)}")
    time.sleep(1.0)
    assert not after(sink, t_cmd + 1.0), "messages went out after the campaign settled"
    assert stop_process(w, signal.SIGTERM) == 0, tail(w.logpath)
    assert sink.stop() == 0
    got = [r for _ms, _src, _conn, rcpts in sink.log_lines() for r in rcpts]
    st, in_streams, retry, held = volley.campaign_snapshot(cid)
    assert (in_streams, retry, held) == (0, 0, 0), (in_streams, retry, held, st)
    assert st["queued"] == N and st["delivered"] + st["cancelled"] == N, st
    assert len(got) == len(set(got)) == st["delivered"], (len(got), len(set(got)), st)
    print(f"cancel after {before} received: {went} more went out; stats {st}")


def test_pause_stops_within_a_second_and_resume_sends_the_rest_once(volley, volley_sink):
    sink, cid, w, before, t_cmd, went = send_then(volley, volley_sink, "pause")

    def adds_up():
        st, in_streams, retry, held = volley.campaign_snapshot(cid)
        return retry == 0 and held > 0 and st["queued"] == outcome_sum(st) + in_streams + held

    assert wait_for(adds_up, 5), f"counters did not add up while paused: {volley.campaign_snapshot(cid)}"
    time.sleep(3.0)
    assert not after(sink, t_cmd + 1.0), "messages went out while the campaign was paused"
    st, in_streams, _retry, paused_held = volley.campaign_snapshot(cid)
    assert st["queued"] == st["delivered"] + in_streams + paused_held, (st, in_streams, paused_held)

    command(volley, "resume", cid)
    assert wait_for(lambda: volley.stats(cid).get("delivered", 0) == N, 60), (
        f"resume did not send the rest: {volley.campaign_snapshot(cid)}\n{tail(w.logpath)}")
    assert stop_process(w, signal.SIGTERM) == 0, tail(w.logpath)
    assert sink.stop() == 0
    counts = Counter(r for _ms, _src, _conn, rcpts in sink.log_lines() for r in rcpts)
    twice = [r for r, c in counts.items() if c > 1]
    assert not twice, f"{len(twice)} recipients received twice after pause and resume, e.g. {twice[:3]}"
    assert len(counts) == N, f"{N - len(counts)} recipients never received their message"
    st, in_streams, retry, held = volley.campaign_snapshot(cid)
    assert st["queued"] == st["delivered"] == N and (in_streams, retry, held) == (0, 0, 0), (st, in_streams, held)
    print(f"pause after {before} received: {went} more went out, {paused_held} held; resumed and delivered once each")
