"""
NAME
    test_fleet_identity - worker names are claimed in Redis: one config never multiplies deliveries

DESCRIPTION
    A worker's name is the stem of its consumer names in the job group; two live processes sharing
    one would read each other's pending entries and send them twice. What a user relies on:
    - three `volley worker -c same.conf` processes (no name configured) take three names
      (<host>-0, -1, -2); one SIGKILLed mid-run and restarted: every recipient delivered,
      duplicates only the few in flight at the kill and at most the `reclaimed` counter;
    - an explicit name held by a live process: exit 2, naming the pid, host and heartbeat age;
    - a clean exit (SIGTERM, --exit-when-idle) gives the name back at once: `volley status` no
      longer lists it and a new worker can take it immediately;
    - a worker whose name was taken over (its heartbeat lapsed, another process claimed it) stops
      taking jobs under that name and exits 1;
    - with Redis down at start a worker waits for it to claim its name (SIGTERM ends the wait, exit 0).
"""

import re
import signal
import socket
import time
from collections import Counter

from volley_itest import make_recipients, stop_process, tail, wait_for


HOST = socket.gethostname()


def workers_listed(volley):
    """{name: info} of the `workers alive` table of `volley status`."""
    p = volley.status()
    assert p.returncode == 0, p.stderr
    text = p.stdout.split("workers alive:")[1].split("\n\n")[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s+(\S+)\s+\d+\.\ds\s+(pid=.*)$", text, re.M)}


def claim(volley, name):
    return volley.r.hgetall(volley.key("worker", name))


def test_three_workers_one_config_one_killed(volley, volley_sink):
    n = 3000
    sink = volley_sink("--delay-ms", "5", "--threads", "2")
    rows = make_recipients(n, prefix="same")
    # no [worker] name (what a user writes first)
    conf = volley.write_conf(sink.hostport, file="shared.conf", name=None, threads=2, connections=4, batch=32,
                             max_inflight=64, queue={"claim_idle": "10s"})
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows), timeout=30)

    # the first two finish the run (--exit-when-idle waits for the victim's jobs too); the third is killed
    ws = [volley.start_worker(conf, f"w{i}", exit_when_idle=i < 2) for i in range(3)]
    names = {f"{HOST}-{i}" for i in range(3)}
    assert wait_for(lambda: set(workers_listed(volley)) >= names, 15), (
        f"three names not listed: {workers_listed(volley)}\n{tail(ws[0].logpath)}")
    pids = {claim(volley, nm)["pid"] for nm in names}
    assert pids == {str(w.pid) for w in ws}, pids

    assert wait_for(lambda: len(sink.rcpts()) >= n // 4, 60), f"run did not get going:\n{tail(ws[0].logpath)}"
    victim = ws[2]
    victim_name = next(nm for nm in names if claim(volley, nm).get("pid") == str(victim.pid))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    # restarted: it takes a free name (the victim's once its heartbeat expired) and helps finish
    again = volley.start_worker(conf, "w2again", exit_when_idle=True)
    for w in (ws[0], ws[1], again):
        assert volley.wait_exit(w, 120) == 0, tail(w.logpath)
    new_name = re.search(r"volley worker (\S+):", again.logpath.read_text()).group(1)
    assert new_name.startswith(f"{HOST}-"), new_name

    got = sink.final_rcpts()
    counts = Counter(got)
    missing = {r["email"] for r in rows} - set(counts)
    assert not missing, f"{len(missing)} recipients never delivered, e.g. {sorted(missing)[:5]}"
    st = volley.stats(cid)
    dups = len(got) - len(counts)
    assert st.get("delivered") == n, st
    assert dups <= st.get("reclaimed", 0), (dups, st)
    assert dups <= 2 * 64, f"{dups} duplicates: more than the victim could hold ({st})"
    assert volley.r.xpending(volley.key("jobs"), "volley")["pending"] == 0
    assert workers_listed(volley) == {}, "clean exits must leave no worker listed"
    print(f"names {sorted(names)}; victim {victim_name}, restarted as {new_name}; {dups} duplicates, stats {st}")


def test_explicit_name_in_use_exits_2(volley, volley_sink):
    sink = volley_sink()
    conf = volley.write_conf(sink.hostport, file="mta1.conf", name="mta1", threads=1)
    a = volley.start_worker(conf, "a")
    assert wait_for(lambda: claim(volley, "mta1").get("pid") == str(a.pid), 10), tail(a.logpath)
    # the same name from the config file, and from --name with another config
    p = volley.run("worker", "-c", conf, timeout=20)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert re.search(rf"worker name 'mta1' is in use by pid {a.pid} on host {re.escape(HOST)} "
                     r"\(heartbeat \d+\.\d s ago\)", p.stderr), p.stderr
    other = volley.write_conf(sink.hostport, file="shared.conf", name=None, threads=1)
    p = volley.run("worker", "-c", other, "--name", "mta1", timeout=20)
    assert p.returncode == 2 and f"in use by pid {a.pid}" in p.stderr, p.stderr
    assert claim(volley, "mta1")["pid"] == str(a.pid), "a refused worker must not touch the holder's claim"
    assert a.poll() is None, "the holder must keep running"
    p = volley.run("worker", "-c", conf, "--name", "bad name")
    assert p.returncode == 2 and "--name" in p.stderr, p.stderr


def test_clean_exit_releases_name(volley, volley_sink, recipients):
    sink = volley_sink()
    conf = volley.write_conf(sink.hostport, file="rel.conf", name="rel", threads=2)
    a = volley.start_worker(conf, "a")
    assert wait_for(lambda: "rel" in workers_listed(volley), 10), tail(a.logpath)
    a.send_signal(signal.SIGTERM)
    assert volley.wait_exit(a, 20) == 0, tail(a.logpath)
    # at once: not listed, key gone, and the name is free for a new process
    assert "rel" not in workers_listed(volley)
    assert not volley.r.exists(volley.key("worker", "rel"))
    b = volley.start_worker(conf, "b")
    assert wait_for(lambda: claim(volley, "rel").get("pid") == str(b.pid), 5), tail(b.logpath)
    stop_process(b, signal.SIGTERM)

    # --exit-when-idle is a clean exit too, with an automatic name
    cid = volley.push(volley.write_campaign(), volley.write_recipients(recipients(20)))
    auto = volley.write_conf(sink.hostport, file="shared.conf", name=None, threads=1)
    c = volley.start_worker(auto, "c", exit_when_idle=True)
    assert volley.wait_exit(c, 60) == 0, tail(c.logpath)
    assert volley.stats(cid).get("delivered") == 20
    assert volley.r.keys(volley.key("worker", "*")) == []
    assert workers_listed(volley) == {}


def test_name_taken_over_stops_worker(volley, volley_sink, recipients):
    sink = volley_sink("--delay-ms", "20")
    conf = volley.write_conf(sink.hostport, file="lapse.conf", name="lapse", threads=2)
    a = volley.start_worker(conf, "a")
    key = volley.key("worker", "lapse")
    assert wait_for(lambda: claim(volley, "lapse").get("pid") == str(a.pid), 10), tail(a.logpath)
    # what another process does after our heartbeat lapsed: the name is claimed with its token
    volley.r.hset(key, mapping={"token": "f" * 32, "pid": "4242", "host": "elsewhere.test"})
    rc = volley.wait_exit(a, 15)
    assert rc == 1, f"exit {rc}:\n{tail(a.logpath)}"
    log = a.logpath.read_text()
    assert "worker name 'lapse' was lost: pid 4242 on host elsewhere.test holds it now" in log, log[-2000:]
    assert claim(volley, "lapse")["token"] == "f" * 32, "the new holder's claim must be left alone"
    # nothing is taken under that name after the loss
    cid = volley.push(volley.write_campaign(), volley.write_recipients(recipients(5)))
    time.sleep(1.0)
    assert volley.stats(cid).get("delivered", 0) == 0


def test_waits_for_redis_to_claim(aof_volley, volley_sink, recipients):
    """Redis down at start: the worker waits (one warning), claims its name once Redis is back, delivers;
    SIGTERM during the wait exits 0."""
    volley, r = aof_volley, aof_volley.redis
    sink = volley_sink()
    conf = volley.write_conf(sink.hostport, file="patient.conf", name="patient", threads=1)
    cid = volley.push(volley.write_campaign(), volley.write_recipients(recipients(10)))
    r.kill()
    w = volley.start_worker(conf, "w", exit_when_idle=True)
    quitter = volley.start_worker(conf, "q", args=["--name", "quitter"])
    assert wait_for(lambda: "waiting for redis to claim a worker name" in w.logpath.read_text(), 10), \
        tail(w.logpath)
    assert w.poll() is None
    assert wait_for(lambda: "waiting for redis" in quitter.logpath.read_text(), 10), tail(quitter.logpath)
    quitter.send_signal(signal.SIGTERM)
    assert volley.wait_exit(quitter, 10) == 0, tail(quitter.logpath)
    r.start()
    assert volley.wait_exit(w, 60) == 0, tail(w.logpath)
    assert volley.stats(cid).get("delivered") == 10
    assert not volley.r.exists(volley.key("worker", "patient"))
    assert w.logpath.read_text().count("waiting for redis") == 1
