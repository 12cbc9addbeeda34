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
