"""
NAME
    test_shards - the sharded queue ([redis] shards = 4) on one redis-server, worker threads fewer than shards

DESCRIPTION
    With shards = N > 1 every per-job key lives in shard s = FNV-1a(lower-cased recipient) mod N under the hash
    tag {s} (docs/redis-contract.md "Shards"). A standalone redis-server has no CROSSSLOT check, so the tests
    check the names instead: MONITOR records every script call of a run and every call's keys (KEYS, and the
    key prefixes passed as arguments that the script builds keys from) must carry one tag.

    - test_every_job_once_across_shards: 400 recipients over 4 shards, 2 worker threads: each delivered
      exactly once, every shard got jobs (the recipient hash of push, recomputed here), counters per shard add
      up, `volley status` prints their sums, every key but the fleet-wide ones is tagged.
    - test_scripts_touch_one_slot: the MONITOR check above over a run with deliveries, a deferral, a hard
      bounce (suppression) and a pause (held jobs).
    - test_pause_resume_cancel_across_shards: pause holds the jobs of every shard (and moves every shard's
      <p>:{s}:ctl:version and <p>:ctl:version), resume brings them all back and they are delivered once;
      cancel ends every held job of every shard.
    - test_suppression_and_retry_across_shards: `volley suppress add` reaches every shard; a hard bounce
      suppresses its recipient for a later push; a deferred job comes back from its shard's retry set.
    - test_priority_first_within_each_shard: one thread, one connection: in each shard every high job is
      sent before the shard's bulk jobs.
    - test_stopped_worker_reclaimed_across_shards: a SIGSTOPped worker's pending jobs in all shards are
      taken over by another worker; every recipient delivered, duplicates only as counted in reclaimed.
    - test_throttle_rate_holds_with_tagged_keys: a provider's rate holds over two workers; every throttle key
      carries its (provider, IP) pair's tag; status and warmup work.
    - test_producer_writing_shard_0_only: another producer's jobs, all in shard 0, are delivered once.
"""

import re
import signal
import threading
import time

from volley_itest import (PREFIX, SPREAD, THROTTLE, make_recipients, max_in_window, rows_for, stop_process,
                          stop_workers, wait_for)

SHARDS = 4
THREADS = 2
FLEET_KEYS = re.compile(rf"^{PREFIX}:(worker:|ctl:version$|thr:warmup$)")  # the untagged ones
TAG = re.compile(r"\{(\d+)\}")


def shard_of(addr, n=SHARDS):
    """The shard `volley push` puts a recipient in: FNV-1a (32-bit) of the lower-cased address, mod n."""
    h = 2166136261
    for b in addr.lower().encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h % n


def skey(s, *parts):
    return ":".join((PREFIX, "{%d}" % s) + parts)


def conf(volley, route, **kw):
    kw.setdefault("threads", THREADS)
    return volley.write_conf(route, redis={"shards": SHARDS}, retry={"schedule": "10m"}, **kw)


def shard_stats(volley, cid):
    return [{k: int(v) for k, v in volley.r.hgetall(skey(s, "stats", cid)).items()} for s in range(SHARDS)]


def summed(volley, cid):
    out = {}
    for st in shard_stats(volley, cid):
        for k, v in st.items():
            out[k] = out.get(k, 0) + v
    return out


def events(volley):
    out = []
    for s in range(SHARDS):
        for eid, f in volley.r.xrange(skey(s, "events"), "-", "+"):
            out.append(dict(f, _shard=s, _id=eid))
    return out


def status_row(volley, cid):
    """The counters `volley status CID` prints for the campaign, by column name."""
    p = volley.status(cid)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["CAMPAIGN"])
    cols = lines[head].split()
    row = next(ln.split() for ln in lines[head + 1:] if ln.split()[:1] == [cid])
    return p.stdout, {c.lower(): row[i] for i, c in enumerate(cols)}


def test_every_job_once_across_shards(volley, smtp_receiver):
    rx = smtp_receiver()
    conf(volley, rx.hostport)
    rows = make_recipients(400)
    cid = volley.push_rows(rows)
    per = shard_stats(volley, cid)
    want = [sum(1 for r in rows if shard_of(r["email"]) == s) for s in range(SHARDS)]
    assert [st.get("queued", 0) for st in per] == want, (per, want)
    assert all(n > 0 for n in want), want
    for s in range(SHARDS):  # every shard has its copy of the campaign (its scripts read only their slot)
        assert volley.r.hget(skey(s, "campaign", cid), "subject"), s
    assert not volley.r.exists(f"{PREFIX}:jobs"), "nothing is written under the unsharded names"

    run = volley.run_worker()
    assert "queue drained" in run.log
    got = [a.lower() for m in rx.messages for a in m.rcpt_tos]
    assert sorted(got) == sorted(r["email"] for r in rows), "every recipient exactly once"
    per = shard_stats(volley, cid)
    assert [st.get("delivered", 0) for st in per] == want, per
    evs = events(volley)
    assert len(evs) == 400 and all(shard_of(e["to"]) == e["_shard"] for e in evs)

    out, row = status_row(volley, cid)
    assert row["queued"] == "400" and row["delivered"] == "400", out
    assert f"{SHARDS} shards" in out, out
    m = re.search(r"events\s+(\d+)", out)
    assert m and int(m.group(1)) == 400, out
    for k in volley.r.scan_iter(count=1000):
        assert FLEET_KEYS.match(k) or TAG.search(k), f"untagged key {k}"


class Monitor:
    """MONITOR on a raw connection in a thread: every EVAL/EVALSHA line the server reported (quoted arguments)."""

    def __init__(self, volley):
        import socket
        self.calls = []
        self.sock = socket.create_connection(("127.0.0.1", volley.redis.port))
        self.sock.sendall(b"MONITOR\r\n")
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                *lines, buf = buf.split(b"\r\n")
                for ln in lines:
                    text = ln.decode("utf-8", "replace")
                    if re.search(r'\] "(?i:evalsha|eval)" ', text):
                        self.calls.append(text)
        except OSError:
            pass  # closed at stop()

    def stop(self):
        import socket
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.t.join(5)


def split_monitor(line):
    """The arguments of a MONITOR command line ("EVALSHA" "sha" "2" "k1" ...), unquoted."""
    return [a.encode().decode("unicode_escape") for a in re.findall(r'"((?:[^"\\]|\\.)*)"', line)]


def test_scripts_touch_one_slot(volley, smtp_receiver):
    rx = smtp_receiver(reject=["bounce*"], defer=["later*"])
    conf(volley, rx.hostport, queue={"suppress_hard_bounces": "yes"})
    mon = Monitor(volley)
    try:
        rows = make_recipients(60) + rows_for(["bounce1@example.test", "later1@example.test"])
        volley.push_rows(rows)
        held = volley.push_rows(make_recipients(20, prefix="held"), name="held", cid="held")
        assert volley.run("campaign", "-c", volley.conf, "pause", held).returncode == 0
        volley.run_worker()
        assert volley.run("campaign", "-c", volley.conf, "resume", held).returncode == 0
        volley.run_worker()
        assert volley.run("campaign", "-c", volley.conf, "cancel", held).returncode == 0
        time.sleep(0.5)
    finally:
        mon.stop()
    assert len(mon.calls) > 10, mon.calls
    kinds = set()
    for call in mon.calls:
        args = split_monitor(call[call.index("] ") + 2:])
        nkeys = int(args[2])
        assert nkeys >= 1, f"a script call names no key, so no cluster router can place it: {args[:6]}"
        keys = args[3:3 + nkeys]
        # key names and key prefixes the script builds names from (stats, hold, campaign prefixes)
        named = keys + [a for a in args[3 + nkeys:] if a.startswith(PREFIX + ":")]
        tags = {m.group(1) for m in (TAG.search(k) for k in named) if m}
        untagged = [k for k in named if not TAG.search(k) and not FLEET_KEYS.match(k)]
        assert len(tags) <= 1 and not untagged, f"script call spans slots: {args[:3 + nkeys + 8]}"
        kinds.add(args[1][:12] + "/" + str(nkeys))
    print(f"{len(mon.calls)} script calls, {len(kinds)} kinds: {sorted(kinds)}")
    assert len(kinds) >= 4, kinds  # intake, record, control ... were all seen


def test_pause_resume_cancel_across_shards(volley, smtp_receiver):
    rx = smtp_receiver()
    conf(volley, rx.hostport)
    rows = make_recipients(120)
    cid = volley.push_rows(rows, cid="pr")
    ctl = lambda *a: volley.run("campaign", "-c", volley.conf, *a, cid)
    assert ctl("pause").returncode == 0
    for s in range(SHARDS):
        assert volley.r.hget(skey(s, "campaign", cid), "state") == "paused", s
        assert volley.r.get(skey(s, "ctl", "version")) == "1", s  # what a worker reads with the shard's jobs
    assert volley.r.get(f"{PREFIX}:ctl:version") == "1"  # what it polls while holding messages
    volley.run_worker()
    assert rx.messages == [], "nothing of a paused campaign is sent"
    held = [volley.r.xlen(skey(s, "hold", cid)) for s in range(SHARDS)]
    assert sum(held) == 120 and all(h > 0 for h in held), held
    out, row = status_row(volley, cid)
    assert row["queued"] == "120", out
    show = ctl("show")
    assert show.returncode == 0 and re.search(r"held\s+120", show.stdout), show.stdout

    r = ctl("resume")
    assert r.returncode == 0 and "120" in r.stdout + r.stderr, (r.stdout, r.stderr)
    volley.run_worker()
    got = sorted(a.lower() for m in rx.messages for a in m.rcpt_tos)
    assert got == sorted(x["email"] for x in rows)
    assert summed(volley, cid).get("delivered") == 120

    rows2 = make_recipients(80, prefix="cx")
    c2 = volley.push_rows(rows2, name="c2", cid="cx")
    assert volley.run("campaign", "-c", volley.conf, "pause", c2).returncode == 0
    volley.run_worker()
    r = volley.run("campaign", "-c", volley.conf, "cancel", c2)
    assert r.returncode == 0, r.stderr
    st = summed(volley, c2)
    assert st.get("cancelled") == 80 and st.get("delivered", 0) == 0, st
    assert all(not volley.r.exists(skey(s, "hold", c2)) for s in range(SHARDS))
    assert volley.run("campaign", "-c", volley.conf, "resume", c2).returncode != 0, "cancelled is final"
    for s in range(SHARDS):
        assert volley.r.hget(skey(s, "campaign", c2), "state") == "cancelled", s


def test_suppression_and_retry_across_shards(volley, smtp_receiver):
    def rule(addr, n):
        if addr.startswith("later") and n == 1:
            return "451 4.3.0 try again"
        return None

    rx = smtp_receiver(reject=["gone*"], rule=rule)
    volley.write_conf(rx.hostport, redis={"shards": SHARDS}, threads=THREADS,
                      retry={"schedule": "1s", "jitter": 0}, queue={"suppress_hard_bounces": "yes"})
    blocked = [f"blocked{i}@example.test" for i in range(8)]
    r = volley.run("suppress", "-c", volley.conf, "add", *blocked)
    assert r.returncode == 0, r.stderr
    for s in range(SHARDS):
        assert volley.r.smembers(skey(s, "suppressed")) >= set(blocked), s
    lst = volley.run("suppress", "-c", volley.conf, "list")
    assert sorted(lst.stdout.split()) == sorted(blocked), "each address listed once"

    gone = [f"gone{i}@example.test" for i in range(6)]
    later = [f"later{i}@example.test" for i in range(6)]
    ok = [f"ok{i}@example.test" for i in range(20)]
    cid = volley.push_rows(rows_for(blocked + gone + later + ok), cid="sr")
    w = volley.start_worker()
    done = wait_for(lambda: summed(volley, cid).get("delivered", 0) >= 26, 30, step=0.1)
    assert stop_process(w, signal.SIGTERM) == 0
    assert done, summed(volley, cid)
    got = [a.lower() for m in rx.messages for a in m.rcpt_tos]
    assert sorted(got) == sorted(later + ok), got
    st = summed(volley, cid)
    assert st.get("suppressed") == 8 and st.get("bounced") == 6 and st.get("delivered") == 26, st
    assert st.get("deferred") == 6, st
    for a in gone:  # the hard bounce went into the suppression set of the shard the recipient lives in
        assert volley.r.sismember(skey(shard_of(a), "suppressed"), a), a
    chk = volley.run("suppress", "-c", volley.conf, "check", *gone)
    assert chk.returncode == 0, chk.stderr
    assert sorted(chk.stdout.splitlines()) == sorted(f"{a} suppressed" for a in gone), chk.stdout

    c2 = volley.push_rows(rows_for(gone + [f"new{i}@example.test" for i in range(4)]), name="again", cid="again")
    volley.run_worker()
    st2 = summed(volley, c2)
    assert st2.get("suppressed") == 6 and st2.get("delivered") == 4, st2


def test_priority_first_within_each_shard(volley, smtp_receiver):
    rx = smtp_receiver()
    conf(volley, rx.hostport, threads=1, connections=1, batch=8, max_inflight=8)
    bulk = make_recipients(160, prefix="bulk")
    high = make_recipients(12, prefix="high")
    volley.push_rows(bulk, cid="bulk")
    ini = volley.write_campaign(name="high.ini", cid="urgent")
    p = volley.run("push", "-c", volley.conf, "--campaign", ini, "--recipients",
                   volley.write_recipients(high, name="high.csv"), "--priority", "high")
    assert p.returncode == 0, p.stderr
    volley.run_worker()
    order = [a.lower() for m in rx.messages for a in m.rcpt_tos]
    assert len(order) == 172
    pos = {a: i for i, a in enumerate(order)}
    for s in range(SHARDS):
        hs = [pos[r["email"]] for r in high if shard_of(r["email"]) == s]
        bs = [pos[r["email"]] for r in bulk if shard_of(r["email"]) == s]
        if hs:
            assert max(hs) < min(bs), f"shard {s}: high at {sorted(hs)}, first bulk at {min(bs)}"


def test_stopped_worker_reclaimed_across_shards(volley, smtp_receiver):
    rx = smtp_receiver()
    # A takes jobs of every shard (one thread reads all four), then is stopped with them pending
    conf(volley, rx.hostport, threads=1, batch=16, max_inflight=64, queue={"claim_idle": "10s"})
    rows = make_recipients(300)
    cid = volley.push_rows(rows, cid="rc")
    # A's sends stall: its connections go to a port nobody answers quickly (a blackhole listener)
    import socket
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(1000)
    try:
        a = volley.write_conf(f"127.0.0.1:{hole.getsockname()[1]}", file="a.conf", name="wa",
                              redis={"shards": SHARDS}, threads=1, batch=16, max_inflight=64,
                              queue={"claim_idle": "10s"}, retry={"schedule": "10m"})
        wa = volley.start_worker(a, "wa")

        def pending():
            n = 0
            for s in range(SHARDS):
                for st in ("jobs",):
                    try:
                        n += volley.r.xpending(skey(s, st), "volley")["pending"]
                    except Exception:
                        pass
            return n
        assert wait_for(lambda: pending() >= 32, 20), pending()
        wa.send_signal(signal.SIGSTOP)
        stuck = {s: volley.r.xpending(skey(s, "jobs"), "volley")["pending"] for s in range(SHARDS)}
        assert sum(1 for v in stuck.values() if v > 0) >= 2, stuck

        conf(volley, rx.hostport, threads=THREADS, name="wb", queue={"claim_idle": "10s"})
        volley.run_worker(timeout=90)  # runs until the stopped worker's jobs are idle long enough to take
    finally:
        hole.close()
        if "wa" in locals():
            wa.send_signal(signal.SIGCONT)
            stop_process(wa, signal.SIGKILL)
    got = [x.lower() for m in rx.messages for x in m.rcpt_tos]
    assert set(got) == {r["email"] for r in rows}, "every recipient delivered"
    st = summed(volley, cid)
    dups = len(got) - len(set(got))
    assert st.get("reclaimed", 0) >= sum(stuck.values()) - dups, (st, stuck)
    assert dups <= st.get("reclaimed", 0), (dups, st)
    for s in range(SHARDS):
        assert volley.r.xpending(skey(s, "jobs"), "volley")["pending"] == 0, s


def test_throttle_rate_holds_with_tagged_keys(volley, volley_sink):
    """rate = 20/s over two worker processes with shards = 4: at most 20 + burst (1) + 2 in any sliding second,
    and every throttle key but the warm-up hash carries its (provider, IP) pair's tag, so each throttle script
    is one slot; `volley status` finds the pair in its tagged set; `volley warmup` works as unsharded."""
    sink = volley_sink()
    n = 100  # about 5 s at 20/s
    procs = []
    for name in ("ta", "tb"):
        volley.write_conf({"gmail.com": sink.hostport}, file=f"{name}.conf", name=name, preset=THROTTLE, **SPREAD,
                          redis={"shards": SHARDS}, retry={"schedule": "1s", "max_age": "1h"},
                          providers={"gmail": {"rate": "20/s", "connections": 4}})
    volley.push_rows(make_recipients(n, domains=("gmail.com",)), name="t")
    procs = [volley.start_worker(f"{name}.conf", name) for name in ("ta", "tb")]
    done = wait_for(lambda: sink.count() >= n, 60)  # ~5 s; a loaded machine (ASan, parallel jobs) is slower
    stop_workers(procs)
    sink.stop()
    times = [t for t, _src, _c, _r in sink.log_lines()]
    peak, at = max_in_window(times, 1000)
    assert done, f"only {sink.count()} of {n} arrived in 60 s"
    assert peak <= 23, f"{peak} messages in one second (from {at} ms) with rate = 20/s"
    thr = [k for k in volley.r.scan_iter(match=f"{PREFIX}:thr:*", count=1000)]
    assert any(":day:" in k and "{gmail:" in k for k in thr), thr  # the rate key expires with its last slot
    for k in thr:  # <p>:thr:{<pair>}:<kind>[:<day>]:<pair> or <p>:thr:{<pair>}:pairs
        m = re.match(rf"^{PREFIX}:thr:\{{([^}}]+)\}}:", k)
        assert k == f"{PREFIX}:thr:warmup" or (m and (k.endswith(":pairs") or k.endswith(":" + m.group(1)))), k
    st = volley.status()
    assert st.returncode == 0 and re.search(r"gmail:\S+\s+\S+/s", st.stdout), st.stdout
    w = volley.run("warmup", "-c", volley.conf, "start", "127.0.0.1", "2026-01-01")
    assert w.returncode == 0, w.stderr
    w = volley.run("warmup", "-c", volley.conf, "show")
    assert w.returncode == 0 and "127.0.0.1" in w.stdout, (w.stdout, w.stderr)


def test_producer_writing_shard_0_only(volley, smtp_receiver):
    """The contract for other producers: the campaign in shard 0's copy, every job in <p>:{0}:jobs, nothing
    spread. Workers with shards = 4 deliver them all once; status sums what is there."""
    rx = smtp_receiver()
    conf(volley, rx.hostport)
    r = volley.r
    cid = "raw0"
    r.hset(skey(0, "campaign", cid), mapping={"from": "Raw <raw@sender.test>", "subject": "Hi {{name}}",
                                              "text": "Hello {{name}}", "updated_ms": "1"})
    r.xgroup_create(skey(0, "jobs"), "volley", id="0", mkstream=True)
    addrs = [f"raw{i}@example.test" for i in range(30)]
    for i, a in enumerate(addrs):
        r.xadd(skey(0, "jobs"), {"campaign": cid, "to": a, "var.name": f"N{i}"})
    r.hincrby(skey(0, "stats", cid), "queued", len(addrs))
    volley.run_worker()
    got = sorted(x.lower() for m in rx.messages for x in m.rcpt_tos)
    assert got == sorted(addrs)
    out, row = status_row(volley, cid)
    assert row["queued"] == "30" and row["delivered"] == "30", out
