"""`volley campaign`, `volley suppress`, `volley status [--watch]` and `volley push --priority`
against a real redis-server.

The commands run through the real `volley` binary.
"""

import os
import pty
import re
import signal
import subprocess
import time

from volley_itest import PREFIX, binary


def push(volley, shop_campaign, conf, n, *extra, cid="spring"):
    ini = shop_campaign(cid=cid)
    csv = volley.dir / f"list-{cid}.csv"
    csv.write_text("email,token\n" + "".join(f"u{i}@example.test,{i}\n" for i in range(n)))
    return volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv, *extra)


def test_push_priority_high(shop_campaign, tmp_path, volley):
    r = volley.r
    conf = volley.write_conf()
    p = push(volley, shop_campaign, conf, 3, "--priority", "high")
    assert p.returncode == 0, p.stderr
    assert r.xlen(f"{PREFIX}:jobs:high") == 3 and r.xlen(f"{PREFIX}:jobs") == 0
    assert not any(g["name"] != "volley" for g in r.xinfo_groups(f"{PREFIX}:jobs:high"))
    # not a terminal: no progress bar, only the summary
    assert "\r" not in p.stderr and "#" not in p.stderr, p.stderr
    p = push(volley, shop_campaign, conf, 1, "--priority", "urgent")
    assert p.returncode == 2 and "--priority" in p.stderr


def test_push_progress_bar_on_a_terminal(shop_campaign, tmp_path, volley):
    r = volley.r
    conf = volley.write_conf()
    ini = shop_campaign()
    csv = tmp_path / "big.csv"
    csv.write_text("email\n" + "".join(f"u{i}@example.test\n" for i in range(5000)))
    master, slave = pty.openpty()
    p = subprocess.run([str(binary("volley")), "push", "-c", conf, "--campaign", ini, "--recipients", csv],
                       stdout=subprocess.PIPE, stderr=slave, timeout=30)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    assert p.returncode == 0
    text = err.decode()
    assert re.search(r"\[#*\.*\]\s+\d+%\s+\d+ rows queued", text), text
    assert "5000 jobs queued" in text


def test_campaign_pause_resume_cancel_show(shop_campaign, tmp_path, volley):
    r = volley.r
    conf = volley.write_conf()
    assert push(volley, shop_campaign, conf, 4).returncode == 0
    p = volley.run("campaign", "-c", conf, "pause", "spring")
    assert p.returncode == 0 and "paused" in p.stdout, p.stderr
    assert r.hget(f"{PREFIX}:campaign:spring", "state") == "paused"
    # what a worker does with jobs of a paused campaign: move them to the hold stream
    for _id, f in r.xrange(f"{PREFIX}:jobs", "-", "+")[:3]:
        r.xadd(f"{PREFIX}:hold:spring", f)
        r.xdel(f"{PREFIX}:jobs", _id)
    p = volley.run("campaign", "-c", conf, "show", "spring")
    assert p.returncode == 0, p.stderr
    assert re.search(r"^\s*state\s+paused\s*$", p.stdout, re.M), p.stdout
    assert re.search(r"^\s*held\s+3\s*$", p.stdout, re.M), p.stdout
    assert re.search(r"^\s*queued\s+4\s*$", p.stdout, re.M), p.stdout

    p = volley.run("status", "-c", conf)
    assert re.search(r"^\s*held \(paused\)\s+3\s*$", p.stdout, re.M), p.stdout
    assert re.search(r"^\s*spring\s+4\s+0\s+0\s+0\s+0\s+0\s+0\s+3\s+paused\s*$", p.stdout, re.M), p.stdout

    p = volley.run("campaign", "-c", conf, "resume", "spring")
    assert p.returncode == 0 and "3 held jobs back" in p.stdout, (p.stdout, p.stderr)
    assert r.xlen(f"{PREFIX}:jobs") == 4 and not r.exists(f"{PREFIX}:hold:spring")

    # pause again, hold two, cancel: the held ones end as cancelled with an event each
    assert volley.run("campaign", "-c", conf, "pause", "spring").returncode == 0
    for _id, f in r.xrange(f"{PREFIX}:jobs", "-", "+")[:2]:
        r.xadd(f"{PREFIX}:hold:spring", f)
        r.xdel(f"{PREFIX}:jobs", _id)
    p = volley.run("campaign", "-c", conf, "cancel", "spring")
    assert p.returncode == 0 and "2 held and 0 deferred" in p.stdout, (p.stdout, p.stderr)
    assert r.hget(f"{PREFIX}:stats:spring", "cancelled") == "2"
    ev = volley.events()
    assert len(ev) == 2 and all(e["status"] == "cancelled" and e["campaign"] == "spring" for e in ev), ev
    # queued = cancelled + still in the stream (the worker cancels those when it reads them)
    assert int(r.hget(f"{PREFIX}:stats:spring", "queued")) == 2 + r.xlen(f"{PREFIX}:jobs")

    p = volley.run("campaign", "-c", conf, "resume", "spring")
    assert p.returncode == 2 and "cancelled" in p.stderr
    p = volley.run("campaign", "-c", conf, "pause", "nosuch")
    assert p.returncode == 2 and "no campaign" in p.stderr
    p = volley.run("campaign", "-c", conf, "explode", "spring")
    assert p.returncode == 2 and "unknown action" in p.stderr


def test_suppress_commands(tmp_path, volley):
    r = volley.r
    conf = volley.write_conf()
    p = volley.run("suppress", "-c", conf, "add", "Ann@Example.test", "bob@example.test")
    assert p.returncode == 0 and p.stdout.splitlines() == ["Ann@Example.test added", "bob@example.test added"]
    assert r.smembers(f"{PREFIX}:suppressed") == {"ann@example.test", "bob@example.test"}
    p = volley.run("suppress", "-c", conf, "add", "ann@example.test")
    assert p.stdout.strip() == "ann@example.test already suppressed"
    p = volley.run("suppress", "-c", conf, "check", "ANN@example.test", "cat@example.test")
    assert p.stdout.splitlines() == ["ANN@example.test suppressed", "cat@example.test not suppressed"]
    p = volley.run("suppress", "-c", conf, "remove", "bob@example.test")
    assert p.stdout.strip() == "bob@example.test removed"
    p = volley.run("suppress", "-c", conf, "list")
    assert p.returncode == 0 and p.stdout.splitlines() == ["ann@example.test"]
    p = volley.run("suppress", "-c", conf, "add", "not an address")
    assert p.returncode == 2 and "not a valid address" in p.stderr
    assert r.scard(f"{PREFIX}:suppressed") == 1


def test_status_workers_and_high(shop_campaign, tmp_path, volley):
    r = volley.r
    conf = volley.write_conf()
    assert push(volley, shop_campaign, conf, 2, "--priority", "high").returncode == 0
    # a claimed name as `volley worker` writes it (queue/fleet.h); a key of another type is not listed
    r.hset(f"{PREFIX}:worker:mta1", mapping={"token": "t1", "pid": "42", "host": "box1", "beat_ms": "1",
                                              "info": "pid=42 threads=4"})
    r.pexpire(f"{PREFIX}:worker:mta1", 10000)
    r.hset(f"{PREFIX}:worker:gone", mapping={"token": "t2", "pid": "1", "host": "box1", "info": "pid=1"})
    r.pexpire(f"{PREFIX}:worker:gone", 1)
    r.set(f"{PREFIX}:worker:other", "pid=7", px=10000)
    time.sleep(0.05)
    r.sadd(f"{PREFIX}:suppressed", "x@example.test")
    p = volley.run("status", "-c", conf)
    assert p.returncode == 0, p.stderr
    assert re.search(r"^\s*high stream length\s+2\s*$", p.stdout, re.M), p.stdout
    assert re.search(r"^\s*suppressed addresses\s+1\s*$", p.stdout, re.M), p.stdout
    assert re.search(r"^workers alive: 1$", p.stdout, re.M), p.stdout
    assert re.search(r"^\s*mta1\s+\d+\.\ds\s+pid=42 threads=4 host=box1\s*$", p.stdout, re.M), p.stdout
    assert "gone" not in p.stdout and "other" not in p.stdout


def test_status_watch_redraws(shop_campaign, tmp_path, volley):
    r = volley.r
    conf = volley.write_conf()
    assert push(volley, shop_campaign, conf, 10).returncode == 0
    p = subprocess.Popen([str(binary("volley")), "status", "-c", str(conf), "--watch"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1.2)
    r.hincrby(f"{PREFIX}:stats:spring", "delivered", 5)  # as a worker would, between two frames
    time.sleep(1.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=5)
    assert p.returncode == 0, err
    frames = out.split("\x1b[H\x1b[2J")[1:]
    assert len(frames) >= 2, out
    for f in frames:
        assert "RATE/s" in f and "DONE" in f, f
    # the last frame shows the progress and a positive rate for the interval in which 5 were delivered
    rows = [re.search(r"^\s*spring\s+10\s+5\s.*\s(\d+\.\d)%\s+(\S+)\s*$", f, re.M) for f in frames]
    got = [m for m in rows if m]
    assert got and got[-1].group(1) == "50.0", frames[-1]
    assert any(m.group(2) not in ("-", "0") for m in got), [m.group(0) for m in got]
