"""
NAME
    test_fleet_campaign - pause, resume and cancel one campaign while another keeps sending

DESCRIPTION
    Two campaigns share one worker (two threads) and a volley-sink that holds each reply batch 5 ms:
    "hold-me" (2,000 recipients) and "keep-going" (3,000).

    - `volley campaign pause hold-me` once some of it went out: after the jobs already in flight
      settle, not one more hold-me message arrives while keep-going's count keeps growing; `show`
      says paused with held jobs; the counters add up (one atomic snapshot of stats, streams, retry
      set and hold stream): queued = delivered + bounced + failed + cancelled + suppressed + still queued.
    - `volley campaign resume hold-me`: "N held jobs back in the queue", hold-me sends again.
    - `volley campaign cancel hold-me` mid-run: after the in-flight ones settle, nothing more arrives;
      in the end every hold-me job has exactly one final event (delivered or cancelled), delivered +
      cancelled = queued, the hold stream is empty, state cancelled, and a resume of the cancelled
      campaign is refused (exit 2). keep-going is delivered in full.
"""

import signal
import time

from volley_itest import outcome_sum, stop_process, tail, wait_for


A, B = "hold-me", "keep-going"
NA, NB = 2000, 3000
SETTLE = 1.0  # seconds for messages already on a connection to finish after a state change


def rows(tag, n):
    return [{"email": f"{tag}{i:05d}@example.test", "name": f"{tag}{i}", "token": f"{tag}-{i}"} for i in range(n)]


def received(sink, tag):
    return [(ms, r) for ms, _src, _conn, rcpts in sink.log_lines() for r in rcpts if r.startswith(tag)]


def assert_adds_up(volley, cid, when):
    st, in_streams, retry, held = volley.campaign_snapshot(cid)
    assert retry == 0, f"{when}: unexpected deferrals {st}"
    assert st["queued"] == outcome_sum(st) + in_streams + held, (
        f"{when}: counters do not add up: {st}, {in_streams} in the streams, {held} held")
    return st, in_streams, held


def campaign(volley, action, cid):
    return volley.run("campaign", "-c", volley.conf, action, cid)


def test_pause_resume_cancel(volley, volley_sink):
    sink = volley_sink("--delay-ms", "5")
    conf = volley.write_conf(sink.hostport, file="cw.conf", name="cw", threads=2, connections=4, batch=16,
                             max_inflight=32)
    ra, rb = rows("holdme", NA), rows("keepgoing", NB)
    assert volley.push(volley.write_campaign("a.ini", cid=A), volley.write_recipients(ra, "a.csv")) == A
    assert volley.push(volley.write_campaign("b.ini", cid=B), volley.write_recipients(rb, "b.csv")) == B
    w = volley.start_worker(conf, "campaign")

    def delivered(cid):
        return volley.stats(cid).get("delivered", 0)

    assert wait_for(lambda: delivered(A) >= 200, 30), f"hold-me did not start: {volley.stats(A)}\n{tail(w.logpath)}"

    # pause: hold-me stops, keep-going continues
    p = campaign(volley, "pause", A)
    assert p.returncode == 0 and "paused" in p.stdout, (p.returncode, p.stdout, p.stderr)
    t_pause = time.time()
    time.sleep(SETTLE + 1.5 + 0.3)  # + the sink's log flush interval (200 ms)
    lo, hi = (t_pause + SETTLE) * 1000, (t_pause + SETTLE + 1.5) * 1000
    late = [r for ms, r in received(sink, "holdme") if ms > lo]
    other = [r for ms, r in received(sink, "keepgoing") if lo < ms <= hi]
    assert not late, f"{len(late)} hold-me messages arrived more than {SETTLE}s after the pause"
    assert len(other) > 100, f"keep-going sent only {len(other)} messages in 1.5 s while hold-me was paused"
    assert delivered(A) < NA, "hold-me finished before the pause: nothing was held"
    show = campaign(volley, "show", A)
    assert show.returncode == 0 and "paused" in show.stdout, show.stdout
    st, in_streams, held = assert_adds_up(volley, A, "paused")
    assert held > 0, f"nothing held while paused: {st}, {in_streams} in the streams"
    assert f"{held}" in show.stdout, show.stdout

    # resume: the held jobs go back, hold-me sends again
    p = campaign(volley, "resume", A)
    assert p.returncode == 0 and "resumed" in p.stdout and "held jobs back in the queue" in p.stdout, p.stdout
    assert int(p.stdout.split("resumed, ")[1].split()[0]) >= held, p.stdout
    base = delivered(A)
    assert wait_for(lambda: delivered(A) >= base + 200, 20), f"hold-me did not resume: {volley.stats(A)}"
    assert_adds_up(volley, A, "resumed")

    # cancel mid-run
    assert delivered(A) < NA - 200, f"hold-me nearly done before the cancel: {volley.stats(A)}"
    p = campaign(volley, "cancel", A)
    assert p.returncode == 0 and "cancelled" in p.stdout, (p.stdout, p.stderr)
    t_cancel = time.time()
    assert_adds_up(volley, A, "just cancelled")

    def all_done():
        sa, sb = volley.stats(A), volley.stats(B)
        return outcome_sum(sa) == NA and sb.get("delivered", 0) == NB

    assert wait_for(all_done, 40, step=0.1), (f"run did not end: {volley.stats(A)} {volley.stats(B)}; "
                                             f"{volley.queue_state()}\n{tail(w.logpath)}")
    assert stop_process(w, signal.SIGTERM) == 0
    assert sink.stop() == 0  # flushes its log: everything it accepted is in it now

    late = [r for ms, r in received(sink, "holdme") if ms > (t_cancel + SETTLE) * 1000]
    assert not late, f"{len(late)} hold-me messages arrived more than {SETTLE}s after the cancel, e.g. {late[:3]}"
    st, in_streams, held = assert_adds_up(volley, A, "end")
    assert in_streams == 0 and held == 0, (in_streams, held)
    assert st["queued"] == NA and st.get("cancelled", 0) > 0 and st["delivered"] + st["cancelled"] == NA, st
    ev = [e for e in volley.events() if e["campaign"] == A and e.get("duplicate") != "1"]
    finals = {}
    for e in ev:
        assert e["status"] in ("delivered", "cancelled"), e
        assert e["to"] not in finals, f"{e['to']} has two final events: {finals[e['to']]}, {e}"
        finals[e["to"]] = e["status"]
    assert set(finals) == {r["email"] for r in ra}
    got = {r for _ms, r in received(sink, "holdme")}
    assert got == {t for t, s in finals.items() if s == "delivered"}, "sink and delivered events disagree"
    sb = volley.stats(B)
    assert sb == {"queued": NB, "delivered": NB}, sb
    assert len({r for _ms, r in received(sink, "keepgoing")}) == NB
    show = campaign(volley, "show", A)
    assert "cancelled" in show.stdout.split("state")[1].splitlines()[0], show.stdout
    p = campaign(volley, "resume", A)
    assert p.returncode == 2 and p.stderr.strip(), (p.returncode, p.stdout, p.stderr)
