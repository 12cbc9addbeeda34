"""Adaptive backoff and `volley status`: a 421 4.7.28 slows gmail over that IP, yahoo on the same worker goes on.

The sink answers RCPT for trip*@gmail.com with `421 4.7.28 rate limited` (and closes), everything else
with 250. One trip message goes first; once its deferral is recorded the backoff is in Redis
(p:thr:backoff:gmail:<ip>, with its end time). Then gmail and yahoo mail is pushed together: while
the backoff lasts, gmail goes at most at backoff_rate (5/s), yahoo at its own rate; after backoff_ms
gmail is back at its normal rate. recover_after = 0 so only time ends the backoff (observable).
"""

import re
import time

from volley_itest import THROTTLE, log_tails, make_recipients, stop_workers, utc_date, wait_for


IP = "127.0.0.2"


def _backoff_conf(volley, sink, **extra):
    providers = {
        "gmail": {"rate": "200/s", "connections": 5, "backoff_rate": "5/s", "backoff_ms": 4000,
                  "recover_after": 0},
        "yahoo": {"rate": "200/s", "connections": 5},
    }
    for k, v in extra.pop("gmail", {}).items():
        providers["gmail"][k] = v
    return volley.write_conf({"gmail.com": sink.hostport, "yahoo.com": sink.hostport}, file="bo.conf", name="bo",
                             preset=THROTTLE, retry={"schedule": "1s", "max_age": "1h"}, providers=providers, **extra)


def _trip(volley, sink, procs):
    """Push one trip@gmail.com message; returns (pair, backoff hash) once the 421 was recorded."""
    volley.push_rows(make_recipients(1, domains=("gmail.com",), prefix="trip"), name="trip")
    pattern = volley.key("thr", "backoff", "gmail:*")

    def find():
        for k in volley.r.keys(pattern):
            h = volley.r.hgetall(k)
            if h:
                return k.split(":", 3)[3], h
        return None

    got = wait_for(find, 10)
    assert got, (f"no backoff in Redis ({pattern}) after the 421; events {volley.events()}; "
                 f"keys {sorted(volley.r.keys(volley.key('thr', '*')))}\n{log_tails(procs)}")
    # the trip message waits in the retry set for the end of the backoff it caused; the sink would answer
    # it 421 again and start a new backoff, so it is taken out: "after the backoff" must be observable
    assert wait_for(lambda: volley.r.zcard(volley.key("retry")) >= 1, 5), "the tripped message must be deferred"
    volley.r.delete(volley.key("retry"))
    return got


def test_421_backoff_gmail_slows_yahoo_unaffected(volley, volley_sink):
    sink = volley_sink("--rcpt-reply", "trip*@gmail.com=421 4.7.28 rate limited")
    _backoff_conf(volley, sink, egress={"ips": IP})
    procs = [volley.start_worker(f"{n}.conf", n) for n in ("bo",)]
    pair, bo = _trip(volley, sink, procs)
    assert pair == f"gmail:{IP}", pair
    until = int(bo["until"])
    assert bo.get("mode") == "backoff" and "4.7.28" in bo.get("reply", ""), bo
    ng, ny = 120, 200
    t_push = int(time.time() * 1000)
    volley.push_rows(make_recipients(ng, domains=("gmail.com",)) + make_recipients(ny, domains=("yahoo.com",)),
                     name="main")
    done = wait_for(lambda: sink.count() >= ng + ny, 20)
    stop_workers(procs)
    sink.stop()
    lines = sink.log_lines()
    g = [t for t, _s, _c, r in lines if r[0].endswith("@gmail.com")]
    y = [t for t, _s, _c, r in lines if r[0].endswith("@yahoo.com")]
    window_s = (until - t_push) / 1000.0
    g_in = [t for t in g if t < until]
    y_in = [t for t in y if t < until]
    g_after = [t for t in g if t >= until]
    g_after_rate = (len(g_after) - 1) / ((g_after[-1] - g_after[0]) / 1000.0) if len(g_after) > 2 else 0.0
    trip_evs = [e for e in volley.events() if e["to"].startswith("trip")]
    hist = {}
    for t in g:
        hist[(t - t_push) // 1000] = hist.get((t - t_push) // 1000, 0) + 1
    print(f"gmail per second after the push: {sorted(hist.items())}")
    print(f"backoff: {bo}; push {t_push}, backoff ends {until} ({window_s:.2f} s later); "
          f"gmail during backoff {len(g_in)}, yahoo during backoff {len(y_in)} ({len(y_in) / window_s:.1f}/s); "
          f"gmail after {len(g_after)} at {g_after_rate:.1f}/s; trip events {[e['status'] for e in trip_evs]}")
    assert trip_evs and trip_evs[0]["status"] == "deferred" and trip_evs[0]["code"] == "421", trip_evs
    assert done, f"only {sink.count()} of {ng + ny} arrived: gmail {len(g)}, yahoo {len(y)}\n{log_tails(procs)}"
    # during the backoff gmail over this IP goes at 5/s (+ burst and the slot in flight)
    assert len(g_in) <= 5 * window_s + 3, f"{len(g_in)} gmail messages in {window_s:.2f} s of backoff at 5/s"
    # yahoo on the same worker is not slowed down: all of it goes during gmail's backoff, far above 5/s
    assert len(y_in) == ny, f"only {len(y_in)} of {ny} yahoo messages during gmail's {window_s:.2f} s backoff"
    # after backoff_ms gmail's normal rate returns (200/s configured): in the 1.5 s from the end it is far above
    # the 5/s of the backoff (>= 20, against at most 5 * 1.5 + 3 at the backoff rate). Counted from the end, not
    # from 0.5 s after it: the ~100 gmail messages that waited go in the first half second at 200/s.
    second = [t for t in g if until <= t < until + 1500]
    assert len(second) >= min(20, len(g_after)), (
        f"gmail sent {len(second)} in the 1.5 s after the backoff ended (backoff_rate 5/s, rate 200/s); "
        f"per second after the push {sorted(hist.items())}")
    assert len(g_after) >= ng - 5 * window_s - 3


def test_status_shows_throttle_state(volley, volley_sink):
    """volley status: per provider and IP the rate and limit, sent today / cap, warm-up day and cap, backoff."""
    sink = volley_sink("--rcpt-reply", "trip*@gmail.com=421 4.7.28 rate limited")
    _backoff_conf(volley, sink, egress={"ips": f"{IP} 127.0.0.3"},
                  warmup={"schedule": "10 20 30 40 80", f"ip.{IP}": utc_date(3)},
                  gmail={"daily_cap": 1000})
    procs = [volley.start_worker(f"{n}.conf", n) for n in ("bo",)]
    volley.push_rows(make_recipients(30, domains=("gmail.com",)) + make_recipients(30, domains=("yahoo.com",)),
                     name="warm")
    assert wait_for(lambda: sink.count() >= 60, 10), f"{sink.count()} of 60 arrived\n{log_tails(procs)}"
    pair, _bo = _trip(volley, sink, procs)
    st = volley.status()
    stop_workers(procs)
    out = st.stdout
    print(out)
    assert st.returncode == 0, st.stderr
    assert "throttle (per provider and source IP):" in out
    rows = {ln.split()[0]: ln for ln in out.splitlines() if re.match(r"\s+(gmail|yahoo):", ln)}
    assert f"gmail:{IP}" in rows and "gmail:127.0.0.3" in rows and any(k.startswith("yahoo:") for k in rows), rows
    g2 = rows[f"gmail:{IP}"]
    assert "(200/s)" in g2 or "(5/s)" in g2, f"rate and its limit: {g2}"
    assert re.search(r"\d+ / 1000", g2), f"sent today against the daily cap: {g2}"
    assert "day 3, cap 40" in g2, f"warm-up day and cap of {IP}: {g2}"
    assert "warm" in rows["gmail:127.0.0.3"]
    assert "backoff until" in rows[pair] and "4.7.28" in rows[pair], f"backoff, triggering reply: {rows[pair]}"
    assert "no cap" in [v for k, v in rows.items() if k.startswith("yahoo:")][0]
