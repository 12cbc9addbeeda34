"""
NAME
    test_worker_redis_counts - each worker thread's exit line counts its Redis batches truly

DESCRIPTION
    At exit every worker thread logs `redis: N record calls of M outcomes (...), R reads of jobs (E empty)
    brought J jobs (...)`. The bench's cluster section reads batch sizes from it (docs/bench.md, section 9), so
    the counts must add up: over the threads, the outcomes recorded are the messages delivered, the jobs read
    are the jobs pushed (a clean run: nothing reclaimed, nothing read twice), and no record call is counted
    without an outcome in it. (Whether outcomes share a call depends on timing: a slow receiver decides them one
    at a time, and the group commit then sends each alone; test_fleet_ack.py counts the batching itself.)

    [worker] batch_wait_ms holds decided outcomes that long for others to share their record call, and a small
    read waits for room: against a receiver that holds its replies (volley-sink --delay-ms, a moderate rate),
    a run with it makes several times fewer record calls and reads than one without, delivers the same, and
    does not wait at the end (the last outcomes of a run go at once).
"""

import re

from volley_itest import make_recipients

LINE = re.compile(r"\] redis: (\d+) record calls of (\d+) outcomes \([0-9.]+ each\), (\d+) reads of jobs "
                  r"\((\d+) empty\) brought (\d+) jobs")


def test_exit_lines_add_up(volley, smtp_receiver):
    rx = smtp_receiver()
    volley.write_conf(rx.hostport, redis={"shards": 4}, threads=2)
    rows = make_recipients(300)
    volley.push_rows(rows)
    run = volley.run_worker()
    assert len(rx.messages) == 300
    lines = [tuple(map(int, m.groups())) for m in LINE.finditer(run.log)]
    assert len(lines) == 2, f"one line per thread:\n{run.tail()}"
    calls, outcomes, reads, empty, jobs = (sum(x) for x in zip(*lines))
    assert outcomes == 300 and jobs == 300, lines
    assert 0 < calls <= outcomes, lines
    assert reads > empty >= 0, lines


def exit_counts(run):
    lines = [tuple(map(int, m.groups())) for m in LINE.finditer(run.log)]
    assert lines, run.tail()
    return tuple(sum(x) for x in zip(*lines))


def test_batch_wait_shares_calls(volley, volley_sink):
    sink = volley_sink("--delay-ms", "5")
    counts = {}
    for wait in (0, 100):
        volley.write_conf(sink.hostport, threads=2, connections=8, batch=40, max_inflight=40, batch_wait_ms=wait)
        cid = volley.push_rows(make_recipients(400), name=f"wait{wait}", cid=f"wait{wait}")
        counts[wait] = exit_counts(volley.run_worker())
        assert volley.stats(cid).get("delivered") == 400, volley.stats(cid)
        assert counts[wait][1] == 400 and counts[wait][4] == 400, counts
    calls0, calls_wait = counts[0][0], counts[100][0]
    reads0, reads_wait = counts[0][2] - counts[0][3], counts[100][2] - counts[100][3]
    assert calls_wait * 3 <= calls0, counts
    assert reads_wait * 2 <= reads0, counts
