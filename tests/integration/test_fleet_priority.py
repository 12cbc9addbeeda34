"""
NAME
    test_fleet_priority - high-priority jobs go before bulk jobs queued earlier

DESCRIPTION
    2,000 bulk jobs are queued first, then 40 jobs with `volley push --priority high`, all before
    any worker runs. A worker (two threads, batch 32) sending to a volley-sink that holds each reply
    batch 3 ms reads the high stream first. That is checked where it happens, in Redis: while the sink
    is stopped (SIGSTOP: nothing is delivered, so no thread reads again) the threads' first reads hold
    all 40 high jobs and only the bulk jobs that fit beside them (threads x max_inflight - 40). High
    jobs' events carry priority = high.

    The sink's delivery order is not the measure: the threads share nothing, so once a thread has sent
    its high jobs it reads bulk jobs and sends them while the other thread may still be sending its own
    high ones (under load 70 bulk went out before the last high job, more than the 64 the threads held).

    Then, while the bulk backlog is still being sent, 20 more high jobs are pushed: each arrives within
    the next few batches (before bulk jobs queued earlier and still undelivered), far sooner than the
    backlog drains.
"""

import os
import signal

from volley_itest import stop_process, tail, wait_for


THREADS, BATCH, MAX_INFLIGHT = 2, 32, 32


def rows(tag, n):
    return [{"email": f"{tag}{i:05d}@example.test", "name": f"{tag}{i}", "token": f"{tag}-{i}"} for i in range(n)]


def push(volley, cid, rs, priority=None):
    args = ["push", "-c", volley.conf, "--campaign", volley.write_campaign(f"{cid}.ini", cid=cid),
            "--recipients", volley.write_recipients(rs, f"{cid}.csv")]
    if priority:
        args += ["--priority", priority]
    p = volley.run(*args)
    assert p.returncode == 0 and p.stdout.strip() == cid, (p.returncode, p.stdout, p.stderr)


def order(sink):
    return [r for _ms, _src, _conn, rcpts in sink.log_lines() for r in rcpts]


def test_high_priority_before_earlier_bulk(volley, volley_sink):
    # --no-chunking: one message per delayed round trip (DATA), so the bulk backlog lasts while the late high jobs are
    # pushed; BDAT would send up to 4 per round trip and drain it first
    sink = volley_sink("--delay-ms", "3", "--no-chunking")
    conf = volley.write_conf(sink.hostport, file="pw.conf", name="pw", threads=THREADS, connections=4, batch=BATCH,
                      max_inflight=MAX_INFLIGHT)
    bulk, high, late = rows("bulk", 2000), rows("urgent", 40), rows("late", 20)
    push(volley, "bulk", bulk)
    push(volley, "urgent", high, "high")
    assert volley.r.xlen(volley.key("jobs", "high")) == len(high)
    assert volley.r.xlen(volley.key("jobs")) == len(bulk)

    def held():
        return sum(volley.pending_by_consumer("jobs:high").values()), sum(volley.pending_by_consumer().values())

    full = THREADS * MAX_INFLIGHT
    os.kill(sink.proc.pid, signal.SIGSTOP)
    try:
        w = volley.start_worker(conf, "prio")
        filled = wait_for(lambda: sum(held()) >= full, 30)
        first = held()
    finally:
        os.kill(sink.proc.pid, signal.SIGCONT)
    assert filled, f"the threads' first reads hold {first} (high, bulk) jobs, not {full}:\n{tail(w.logpath)}"
    # every high job is read at once; a thread's first read (both streams, high first) may also bring up to a
    # batch of bulk entries that do not fit beside them: those are parked (pending to it, not taken)
    assert first[0] == len(high) and first[1] <= full - len(high) + THREADS * BATCH, (
        f"the first reads took (high, bulk) = {first}: every high job must be read before bulk jobs queued "
        f"earlier, bulk only filling what is left of {THREADS} x {MAX_INFLIGHT} (and parked entries)")
    assert wait_for(lambda: len(order(sink)) >= 600, 30), f"run did not start:\n{tail(w.logpath)}"
    seq = order(sink)
    pos = {r: i for i, r in enumerate(seq)}
    missing = [r["email"] for r in high if r["email"] not in pos]
    assert not missing, (f"{len(missing)} high jobs not delivered among the first {len(seq)} messages; "
                         f"high-stream pending per consumer: {volley.pending_by_consumer('jobs:high')}; "
                         f"bulk delivered so far {volley.stats('bulk').get('delivered', 0)}")
    last_high = max(pos[r["email"]] for r in high)
    bulk_before = sum(1 for r in seq[:last_high] if r.startswith("bulk"))

    # high jobs pushed while the bulk backlog is being sent overtake it
    push(volley, "late", late, "high")
    # counted from when the jobs are queued: the push's own time (a CLI start, slow on a loaded box) is not
    # the worker's to answer for, and bulk went on meanwhile
    seq = order(sink)
    mark = len(seq)
    undelivered_bulk = len(bulk) - sum(1 for r in seq if r.startswith("bulk"))
    assert undelivered_bulk > 600, f"bulk nearly done ({undelivered_bulk} left): the overtaking is not shown"
    assert wait_for(lambda: {r["email"] for r in late} <= set(order(sink)), 20), "late high jobs not delivered"
    seq = order(sink)
    last_late = max(seq.index(r["email"]) for r in late)
    bulk_between = sum(1 for r in seq[mark:last_late] if r.startswith("bulk"))
    assert bulk_between < undelivered_bulk // 3, (
        f"{bulk_between} bulk messages went out between the push of the high jobs and their delivery "
        f"({undelivered_bulk} bulk were waiting)")
    assert wait_for(lambda: volley.stats("bulk").get("delivered", 0) == len(bulk), 30), volley.stats("bulk")
    assert stop_process(w, signal.SIGTERM) == 0

    ev = {e["to"]: e for e in volley.events() if e["status"] == "delivered"}
    for r in high + late:
        assert ev[r["email"]].get("priority") == "high", ev[r["email"]]
    for r in bulk[:50]:
        assert "priority" not in ev[r["email"]], ev[r["email"]]
    assert volley.stats("urgent") == {"queued": 40, "delivered": 40}
    assert volley.stats("late") == {"queued": 20, "delivered": 20}
    print(f"bulk before the last initial high job: {bulk_before}; bulk between late push and delivery: "
          f"{bulk_between} of {undelivered_bulk} waiting")


def test_high_backlog_goes_before_bulk(volley, volley_sink):
    """One thread, 300 high jobs queued after 600 bulk: the high backlog is read alone, batch after batch, so
    bulk jobs go out only once it is done (a few at most overtake the last high ones on other connections).
    Regression: a plain read of both streams parked a batch of bulk entries beside each high batch and sent
    them next, one bulk batch per high batch."""
    sink = volley_sink("--delay-ms", "3")
    conf = volley.write_conf(sink.hostport, file="hb.conf", name="hb", threads=1, connections=4, batch=BATCH,
                             max_inflight=MAX_INFLIGHT)
    bulk, high = rows("bulk", 600), rows("urgent", 300)
    push(volley, "bulk", bulk)
    push(volley, "urgent", high, "high")
    w = volley.start_worker(conf, "hb")
    assert wait_for(lambda: {r["email"] for r in high} <= set(order(sink)), 40), f"high not sent:\n{tail(w.logpath)}"
    seq = order(sink)
    last_high = max(seq.index(r["email"]) for r in high)
    bulk_before = sum(1 for r in seq[:last_high] if r.startswith("bulk"))
    assert wait_for(lambda: volley.stats("bulk").get("delivered", 0) == len(bulk), 30), volley.stats("bulk")
    assert stop_process(w, signal.SIGTERM) == 0
    print(f"bulk before the last of 300 high jobs: {bulk_before}")
    assert bulk_before <= MAX_INFLIGHT, f"{bulk_before} bulk jobs went out before the last high one"
