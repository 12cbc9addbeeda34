"""Event export that loses nothing (`volley events`, docs/redis-contract.md "Exporting events").

- `volley events --follow` SIGKILLed mid-campaign and restarted, appending to the same file: every event of
  the stream is in the file at least once, none missing.
- `--webhook` to a collector (http.server in this process) that fails half of the posts: it ends up with
  every event.
- Trimming keeps what an export group has not read, drops what it has, and only the hard ceiling
  ([events] max_entries) removes unread events: counted, logged by the worker and the exporter, shown by
  `volley status`.
Real redis-server, real worker, volley-sink as the receiver; everything on loopback.
"""

import http.server
import json
import signal
import subprocess
import threading
import time

from volley_itest import binary, make_recipients, stop_process


def stream_ids(volley):
    """Every event id now in <p>:events."""
    return {i for i, _f in volley.r.xrange(volley.key("events"), "-", "+")}


def witness(volley):
    """An export group that never reads: trimming then keeps every event, the ground truth to compare with
    (an exporter's own group lets the stream drop what it has read)."""
    p = volley.run("events", "-c", volley.conf, "--group", "witness")
    assert p.returncode == 0 and p.stdout == "", p.stderr


def group_done(volley, group):
    """The export group has read and acknowledged everything in the stream."""
    for g in volley.r.xinfo_groups(volley.key("events")):
        if g["name"] == group:
            return g["lag"] == 0 and g["pending"] == 0
    return False


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def start_export(volley, out, *args):
    """`volley events --follow ARGS` in the background, stdout appended to out (stderr beside it)."""
    err = open(str(out) + ".err", "ab")
    with open(out, "ab") as f:
        return subprocess.Popen([str(binary("volley")), "events", "-c", str(volley.conf), "--follow", *args],
                                stdout=f, stderr=err, cwd=volley.dir)


def read_lines(path):
    """The JSON events of an export file (a line torn by a kill was ended by the next run: skipped here)."""
    out = []
    for line in open(path, encoding="utf-8"):
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def test_follow_killed_and_restarted_misses_nothing(volley, volley_sink):
    n = 3000
    sink = volley_sink("--delay-ms", "2")
    volley.write_conf(sink.hostport, connections=4)
    out = volley.dir / "events.jsonl"
    witness(volley)
    exp = start_export(volley, out, "--group", "archive", "--batch", "50")
    cid = volley.push(volley.write_campaign(), volley.write_recipients(make_recipients(n)))
    w = volley.start_worker(exit_when_idle=True)
    wait_for(lambda: out.exists() and out.stat().st_size > 0 and len(read_lines(out)) >= 300, 60,
             "the exporter's first events")
    assert w.poll() is None, "the campaign ended before the exporter was killed: the test interrupts nothing"
    stop_process(exp, signal.SIGKILL)
    killed_at = len(read_lines(out))
    time.sleep(0.5)  # events keep coming while no exporter runs
    exp = start_export(volley, out, "--group", "archive", "--batch", "50")
    assert volley.wait_exit(w, 120) == 0
    wait_for(lambda: group_done(volley, "archive"), 60, "the exporter to catch up")
    assert stop_process(exp, signal.SIGTERM) == 0, open(str(out) + ".err").read()

    got = read_lines(out)
    ids = stream_ids(volley)
    assert len(ids) >= n
    printed = {e["id"] for e in got}
    missing = ids - printed
    assert not missing, f"{len(missing)} of {len(ids)} events never exported (killed after {killed_at} lines)"
    delivered = {e["to"] for e in got if e["status"] == "delivered" and e["campaign"] == cid}
    assert len(delivered) == n, f"{len(delivered)} delivered recipients exported of {n}"
    # readable form: the same values the stream decodes to
    want = {e["_id"]: e for e in volley.events()}
    for e in got[:50] + got[-50:]:
        e2 = dict(want[e["id"]])
        e2["id"] = e2.pop("_id")
        assert e == e2, (e, e2)
    print(f"{len(got)} lines for {len(ids)} events ({len(got) - len(printed)} again after the kill at {killed_at})")


class FlakyCollector(http.server.BaseHTTPRequestHandler):
    """Takes POSTed JSON arrays of events; answers 500 to every other post (before reading it as taken)."""
    lock = threading.Lock()
    posts = 0
    failed = 0
    events = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with FlakyCollector.lock:
            FlakyCollector.posts += 1
            fail = FlakyCollector.posts % 2 == 1
            if fail:
                FlakyCollector.failed += 1
            else:
                FlakyCollector.events += json.loads(body)
        self.send_response(500 if fail else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_failing_half_the_posts_gets_every_event(volley, volley_sink):
    n = 1500
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyCollector)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        sink = volley_sink()
        volley.write_conf(sink.hostport, connections=4)
        url = f"http://127.0.0.1:{srv.server_address[1]}/events"
        witness(volley)
        out = volley.dir / "hook.out"
        exp = start_export(volley, out, "--webhook", url, "--batch", "200")
        volley.push(volley.write_campaign(), volley.write_recipients(make_recipients(n)))
        volley.run_worker()
        wait_for(lambda: group_done(volley, "export"), 120, "the webhook exporter to catch up")
        assert stop_process(exp, signal.SIGTERM) == 0
    finally:
        srv.shutdown()
        srv.server_close()
    ids = stream_ids(volley)
    assert len(ids) == n
    got = {e["id"] for e in FlakyCollector.events}
    assert ids - got == set(), f"{len(ids - got)} of {len(ids)} events never reached the collector"
    assert FlakyCollector.failed >= 1 and FlakyCollector.posts >= 2 * FlakyCollector.failed - 1
    log = open(str(out) + ".err").read()
    assert "webhook: HTTP 500; trying again" in log, log[-2000:]
    assert all(e["status"] == "delivered" for e in FlakyCollector.events)


def export_once(volley, group):
    """`volley events --group G` (no --follow): everything G has not read yet; returns the events."""
    p = volley.run("events", "-c", volley.conf, "--group", group)
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines()], p.stderr


def test_trimming_keeps_unexported_and_ceiling_warns(volley, volley_sink):
    sink = volley_sink()
    volley.write_conf(sink.hostport, connections=4, events={"max_entries": 100000})
    r, key = volley.r, volley.key("events")
    # an export group that has read nothing yet: created by a first run, on an empty stream
    evs, _ = export_once(volley, "slow")
    assert evs == [] and r.exists(key)
    volley.push(volley.write_campaign(), volley.write_recipients(make_recipients(1500)))
    volley.run_worker()
    assert r.xlen(key) == 1500, "events the export group has not read were trimmed"
    first, _ = export_once(volley, "slow")
    assert len(first) == 1500 and {e["id"] for e in first} == stream_ids(volley)

    # read now: the next batches trim them (whole stream nodes, so a node's worth may stay), never the new ones
    volley.push(volley.write_campaign(name="b.ini"), volley.write_recipients(make_recipients(400, prefix="b"),
                                                                            name="b.csv"))
    volley.run_worker()
    assert r.xlen(key) < 1500, f"{r.xlen(key)} entries: what the group read was not trimmed"
    second, _ = export_once(volley, "slow")
    assert len(second) == 400 and all(e["to"].startswith("b") for e in second)
    assert r.hget(key + ":overrun", "entries") is None

    # the hard ceiling: an exporter that stopped reading does not hold more than max_entries
    volley.write_conf(sink.hostport, connections=4, events={"max_entries": 1000})
    volley.push(volley.write_campaign(name="c.ini"), volley.write_recipients(make_recipients(3000, prefix="c"),
                                                                            name="c.csv"))
    run = volley.run_worker()
    lost = int(r.hget(key + ":overrun", "entries") or 0)
    assert lost > 0 and r.xlen(key) <= 1000 + 200, (lost, r.xlen(key))
    assert "events stream at its ceiling" in run.log, run.tail()
    st = volley.status().stdout
    assert f"events lost (ceiling)" in st and str(lost) in st and "WARNING" in st, st
    third, err = export_once(volley, "slow")
    assert "ceiling" in err, err
    assert len(third) == r.xlen(key) and len(third) + lost >= 3000
