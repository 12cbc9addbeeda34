"""
NAME
    test_fleet_retry - the retry schedule is honoured, and a job deferred for too long expires

DESCRIPTION
    A scripted aiosmtpd receiver decides each RCPT by attempt number.

    test_deferred_twice_then_delivered: recipients flaky* get `451 4.3.0` on their first two attempts
    and are accepted on the third; steady* are accepted at once. With `[retry] schedule = 2s 3s` and
    `jitter = 0`, each flaky recipient has exactly three events: deferred (attempt 1, retry_at_ms =
    its time + 2 s), deferred (attempt 2, retry_at_ms = its time + 3 s), delivered (attempt 3), an
    event's time being its stream id (taken by Redis when the batch was recorded, so up to 200 ms
    after the worker's decision); the receiver saw the RCPTs at least the schedule's steps apart. One message per recipient; counters queued 6, delivered 6, deferred 6.

    test_always_deferred_expires: a server that always answers 451, with `max_age = 6s`: after
    attempts at ~0 s, ~2 s and ~5 s the next one would fall after first attempt + 6 s, so the job is
    recorded as bounced with reply "expired after 3 attempts: <text after 451 4.3.0>", code 451, expired = 1;
    counters bounced = expired = number of such recipients; nothing stays in the retry set.
"""

import signal

import pytest

from volley_itest import stop_process, tail, wait_for


DEFER = "451 4.3.0 Temporary local problem, please come back later"


def ts(e):
    """When an event was recorded: the ms part of its stream id (events carry no ts_ms field)."""
    eid = e["_id"].decode() if isinstance(e["_id"], bytes) else e["_id"]
    return int(eid.split("-")[0])


def by_recipient(events):
    out = {}
    for e in events:
        out.setdefault(e["to"], []).append(e)
    for evs in out.values():
        evs.sort(key=ts)
    return out


def test_deferred_twice_then_delivered(volley, smtp_receiver):
    rx = smtp_receiver(rule=lambda addr, n: DEFER if addr.startswith("flaky") and n <= 2 else None)
    conf = volley.write_conf(rx.hostport, file="rw.conf", name="rw", threads=1,
                             retry={"schedule": "2s 3s", "jitter": "0"})
    rows = [{"email": f"flaky{i}@example.test", "name": f"F{i}", "token": f"f{i}"} for i in range(3)]
    rows += [{"email": f"steady{i}@example.test", "name": f"S{i}", "token": f"s{i}"} for i in range(3)]
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
    w = volley.start_worker(conf, "retry")
    done = wait_for(lambda: volley.stats(cid).get("delivered", 0) >= len(rows), 25, step=0.1)
    assert done, f"stats {volley.stats(cid)}; worker log:\n{tail(w.logpath)}"
    assert stop_process(w, signal.SIGTERM) == 0

    got = sorted(rx.received())
    assert got == sorted(r["email"] for r in rows), got
    ev = by_recipient(volley.events())
    for r in rows[3:]:
        assert [e["status"] for e in ev[r["email"]]] == ["delivered"], ev[r["email"]]
    for r in rows[:3]:
        evs = ev[r["email"]]
        assert [(e["status"], e["attempt"]) for e in evs] == [("deferred", "1"), ("deferred", "2"),
                                                             ("delivered", "3")], evs
        d1, d2, ok = evs
        for e in (d1, d2):
            # the reply keeps the server's text after the code and enhanced code, which have fields of their own
            assert e["code"] == "451" and e["dsn"] == "4.3.0" and e["reply"] == DEFER[len("451 4.3.0 "):], e
        t1, t2, t3 = (ts(e) for e in evs)
        # jitter 0: the due time is the step after the worker decided, which Redis recorded a moment later
        assert 1800 <= int(d1["retry_at_ms"]) - t1 <= 2000, d1
        assert 2800 <= int(d2["retry_at_ms"]) - t2 <= 3000, d2
        # event times are Redis's, taken when each batch is recorded: the exact steps are checked on the RCPTs below
        assert t2 - t1 >= 1800 and t3 - t2 >= 2800, f"{r['email']}: gaps {t2 - t1} ms, {t3 - t2} ms"
        assert t3 - t1 < 2000 + 3000 + 4000, f"{r['email']}: retries came late: {t2 - t1} ms, {t3 - t2} ms"
        seen = [ts for _m, ts, a, _rep in rx.rcpts if a == r["email"]]
        assert len(seen) == 3 and seen[1] - seen[0] >= 1990 and seen[2] - seen[1] >= 2990, seen
    st = volley.stats(cid)
    # 4.3.0 with no telling words: class `other`, counted with the deferrals
    assert st == {"queued": 6, "delivered": 6, "deferred": 6, "deferred:other": 6}, st
    assert volley.r.zcard(volley.key("retry")) == 0


def test_always_deferred_expires(volley, smtp_receiver):
    rx = smtp_receiver(rule=lambda addr, n: DEFER if addr.startswith("never") else None)
    conf = volley.write_conf(rx.hostport, file="xw.conf", name="xw", threads=1,
                      retry={"schedule": "2s 3s", "jitter": "0", "max_age": "6s"})
    rows = [{"email": f"never{i}@example.test", "name": f"N{i}", "token": f"n{i}"} for i in range(2)]
    rows += [{"email": "fine@example.test", "name": "Fine", "token": "ok"}]
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
    w = volley.start_worker(conf, "expire")
    done = wait_for(lambda: volley.stats(cid).get("bounced", 0) >= 2 or w.poll() is not None, 25, step=0.1)
    assert w.poll() is None, f"worker exited {w.returncode}:\n{tail(w.logpath)}"
    assert done, f"stats {volley.stats(cid)}; worker log:\n{tail(w.logpath)}"
    assert stop_process(w, signal.SIGTERM) == 0

    assert rx.received() == ["fine@example.test"]
    ev = by_recipient(volley.events())
    for r in rows[:2]:
        evs = ev[r["email"]]
        assert [e["status"] for e in evs] == ["deferred", "deferred", "bounced"], evs
        b = evs[-1]
        assert b["reply"].startswith("expired after"), b
        assert "3 attempts" in b["reply"] and b["code"] == "451", b
        assert b.get("expired") == "1", b
        first = ts(evs[0])
        assert 5000 <= ts(b) - first < 6000 + 3000, f"expired {ts(b) - first} ms after attempt 1"
    st = volley.stats(cid)
    assert st.get("bounced") == 2 and st.get("expired") == 2 and st.get("delivered") == 1, st
    assert st.get("deferred") == 4, st
    assert volley.r.zcard(volley.key("retry")) == 0
