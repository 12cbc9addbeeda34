"""
NAME
    test_fleet_push_status - a million-row list, and the live fleet view

DESCRIPTION
    test_push_million_rows_with_bad_rows: a 1,000,000-row CSV (about 50 MB, made in tmp) with 30 bad
    rows scattered through it (wrong column count, no '@', two '@', an unterminated quote on the last
    line). `volley push` exits 0, prints only the campaign id, queues exactly the good rows (stats
    queued = XLEN <p>:jobs = 999,970) and lists every bad row on stderr as
    `volley push: FILE:LINE: skipped: reason` with its line number (the header is line 1), plus a
    summary naming both counts.

    test_status_watch_shows_live_workers: two worker processes (names watch-a, watch-b) send to a slow
    volley-sink; `volley status --watch` runs ~2.5 s and is stopped with SIGINT: it exits 0, drew
    at least two frames (clear-screen + header each), lists both live workers with their heartbeat
    info, shows the campaign with DONE and RATE/s columns, and the delivered count changes between
    frames (it is live, not one snapshot repeated).
"""

import re
import signal
import subprocess
import time

from volley_itest import binary, make_recipients, stop_process, tail, wait_for


ROWS = 1_000_000


def test_push_million_rows_with_bad_rows(volley, tmp_path):
    volley.write_conf("127.0.0.1:9")  # push only: the route is never used
    bad_at = {}  # line number -> kind
    kinds = ["columns", "noat", "twoat"]
    bad_rows = set(sorted(range(1234, ROWS - 1, 34_449))[:29])  # 29 rows spread over the file
    path = tmp_path / "million.csv"
    with open(path, "w", newline="") as f:
        f.write("email,name,token\n")
        chunk = []
        for i in range(ROWS):
            line = i + 2  # the header is line 1
            if i == ROWS - 1:
                chunk.append(f'"unterminated{i}@example.test,Name{i},tok{i}\n')
                bad_at[line] = "quote"
            elif i in bad_rows:
                k = kinds[len(bad_at) % 3]
                bad_at[line] = k
                chunk.append({"columns": f"user{i}@example.test,Name{i}\n",
                              "noat": f"user{i}.example.test,Name{i},tok{i}\n",
                              "twoat": f"user{i}@a@example.test,Name{i},tok{i}\n"}[k])
            else:
                chunk.append(f"user{i:07d}@example.test,Name{i},tok{i:07d}\n")
            if len(chunk) >= 50_000:
                f.write("".join(chunk))
                chunk = []
        f.write("".join(chunk))
    assert len(bad_at) == 30
    good = ROWS - len(bad_at)
    size_mb = path.stat().st_size / 1e6

    t = time.monotonic()
    p = volley.run("push", "-c", volley.conf, "--campaign", volley.write_campaign(cid="million"),
                   "--recipients", path, timeout=90)
    took = time.monotonic() - t
    assert p.returncode == 0, f"push exit {p.returncode}: {p.stderr[-2000:]}"
    assert p.stdout.strip() == "million", p.stdout
    assert volley.stats("million").get("queued") == good, volley.stats("million")
    assert volley.r.xlen(volley.key("jobs")) == good

    reported = {}
    for ln in p.stderr.splitlines():
        m = re.match(r"volley push: (.+):(\d+): skipped: (.+)$", ln)
        if m:
            assert m.group(1).endswith("million.csv"), ln
            reported[int(m.group(2))] = m.group(3)
    assert set(reported) == set(bad_at), (f"bad rows reported at lines {sorted(reported)}, "
                                          f"expected {sorted(bad_at)}")
    summary = [ln for ln in p.stderr.splitlines() if "jobs queued" in ln]
    assert summary and f"{good} jobs queued" in summary[-1] and "30 bad rows" in summary[-1], summary
    print(f"{size_mb:.0f} MB, {ROWS} rows pushed in {took:.1f}s; reasons: {sorted(set(reported.values()))}")


def test_status_watch_shows_live_workers(volley, volley_sink):
    sink = volley_sink("--delay-ms", "20")
    confs = [volley.write_conf(sink.hostport, file=f"{n}.conf", name=n, threads=1, connections=2, batch=16,
                               max_inflight=16)
             for n in ("watch-a", "watch-b")]
    cid = volley.push(volley.write_campaign(cid="watched"), volley.write_recipients(make_recipients(3000)))
    ws = [volley.start_worker(c, c.stem) for c in confs]
    assert wait_for(lambda: all(volley.r.exists(volley.key("worker", n)) for n in ("watch-a", "watch-b")), 10), (
        "workers did not beat: " + tail(ws[0].logpath))
    assert wait_for(lambda: volley.stats(cid).get("delivered", 0) > 20, 20), tail(ws[0].logpath)

    out = volley.dir / "watch.out"
    with open(out, "wb") as f:
        sp = subprocess.Popen([str(binary("volley")), "status", "-c", str(volley.conf), "--watch"], stdout=f,
                              stderr=subprocess.STDOUT, cwd=volley.dir)
    try:
        time.sleep(2.5)
        assert sp.poll() is None, f"status --watch exited early ({sp.returncode}): {out.read_text()[-2000:]}"
        sp.send_signal(signal.SIGINT)
        rc = sp.wait(timeout=5)
    finally:
        stop_process(sp, signal.SIGKILL)
    for w in ws:
        stop_process(w, signal.SIGTERM)
    text = out.read_text(errors="replace")
    assert rc == 0, f"status --watch exit {rc} after SIGINT:\n{text[-2000:]}"
    frames = [fr for fr in text.split("\033[H\033[2J") if fr.strip()]
    assert len(frames) >= 2, f"{len(frames)} frames in 2.5 s:\n{text[-2000:]}"
    for fr in frames:
        assert "volley status --watch" in fr, fr
        m = re.search(r"workers alive: (\d+)", fr)
        assert m and int(m.group(1)) == 2, fr
        for n in ("watch-a", "watch-b"):
            assert re.search(rf"^\s+{n}\s+\d+\.\ds\s+pid=\d+", fr, re.M), f"worker {n} not listed:\n{fr}"
        assert "DONE" in fr and "RATE/s" in fr, fr
    delivered = []
    for fr in frames:
        m = re.search(r"^\s+watched\s+(\d+)\s+(\d+)\s", fr, re.M)
        assert m, f"campaign row missing:\n{fr}"
        assert int(m.group(1)) == 3000
        delivered.append(int(m.group(2)))
    assert delivered[-1] > delivered[0], f"delivered did not move between frames: {delivered}"
    rates = re.findall(r"^\s+watched\s.*\s(\d+)\s*$", frames[-1], re.M)
    assert rates and int(rates[0]) > 0, f"no rate in the last frame:\n{frames[-1]}"
