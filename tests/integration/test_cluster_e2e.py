"""
NAME
    test_cluster_e2e - the sharded queue on a real Redis Cluster: push, 3 worker processes, failover, reshard

DESCRIPTION
    tests/cluster_util.py starts 3 primaries + 3 replicas (redis-server in cluster mode on loopback,
    cluster-node-timeout 1 s). volley runs with `[redis] url = redis+cluster://...` and `shards = 12`, so every
    script's keys share one `{<shard>}` hash tag (one slot; Redis refuses CROSSSLOT) and the 12 tags spread over
    the 3 primaries. The receiver is volley-sink; its log gives one line per accepted message, so the count per
    recipient is the receiver's own. The counters are read with `volley status`, which sums them over the shards.

    - test_30000_exactly_once: 30,000 recipients, 3 workers: each received exactly once (duplicates only as
      counted in `reclaimed`), status's delivered = the receiver's count, nothing pending in any shard.
    - test_primary_killed_mid_run: the same with 6,000 recipients and `replicas_ack = 1`; the primary serving
      most shards is SIGKILLed once a third is delivered; its replica is promoted, the workers follow it and
      finish: every recipient at least once, status's delivered = the distinct recipients received, the
      duplicates bounded and each accounted for (reclaimed, or an event marked duplicate), nothing pending.
    - test_reshard_mid_run: `redis-cli --cluster reshard` moves the slot of one shard's tag to another primary
      while 3 workers deliver 6,000: nothing lost, nothing twice, nothing pending.
    - test_control_on_the_cluster: pause (every shard holds), resume (all delivered once), cancel (every held
      job ended), `volley suppress add` (every shard's set) and a hard bounce's suppression, on the cluster.
    - test_pause_seen_before_a_batch_starts: shard 0's primary (the campaign states) held 2 s while jobs of a
      campaign paused a moment before arrive on the others: the batches wait for the states, all are held.
    - test_retry_on_the_cluster: test_fleet_retry's checks with 3 workers: deferred jobs wait in their own
      shard's retry set and come back from it (delivered on the 3rd attempt, at the schedule's steps), or
      expire past max_age (bounced, expired); status's counters add up, nothing pending, deferred or dead.
    - test_priority_on_the_cluster: in each shard every high job before the shard's bulk (one connection),
      also when the high campaign is first seen after the bulk one; high jobs pushed into a 3-worker run's
      backlog overtake it (test_fleet_priority's bound).
    - test_throttle_rate_on_the_cluster: test_throttle_fleet's rate bounds (3 workers, 50/s, burst 10) on the
      cluster, and the provider's throttle keys all in one slot, on that slot's primary.
"""

import collections
import re
import signal
import time

import pytest

from volley_itest import (NO_RETRY, Volley, VolleySink, log_tails, make_recipients, rows_for, stop_process,
                          stop_workers, wait_for)

SHARDS = 12
PREFIX = "volley"


@pytest.fixture
def sink(tmp_path):
    s = VolleySink(tmp_path / "sink", maildir=False)
    yield s
    s.stop()


def skey(s, *parts, prefix=PREFIX):
    return ":".join((prefix, "{%d}" % s) + parts)


def fleet_conf(tmp_path, cluster, sink, prefix=PREFIX, **kw):
    v = Volley(tmp_path / "volley", cluster.as_server())
    redis = {"shards": SHARDS, **kw.pop("redis", {})}
    kw.setdefault("retry", NO_RETRY)
    kw.setdefault("threads", 1)
    kw.setdefault("queue", {"claim_idle": "10s"})
    kw.setdefault("name", None)  # each worker process claims its own name (<host>-<n>)
    v.write_conf(sink.hostport, redis=redis, prefix=prefix, **kw)
    return v


def run_fleet(v, n=3, timeout=300, during=None, clean=True, until=None):
    """n worker processes with --exit-when-idle until each exits 0; during(): called while they run.
    clean: no worker logged an error (every script call was accepted: one slot, on its node).
    until: a predicate instead of --exit-when-idle (which leaves jobs waiting in the retry sets): the workers
    run until it holds (within timeout), then are stopped with SIGTERM, each exiting 0."""
    ws = [v.start_worker(tag=f"w{i}", exit_when_idle=until is None) for i in range(n)]
    try:
        if during is not None:
            during()
        if until is not None:
            assert wait_for(until, timeout, step=0.1), f"not done in {timeout} s:\n{log_tails(ws)}"
            assert stop_workers(ws) == [0] * n, log_tails(ws)
        for w in ws:
            assert v.wait_exit(w, timeout) == 0, open(w.logpath).read()[-3000:]
        for w in ws:
            errors = [ln for ln in open(w.logpath).read().splitlines() if " error " in ln]
            assert not clean or not errors, errors[:5]
    finally:
        for w in ws:
            if w.poll() is None:
                stop_process(w, signal.SIGKILL)


def status_row(v, cid):
    """The counters `volley status CID` prints for the campaign, by column name (sums over the shards)."""
    p = v.status(cid)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["CAMPAIGN"])
    cols = [c.lower() for c in lines[head].split()]
    row = next(ln.split() for ln in lines[head + 1:] if ln.split()[:1] == [cid])
    return p.stdout, {c: row[i] for i, c in enumerate(cols)}


def reclaimed(v, cid):
    """`volley campaign show CID`'s reclaimed (summed over the shards)."""
    p = v.run("campaign", "-c", v.conf, "show", cid)
    assert p.returncode == 0, p.stderr
    m = re.search(r"^\s*reclaimed\s+(\d+)", p.stdout, re.M)
    assert m, p.stdout
    return int(m.group(1))


def delivered_now(v, cid):
    return sum(int(v.r.hget(skey(s, "stats", cid), "delivered") or 0) for s in range(SHARDS))


def pending_left(v, r=None, prefix=PREFIX):
    """Jobs not done in any shard: pending, not yet read (lag), deferred. r: a client (default v.r)."""
    r = r or v.r
    n = 0
    for s in range(SHARDS):
        for st in ("jobs", "jobs:high"):
            k = skey(s, st, prefix=prefix)
            if r.exists(k):
                n += r.xpending(k, "volley")["pending"]
                n += r.xinfo_groups(k)[0].get("lag") or 0
        n += r.zcard(skey(s, "retry", prefix=prefix))
    return n


def tags_by_primary(cluster):
    out = collections.Counter()
    for s in range(SHARDS):
        out[cluster.node_of_slot(cluster.slot(skey(s, "jobs")))] += 1
    return out


def duplicate_events(v):
    """Events marked duplicate (an outcome recorded a second time: its XACK answered 0), from `volley events`."""
    return sum(1 for e in v.events() if e.get("duplicate") == "1")


def test_30000_exactly_once(cluster, sink, tmp_path):
    spread = tags_by_primary(cluster)
    assert len(spread) == 3, f"the 12 shard tags cover every primary: {spread}"
    v = fleet_conf(tmp_path, cluster, sink)
    rows = make_recipients(30000)
    t0 = time.monotonic()
    cid = v.push_rows(rows, timeout=180)
    t_push = time.monotonic() - t0
    t0 = time.monotonic()
    run_fleet(v, 3, timeout=600)
    t_run = time.monotonic() - t0
    got = collections.Counter(a.lower() for a in sink.final_rcpts())
    want = {r["email"].lower() for r in rows}
    assert set(got) == want, f"{len(want - set(got))} never received"
    dups = sum(got.values()) - len(got)
    out, row = status_row(v, cid)
    assert int(row["queued"]) == 30000, out
    assert int(row["delivered"]) == len(got) == 30000, out
    assert dups <= reclaimed(v, cid), (dups, out)
    assert pending_left(v) == 0
    print(f"30000 on the cluster: push {t_push:.1f} s, 3 workers {t_run:.1f} s, duplicates {dups}")


def wait_replicated(cluster, timeout=20):
    """Every primary's replica has caught up (so a kill loses no pushed job: push itself does not WAIT)."""
    def caught_up():
        for p in cluster.primaries():
            info = cluster.client(p).info("replication")
            off = info["master_repl_offset"]
            reps = [info[k] for k in info if k.startswith("slave") and isinstance(info[k], dict)]
            if not reps or any(r["offset"] < off for r in reps):
                return False
        return True
    assert wait_for(caught_up, timeout, step=0.1)


def test_primary_killed_mid_run(own_cluster, sink, tmp_path):
    cluster = own_cluster
    v = fleet_conf(tmp_path, cluster, sink, redis={"replicas_ack": 1, "replicas_ack_ms": 100}, connections=4)
    n = 6000
    rows = make_recipients(n)
    cid = v.push_rows(rows, timeout=120)
    wait_replicated(cluster)
    victim = tags_by_primary(cluster).most_common(1)[0][0]
    killed = {}

    def kill_mid_run():
        assert wait_for(lambda: delivered_now(v, cid) >= n // 3, 120, step=0.05), delivered_now(v, cid)
        killed["at"] = delivered_now(v, cid)
        cluster.kill(victim)
        killed["promoted"] = cluster.wait_failover(victim)

    t0 = time.monotonic()
    run_fleet(v, 3, timeout=400, during=kill_mid_run, clean=False)  # the outage is logged
    t_run = time.monotonic() - t0
    assert killed["at"] < n, "the primary died with work left"
    got = collections.Counter(a.lower() for a in sink.final_rcpts())
    want = {r["email"].lower() for r in rows}
    assert set(got) == want, f"{len(want - set(got))} never received"
    dups = sum(got.values()) - len(got)
    out, row = status_row(v, cid)
    assert int(row["delivered"]) == len(got), out
    # each message sent twice is accounted for: taken over after claim_idle (reclaimed), or recorded twice
    # (its job re-read fresh on the promoted replica; the late record is an event marked duplicate)
    rec = reclaimed(v, cid)
    assert dups <= rec + duplicate_events(v), (dups, rec, out)
    assert dups <= n // 10, f"{dups} duplicates"
    # a fresh view of the cluster: redis-py's client made before the kill still asks the dead node
    assert pending_left(v, cluster.as_server().client) == 0
    print(f"failover run: killed {victim} at {killed['at']}/{n}, promoted {killed['promoted']}, "
          f"{t_run:.1f} s, duplicates {dups}, reclaimed {rec}")


def test_reshard_mid_run(cluster, sink, tmp_path):
    v = fleet_conf(tmp_path, cluster, sink, prefix="rs", connections=4)
    n = 6000
    rows = make_recipients(n)
    cid = v.push_rows(rows, timeout=120)
    tag_key = "rs:{5}:jobs"
    slot = cluster.slot(tag_key)
    moved = {}

    def reshard():
        assert wait_for(lambda: sum(int(v.r.hget(f"rs:{{{s}}}:stats:{cid}", "delivered") or 0)
                                    for s in range(SHARDS)) >= n // 4, 120, step=0.05)
        src = cluster.node_of_slot(slot)
        dst = [p for p in cluster.primaries() if p != src][0]
        # redis-cli --cluster reshard moves whole slots, chosen by the tool: move the tag's own slot first
        # with the same MIGRATING/IMPORTING procedure, then let the tool move more of src's slots
        cluster.move_slot(slot, dst)
        cluster.reshard(src, dst, 50)
        moved.update(src=src, dst=dst, owner=cluster.node_of_slot(slot))

    run_fleet(v, 3, timeout=300, during=reshard, clean=False)  # TRYAGAIN mid-migration is logged, retried
    assert moved["owner"] == moved["dst"], moved
    got = collections.Counter(a.lower() for a in sink.final_rcpts())
    assert set(got) == {r["email"].lower() for r in rows}, "nothing lost"
    dups = sum(got.values()) - len(got)
    stats = sum(int(v.r.hget(f"rs:{{{s}}}:stats:{cid}", "delivered") or 0) for s in range(SHARDS))
    assert stats == len(got) == n
    assert dups == 0, dups
    left = sum(v.r.xpending(f"rs:{{{s}}}:jobs", "volley")["pending"] for s in range(SHARDS))
    assert left == 0


def test_control_on_the_cluster(cluster, sink, tmp_path):
    v = fleet_conf(tmp_path, cluster, sink, prefix="volley", queue={"suppress_hard_bounces": "yes"})
    for k in [k for p in cluster.primaries() for k in cluster.client(p).keys("volley:*")]:
        v.r.delete(k)  # the 30,000 run's keys: this test counts its own
    ctl = lambda *a: v.run("campaign", "-c", v.conf, *a)
    rows = make_recipients(240, prefix="pr")
    cid = v.push_rows(rows, cid="pr")
    assert ctl("pause", cid).returncode == 0
    run_fleet(v, 1, timeout=120)
    held = [v.r.xlen(skey(s, "hold", cid)) for s in range(SHARDS)]
    assert sum(held) == 240 and sum(1 for h in held if h) == SHARDS, held
    r = ctl("resume", cid)
    assert r.returncode == 0, r.stderr
    run_fleet(v, 2, timeout=120)
    out, row = status_row(v, cid)
    assert row["delivered"] == "240", out

    c2 = v.push_rows(make_recipients(90, prefix="cx"), name="c2", cid="cx")
    assert ctl("pause", c2).returncode == 0
    run_fleet(v, 1, timeout=120)
    assert ctl("cancel", c2).returncode == 0
    out, row = status_row(v, c2)
    assert row["cancelled"] == "90" and row["delivered"] == "0", out
    assert all(not v.r.exists(skey(s, "hold", c2)) for s in range(SHARDS))

    blocked = [f"blocked{i}@example.test" for i in range(6)]
    assert v.run("suppress", "-c", v.conf, "add", *blocked).returncode == 0
    assert all(v.r.smembers(skey(s, "suppressed")) >= set(blocked) for s in range(SHARDS))
    sink2 = VolleySink(tmp_path / "sink2", args=["--reject-rcpt", "gone*"], maildir=False)
    try:
        v.write_conf(sink2.hostport, redis={"shards": SHARDS}, threads=1, retry=NO_RETRY, name=None,
                     queue={"suppress_hard_bounces": "yes", "claim_idle": "10s"})
        gone = [f"gone{i}@example.test" for i in range(6)]
        ok = [f"fine{i}@example.test" for i in range(30)]
        c3 = v.push_rows(rows_for(blocked + gone + ok), name="c3", cid="sr")
        run_fleet(v, 2, timeout=120)
        chk = v.run("suppress", "-c", v.conf, "check", *gone)
        assert sorted(chk.stdout.splitlines()) == sorted(f"{a} suppressed" for a in gone), chk.stdout
        out, row = status_row(v, c3)
        assert row["suppressed"] == "6" and row["bounced"] == "6" and row["delivered"] == "30", out
        c4 = v.push_rows(rows_for(gone + ["new@example.test"]), name="c4", cid="again")
        run_fleet(v, 1, timeout=120)
        out, row = status_row(v, c4)
        assert row["suppressed"] == "6" and row["delivered"] == "1", out
        got = sorted(a.lower() for a in sink2.final_rcpts())
        assert got == sorted(ok + ["new@example.test"]), got
    finally:
        sink2.stop()


def test_pause_seen_before_a_batch_starts(cluster, sink, tmp_path):
    """A read that finds its shard's <p>:{s}:ctl:version moved makes its batch wait for the campaign states,
    which come from shard 0's primary while the batch's own replies come from its shard's: no order between
    the two. That primary is held (CLIENT PAUSE ALL, 2 s) while jobs of a campaign paused a moment before arrive
    in shards of the other primaries: every one is held, none sent."""
    slot_node = lambda key: cluster.node_of_slot(cluster.slot(key))
    prefix = "pz"
    v = fleet_conf(tmp_path, cluster, sink, prefix=prefix)
    held0 = slot_node(skey(0, "jobs", prefix=prefix))
    elsewhere = [s for s in range(SHARDS) if slot_node(skey(s, "jobs", prefix=prefix)) != held0]
    stats = lambda f: sum(int(v.r.hget(skey(s, "stats", cid, prefix=prefix), f) or 0) for s in range(SHARDS))
    cid = v.push_rows(make_recipients(24, prefix="early"), cid="pz")
    w = v.start_worker(tag="w")
    try:
        assert wait_for(lambda: stats("delivered") == 24, 60), log_tails([w])
        time.sleep(0.3)  # idle: nothing held, so the thread does not poll the counter; its next read sees it
        assert v.run("campaign", "-c", v.conf, "pause", cid).returncode == 0
        cluster.client(held0).execute_command("CLIENT", "PAUSE", 2000, "ALL")
        for s in elsewhere:
            v.r.xadd(skey(s, "jobs", prefix=prefix), {"campaign": cid, "to": f"late{s}@example.test"})
        hold = lambda: sum(v.r.xlen(skey(s, "hold", cid, prefix=prefix)) for s in range(SHARDS))
        done = lambda: hold() + stats("delivered") - 24
        assert wait_for(lambda: done() == len(elsewhere), 30), (hold(), len(elsewhere), log_tails([w]))
        assert (hold(), stats("delivered")) == (len(elsewhere), 24)
    finally:
        assert stop_workers([w]) == [0], log_tails([w])
    assert not [r for r in sink.final_rcpts() if r.startswith("late")]


def queue_row(out, name):
    """A number of the queue table `volley status` prints (summed over the shards): "pending", "retry (deferred)"."""
    m = re.search(rf"^\s+{re.escape(name)}\s+(\d+)\s*$", out, re.M)
    assert m, f"no {name!r} in:\n{out}"
    return int(m.group(1))


def event_ms(e):
    """When an event was recorded: the ms part of its stream id (taken by Redis when its batch was recorded)."""
    return int(e["_id"].split("-")[0])


DEFER = "451 4.3.0 Temporary local problem, please come back later"
STEPS = (1000, 2000)  # [retry] schedule = 1s 2s, jitter 0
MAX_AGE = 5000


def test_retry_on_the_cluster(cluster, smtp_receiver, tmp_path):
    """test_fleet_retry's two cases at once over 12 shards and 3 workers: flaky* deferred twice then accepted,
    never* deferred until max_age expires them. Each deferred job waits in its own shard's retry set (seen
    there while it waits, its member naming the recipient) and comes back from it; the same per-decision rules
    on the events as on one Redis; status's counters add up; nothing pending, deferred or dead at the end."""
    from test_shards import shard_of

    rx = smtp_receiver(rule=lambda addr, n: DEFER if addr.startswith("never") or (addr.startswith("flaky") and n <= 2)
                       else None)
    v = fleet_conf(tmp_path, cluster, rx, prefix="rt", retry={"schedule": "1s 2s", "jitter": "0", "max_age": "5s"})
    flaky = [f"flaky{i}@example.test" for i in range(12)]
    never = [f"never{i}@example.test" for i in range(6)]
    steady = [f"steady{i}@example.test" for i in range(30)]
    deferred = flaky + never
    shards = {a: shard_of(a, SHARDS) for a in deferred}
    owners = {cluster.node_of_slot(cluster.slot(skey(s, "retry", prefix="rt"))) for s in shards.values()}
    assert len(owners) == 3, f"the deferred recipients' shards cover every primary: {owners}"
    t_push = int(time.time() * 1000)
    cid = v.push_rows(rows_for(deferred + steady), cid="rt")
    seen = {}  # shard -> recipients whose retry member was seen in that shard's retry set

    def watch_retry_sets():
        raw = cluster.as_server().raw
        end = time.monotonic() + 20
        while time.monotonic() < end and not all(stats_done(v, cid)):
            for s in set(shards.values()):
                for m in raw.zrange(skey(s, "retry", prefix="rt"), 0, -1):
                    seen.setdefault(s, set()).update(a for a in deferred if a.encode() in m)
            time.sleep(0.05)

    t0 = time.monotonic()
    run_fleet(v, 3, timeout=30, during=watch_retry_sets, until=lambda: all(stats_done(v, cid)))
    wall = time.monotonic() - t0
    # each deferred job sat in the retry set of its recipient's shard, and only there
    where = {a: {s for s, got in seen.items() if a in got} for a in deferred}
    assert all(where[a] == {shards[a]} for a in deferred), {a: (shards[a], where[a]) for a in deferred}

    assert sorted(a.lower() for a in rx.received()) == sorted(flaky + steady), "each once, never* never"
    ev = {}
    for e in v.events():
        ev.setdefault(e["to"], []).append(e)
    for evs in ev.values():
        evs.sort(key=event_ms)
    for a in steady:
        assert [e["status"] for e in ev[a]] == ["delivered"], ev[a]
    for a in flaky:
        evs = ev[a]
        assert [(e["status"], e["attempt"]) for e in evs] == [("deferred", "1"), ("deferred", "2"),
                                                             ("delivered", "3")], evs
        for e, step in zip(evs, STEPS):
            assert e["code"] == "451" and e["dsn"] == "4.3.0" and e["reply"] == DEFER[len("451 4.3.0 "):], e
            # jitter 0: the due time is the step after the worker decided, which Redis recorded a moment later
            assert step - 200 <= int(e["retry_at_ms"]) - event_ms(e) <= step, e
        t1, t2, t3 = (event_ms(e) for e in evs)
        assert t2 - t1 >= STEPS[0] - 200 and t3 - t2 >= STEPS[1] - 200, f"{a}: gaps {t2 - t1} ms, {t3 - t2} ms"
        sent = [ms for _m, ms, to, _rep in rx.rcpts if to == a]
        assert len(sent) == 3 and sent[1] - sent[0] >= STEPS[0] - 10 and sent[2] - sent[1] >= STEPS[1] - 10, sent
    deferrals = 0
    for a in never:
        *defs, b = ev[a]
        deferrals += len(defs)
        assert len(defs) in (1, 2) and all(e["status"] == "deferred" for e in defs), ev[a]
        assert [e["attempt"] for e in ev[a]] == [str(i + 1) for i in range(len(ev[a]))], ev[a]
        assert b["status"] == "bounced" and b.get("expired") == "1" and b["code"] == "451", b
        assert b["reply"] == f"expired after {len(ev[a])} attempts: {defs[0]['reply']}", b
        for i, d in enumerate(defs):
            due = int(d["retry_at_ms"])
            assert STEPS[i] - 1000 <= due - event_ms(d) <= STEPS[i], d
            assert due <= event_ms(defs[0]) + MAX_AGE, f"attempt {i + 1} deferred past max_age: {d}"
            assert event_ms(ev[a][i + 1]) >= due, f"attempt {i + 2} came before its retry was due: {ev[a]}"
        # expired, not deferred: the retry the schedule gives next would fall past max_age (from the push)
        assert event_ms(b) + STEPS[min(len(defs), len(STEPS) - 1)] > t_push + MAX_AGE, b

    out, row = status_row(v, cid)
    want = {"queued": 48, "delivered": 42, "deferred": 24 + deferrals, "bounced": 6}
    assert {k: int(row[k]) for k in want} == want, out
    st = {}
    for s in range(SHARDS):
        for k, n in v.r.hgetall(skey(s, "stats", cid, prefix="rt")).items():
            st[k] = st.get(k, 0) + int(n)
    assert st.get("expired") == 6 and st.get("deferred") == 24 + deferrals, st
    for name in ("pending", "undelivered", "retry (deferred)", "dead letters"):
        assert queue_row(out, name) == 0, (name, out)
    assert pending_left(v, prefix="rt") == 0
    print(f"retry on the cluster: {wall:.1f} s of 3 workers, never* deferred {deferrals} times before expiring")


def stats_done(v, cid):
    """(every flaky/steady delivered, every never bounced) from the shards' counters, for the watcher's end."""
    n = {"delivered": 0, "bounced": 0}
    for s in range(SHARDS):
        for k in n:
            n[k] += int(v.r.hget(skey(s, "stats", cid, prefix="rt"), k) or 0)
    return n["delivered"] >= 42, n["bounced"] >= 6


def push_priority(v, cid, rows, priority=None):
    """`volley push` of rows as campaign cid (--priority high when asked)."""
    args = ["push", "-c", v.conf, "--campaign", v.write_campaign(f"{cid}.ini", cid=cid),
            "--recipients", v.write_recipients(rows, f"{cid}.csv")]
    p = v.run(*args, *(["--priority", priority] if priority else []))
    assert p.returncode == 0 and p.stdout.strip() == cid, (p.returncode, p.stdout, p.stderr)


def sink_order(sink):
    return [a.lower() for _ms, _src, _conn, rcpts in sink.log_lines() for a in rcpts]


def test_priority_on_the_cluster(cluster, tmp_path):
    """test_shards' and test_fleet_priority's checks on the cluster, prefix "pq".

    One worker, one thread, one connection (the receiver's order is the sending order), 12 shards: in each
    shard every high job queued after the bulk backlog is sent before the shard's bulk jobs, also when the
    high campaign is first seen after the bulk one (its fetch is a round trip the bulk jobs must not use).
    Then 3 workers on a bulk backlog spread over every shard: high jobs pushed while it is being sent
    overtake it, arriving before a third of the bulk still waiting has gone out, as on one Redis."""
    from test_shards import shard_of

    sink = VolleySink(tmp_path / "psink", args=["--delay-ms", "3", "--no-chunking"], maildir=False)
    try:
        v = fleet_conf(tmp_path, cluster, sink, prefix="pq", connections=1, batch=8, max_inflight=8)
        # the thread's first read is shard 1 (worker.c intake_pick): with no high job there, it compiles the bulk
        # campaign before any high job is seen; a later read of another shard then brings high jobs whose campaign
        # is still being fetched beside bulk jobs ready to go (regression: those bulk jobs went out first)
        bulk = make_recipients(240, prefix="bulk")
        high = [r for r in make_recipients(60, prefix="high") if shard_of(r["email"], SHARDS) != 1][:24]
        push_priority(v, "bulk", bulk)
        push_priority(v, "urgent", high, "high")
        hs = {shard_of(r["email"], SHARDS) for r in high}
        assert len({cluster.node_of_slot(cluster.slot(skey(s, "jobs:high", prefix="pq"))) for s in hs}) == 3, hs
        run_fleet(v, 1, timeout=60)
        assert wait_for(lambda: len(sink_order(sink)) >= 264, 5)  # the sink writes its log every 200 ms
        pos = {a: i for i, a in enumerate(sink_order(sink))}
        assert len(pos) == 264
        for s in range(SHARDS):
            h = [pos[r["email"]] for r in high if shard_of(r["email"], SHARDS) == s]
            b = [pos[r["email"]] for r in bulk if shard_of(r["email"], SHARDS) == s]
            if h:
                assert max(h) < min(b), f"shard {s}: high at {sorted(h)}, first bulk at {min(b)}"

        # the backlog, then high jobs pushed into it
        v = fleet_conf(tmp_path, cluster, sink, prefix="pq", connections=2, batch=16, max_inflight=32)
        backlog, late = make_recipients(3000, prefix="back"), make_recipients(30, prefix="late")
        push_priority(v, "back", backlog)
        before = len(sink_order(sink))
        t0 = time.monotonic()
        ws = [v.start_worker(tag=f"p{i}", exit_when_idle=True) for i in range(3)]
        try:
            assert wait_for(lambda: len(sink_order(sink)) - before >= 400, 30), log_tails(ws)
            push_priority(v, "late", late, "high")
            seq = sink_order(sink)
            mark = len(seq)
            waiting = len(backlog) - sum(1 for a in seq if a.startswith("back"))
            assert waiting > 1000, f"backlog nearly done ({waiting} left): the overtaking is not shown"
            assert wait_for(lambda: {r["email"] for r in late} <= set(sink_order(sink)), 20), log_tails(ws)
            for w in ws:
                assert v.wait_exit(w, 60) == 0, log_tails(ws)
        finally:
            for w in ws:
                stop_process(w, signal.SIGKILL)
        t_run = time.monotonic() - t0
        seq = sink_order(sink)
        last_late = max(seq.index(r["email"]) for r in late)
        between = sum(1 for a in seq[mark:last_late] if a.startswith("back"))
        assert between < waiting // 3, (f"{between} backlog messages went out between the push of the high "
                                        f"jobs and their delivery ({waiting} were waiting)")
        got = collections.Counter(seq)
        assert all(got[r["email"]] == 1 for r in backlog + late), "each once"
        for cid, n in (("back", 3000), ("late", 30)):
            out, row = status_row(v, cid)
            assert int(row["queued"]) == int(row["delivered"]) == n, out
        ev = [e for e in v.events() if e["status"] == "delivered"]
        assert all(e.get("priority") == "high" for e in ev if e["to"].startswith(("late", "high"))), ev[:3]
        assert not any("priority" in e for e in ev if e["to"].startswith(("back", "bulk")))
        assert pending_left(v, prefix="pq") == 0
        print(f"priority on the cluster: {between} backlog messages between the late push and its delivery, "
              f"of {waiting} waiting; 3 workers {t_run:.1f} s")
    finally:
        sink.stop()


def test_throttle_rate_on_the_cluster(cluster, tmp_path):
    """test_throttle_fleet's rate test on the cluster (prefix "th"): 3 worker processes, rate = 50/s, burst = 10
    for gmail: at most 62 in any sliding second at the receiver, the limit used (>= 45/s offered), every worker
    sends, few slots wasted. Every throttle key of the provider but the warm-up hash carries the pair's tag
    `{gmail:<ip>}`, so CLUSTER KEYSLOT gives one slot for all of them and that slot's primary holds them all:
    one provider's GCRA is one slot (docs/redis-contract.md "Throttle keys"). status and warmup work."""
    from volley_itest import SPREAD, THROTTLE, delivered_by, max_in_window

    sink = VolleySink(tmp_path / "tsink")  # its maildir counts the arrivals as they come
    try:
        v = Volley(tmp_path / "volley", cluster.as_server())
        n, burst = 300, 10  # about 6 s at 50/s
        confs = [v.write_conf({"gmail.com": sink.hostport}, file=f"t{i}.conf", prefix="th", name=None,
                              preset=THROTTLE, **SPREAD, redis={"shards": SHARDS},
                              retry={"schedule": "1s", "max_age": "1h"},
                              providers={"gmail": {"rate": "50/s", "burst": burst, "connections": 10}})
                 for i in range(3)]
        v.push_rows(make_recipients(n, domains=("gmail.com",)), name="c")
        procs = [v.start_worker(c, f"t{i}") for i, c in enumerate(confs)]
        where = collections.defaultdict(set)  # throttle key -> primaries it was seen on while the fleet ran

        def look():
            for p in cluster.primaries():
                for k in cluster.client(p).scan_iter(match="th:thr:*", count=1000):
                    where[k].add(p)
            return sink.count() >= n
        try:
            done = wait_for(look, 20, step=0.3)  # the rate key lives only while slots are leased
        finally:
            rcs = stop_workers(procs)
        times = sorted(t for t, _src, _c, _r in sink.log_lines())
    finally:
        sink.stop()
    gcra = sorted(k for k in where if k != "th:thr:warmup")

    def counted(field):
        return sum(int(v.r.hget(k, field) or 0) for k in gcra if ":status:" in k)

    late, idle = counted("stale_late"), counted("stale_idle")
    per_worker = delivered_by(procs)
    peak, at = max_in_window(times, 1000)
    span = (times[-1] - times[0]) / 1000.0 if len(times) > 1 else 0.0
    offered = (len(times) - 1 + late) / span if span else 0.0
    print(f"throttle on the cluster: {len(times)} in {span:.2f} s = {(len(times) - 1) / (span or 1):.1f}/s, "
          f"busiest second {peak}, stale late {late} idle {idle}, offered {offered:.1f}/s, per worker {per_worker}")
    assert rcs == [0, 0, 0], log_tails(procs)
    assert peak <= 50 + burst + 2, f"{peak} messages in one second (from {at} ms) with rate = 50/s over 3 workers"
    assert done, f"only {len(times)} of {n} arrived in 20 s\n{log_tails(procs)}"
    assert all(d and d[0] > 0 for d in per_worker.values()), f"every worker should send: {per_worker}"
    assert idle <= 5, f"{idle} slots were leased by workers that had no mail for them"
    assert late <= n // 4, f"{late} slots went stale at workers too late to use them: the machine is overloaded"
    assert offered >= 45, f"only {offered:.1f} msgs/s offered over {span:.2f} s: the 50/s limit is not used"

    pairs = {re.match(r"^th:thr:\{([^}]+)\}:", k).group(1) if k.startswith("th:thr:{") else None for k in gcra}
    assert len(pairs) == 1 and None not in pairs, f"one (provider, IP) pair, every key tagged with it: {gcra}"
    pair = pairs.pop()
    assert pair.startswith("gmail:"), pair
    assert any(k.endswith(f":rate:{pair}") for k in gcra) and any(f":day:" in k for k in gcra), gcra
    slots = {cluster.slot(k) for k in gcra}
    assert slots == {cluster.slot("{%s}" % pair)}, f"the pair's keys span slots {slots}: {gcra}"
    owner = cluster.node_of_slot(slots.pop())
    assert all(where[k] == {owner} for k in gcra), f"every key of the pair on its slot's primary {owner}: {where}"
    st = v.status()
    assert st.returncode == 0 and re.search(r"gmail:\S+\s+\S+/s", st.stdout), st.stdout + st.stderr
    w = v.run("warmup", "-c", v.conf, "start", "127.0.0.1", "2026-01-01")
    assert w.returncode == 0, w.stderr
    w = v.run("warmup", "-c", v.conf, "show")
    assert w.returncode == 0 and "127.0.0.1" in w.stdout, (w.stdout, w.stderr)
