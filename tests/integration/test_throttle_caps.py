"""Daily caps and IP warm-up, counted for the whole fleet (two worker processes on one Redis).

- A daily cap of 300 with a test day of a few seconds ([throttle] day_seconds): exactly 300 messages
  reach the sink inside that day; the rest are deferred (never bounced) with the cap named in the
  event's `limit` field and a retry time at the day's end, and are delivered after the boundary.
- An IP on day 3 of a small warm-up schedule gets that day's cap, the overflow goes to the warm IP
  (the sink's by_source_ip counts), and nothing bounces or waits.
"""

from collections import Counter

from volley_itest import (SPREAD, THROTTLE, at_day_start, delivered_by, log_tails, make_recipients, stop_workers,
                          utc_date, wait_for)


DAY_S = 8


def test_daily_cap_300_then_next_day(volley, volley_sink):
    sink = volley_sink()
    n, cap = 400, 300
    for name in ("da", "db"):
        volley.write_conf({"gmail.com": sink.hostport}, file=f"{name}.conf", name=name, preset=THROTTLE, **SPREAD,
                          egress={"ips": "127.0.0.2"}, retry={"schedule": "1s", "max_age": "1h"},
                          throttle={"day_seconds": DAY_S},
                          providers={"gmail": {"rate": "1000/s", "daily_cap": cap, "connections": 10}})
    rows = make_recipients(n, domains=("gmail.com",))
    volley.push_rows(rows, name="c")
    day, day_start, day_end = at_day_start(DAY_S)
    procs = [volley.start_worker(f"{n}.conf", n) for n in ("da", "db")]
    done = wait_for(lambda: sink.count() >= n, DAY_S + 12)
    stop_workers(procs)
    sink.stop()
    lines = sink.log_lines()
    in_day = [x for x in lines if day_start <= x[0] < day_end]
    after = [x for x in lines if x[0] >= day_end]
    rcpts = Counter(r for x in lines for r in x[3])
    evs = volley.events()
    deferred = [e for e in evs if e["status"] == "deferred"]
    limits = Counter(e.get("limit") for e in deferred)
    per_worker = delivered_by(procs)
    per_day = Counter((x[0] // 1000) // DAY_S - day for x in lines)
    print(f"daily cap: delivered per test day (0 = the first) {sorted(per_day.items())}; day {day} [{day_start}, {day_end}): {len(in_day)} delivered in the day, {len(after)} after, "
          f"{len(lines) - len(in_day) - len(after)} before; deferred {len(deferred)} {dict(limits)}; "
          f"per worker {per_worker}")
    assert not [x for x in lines if x[0] < day_start], "a message went out before the workers started"
    assert len(in_day) == cap, f"{len(in_day)} messages delivered in the test day with daily_cap = {cap}"
    assert done, f"only {sink.count()} of {n} delivered by the next day\n{log_tails(procs)}"
    assert set(rcpts) == {r["email"] for r in rows} and max(rcpts.values()) == 1, "each recipient exactly once"
    assert len(after) == n - cap
    assert not [e for e in evs if e["status"] in ("bounced", "failed")], "a cap must never bounce"
    # every overflow message was deferred, with the cap named and the retry at the day's end
    assert len(deferred) >= n - cap, f"{len(deferred)} deferred events"
    for e in deferred:
        assert "daily cap" in e.get("limit", "") and "gmail" in e["limit"] and f"({cap})" in e["limit"], e
        assert int(e["retry_at_ms"]) >= day_end, f"retry before the day ends: {e}"
    late = {r for x in after for r in x[3]}
    assert late == {e["to"] for e in deferred}, "the messages delivered the next day are the deferred ones"
    assert all(d and d[0] > 0 for d in per_worker.values()), f"both workers should send: {per_worker}"


def test_warmup_day3_cap_overflow_to_warm_ip(volley, volley_sink):
    sink = volley_sink()
    n = 120
    schedule = "10 20 30 40 80"  # day 3: 40 per provider
    start = utc_date(3)
    for name in ("wa", "wb"):
        volley.write_conf({"gmail.com": sink.hostport}, file=f"{name}.conf", name=name, preset=THROTTLE, **SPREAD,
                          egress={"ips": "127.0.0.2 127.0.0.3"}, retry={"schedule": "1s", "max_age": "1h"},
                          warmup={"schedule": schedule},
                          providers={"gmail": {"rate": "1000/s", "connections": 10}})
    w = volley.run("warmup", "-c", volley.conf, "start", "127.0.0.2", start)
    assert w.returncode == 0, w.stderr
    assert "40" in w.stdout, f"warmup start should say today's cap (40): {w.stdout!r}"
    show = volley.run("warmup", "-c", volley.conf, "show")
    row = [ln for ln in show.stdout.splitlines() if ln.startswith("127.0.0.2 ")]
    assert row and row[0].split()[1:4] == [start, "3", "40"], f"warmup show: {show.stdout!r}"
    rows = make_recipients(n, domains=("gmail.com",))
    volley.push_rows(rows, name="c")
    procs = [volley.start_worker(f"{n}.conf", n) for n in ("wa", "wb")]
    done = wait_for(lambda: sink.count() >= n, 20)
    stop_workers(procs)
    sink.stop()
    st = sink.stats()
    evs = volley.events()
    by_ip = {ip: v["messages"] for ip, v in (st or {}).get("by_source_ip", {}).items()}
    statuses = Counter(e["status"] for e in evs)
    limits = Counter(e.get("limit") for e in evs if e["status"] == "deferred")
    print(f"warm-up: by_source_ip {by_ip}; events {dict(statuses)} {dict(limits)}; per worker {delivered_by(procs)}")
    assert done, f"only {sink.count()} of {n} delivered; by IP {by_ip}\n{log_tails(procs)}"
    assert by_ip.get("127.0.0.2", 0) <= 40, f"the warming IP sent {by_ip.get('127.0.0.2')} on day 3 (cap 40)"
    assert by_ip.get("127.0.0.2", 0) >= 30, f"the warming IP's day-3 cap should be used: {by_ip}"
    assert by_ip.get("127.0.0.3", 0) == n - by_ip.get("127.0.0.2", 0), f"overflow goes to the warm IP: {by_ip}"
    assert statuses["delivered"] == n and statuses["bounced"] == 0 and statuses["failed"] == 0
    assert statuses["deferred"] == 0, f"a warm IP had room: nothing should wait in the retry set: {dict(limits)}"
    got = Counter(r for x in sink.log_lines() for r in x[3])
    assert set(got) == {r["email"] for r in rows} and max(got.values()) == 1
