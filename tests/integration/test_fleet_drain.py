"""
NAME
    test_fleet_drain - SIGTERM with transactions on the wire to three destinations at once

DESCRIPTION
    One worker thread sends to three routes (three aiosmtpd receivers, one connection each). Each
    receiver holds every DATA for a while, so when SIGTERM comes all three destinations have a
    transaction on the wire and another message queued behind it; the holds differ (1, 2, 3 s), so
    the destinations finish at different times. What a user relies on:
    - every transaction on the wire at the signal finishes and its outcome is recorded before the
      worker exits (no message reaches a receiver without a delivered event);
    - nothing new starts after the signal, on any destination (the queued messages stay pending);
    - a restarted worker sends the rest exactly once: counters add up, nothing pending.
    The worker once walked a hash-bucket chain instead of its list of every pool when draining,
    so only one destination was drained and the worker could exit with the others mid-DATA.
"""

import asyncio
import signal
import threading
import time
from collections import Counter

from volley_itest import free_port, make_recipients, tail, wait_for


# two per destination: one on the wire at the signal and one queued behind it (which must not start); the
# restarted worker sends each destination's second message after a hold of its own, so every one more per
# destination adds up to 1 + 2 + 3 s to the run
PER_DOMAIN = 2
# how long each receiver holds a DATA before answering 250: whichever destination a worker drained
# alone, another one either finishes first (and must not start the next message) or finishes last
# (and must be waited for)
HOLD_S = {"one.test": 1.0, "two.test": 2.0, "three.test": 3.0}
DOMAINS = tuple(HOLD_S)


class SlowReceiver:
    """aiosmtpd that logs when each DATA starts and holds it before accepting it: hold_s seconds, or
    hold_s(first recipient) when it is a function."""

    def __init__(self, hold_s):
        from aiosmtpd.controller import Controller

        self.lock = threading.Lock()
        self.started = []   # (monotonic s, [rcpts]) when a DATA arrived
        self.accepted = []  # rcpts of each message answered 250
        owner = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with owner.lock:
                    owner.started.append((time.monotonic(), list(envelope.rcpt_tos)))
                await asyncio.sleep(hold_s(envelope.rcpt_tos[0].lower()) if callable(hold_s) else hold_s)
                with owner.lock:
                    owner.accepted.extend(r.lower() for r in envelope.rcpt_tos)
                return "250 2.0.0 OK queued"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, ready_timeout=10)
        self.controller.start()

    def in_data(self):
        with self.lock:
            return len(self.started) > len(self.accepted)

    def stop(self):
        try:
            self.controller.stop()
        except Exception:
            pass


def test_sigterm_drains_every_destination(volley):
    rx = {d: SlowReceiver(HOLD_S[d]) for d in DOMAINS}
    try:
        rows = make_recipients(PER_DOMAIN * len(DOMAINS), domains=DOMAINS, prefix="drain")
        routes = {d: f"127.0.0.1:{r.port}" for d, r in rx.items()}
        conf = volley.write_conf(routes, file="drain.conf", name="drain", threads=1, connections=1, batch=64,
                                 max_inflight=64, shutdown_ms=10000)
        cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
        w = volley.start_worker(conf, "drain1")
        assert wait_for(lambda: all(r.in_data() for r in rx.values()), 30), (
            f"not every destination had a DATA in flight:\n{tail(w.logpath)}")
        t_term = time.monotonic()
        w.send_signal(signal.SIGTERM)
        rc = volley.wait_exit(w, 30)
        assert rc == 0, f"SIGTERM exit {rc}:\n{tail(w.logpath)}"
        time.sleep(0.3)  # a transaction cut by the exit would show up at its receiver now

        accepted = [a for r in rx.values() for a in r.accepted]
        late = [(d, rc_) for d, r in rx.items() for t, rc_ in r.started if t > t_term]
        assert not late, f"transactions started after SIGTERM: {late}"
        for d, r in rx.items():
            assert r.accepted, f"{d}: the transaction on the wire at SIGTERM did not finish"
        delivered_ev = Counter(e["to"].lower() for e in volley.events() if e.get("status") == "delivered")
        unrecorded = [a for a in accepted if delivered_ev[a] == 0]
        assert not unrecorded, f"accepted by a receiver but not recorded before exit: {unrecorded}"
        st = volley.stats(cid)
        assert st.get("delivered", 0) == len(accepted), (st, len(accepted))
        pending = volley.r.xpending(volley.key("jobs"), "volley")["pending"]
        assert pending == len(rows) - len(accepted), (pending, len(accepted))

        # the rest goes out exactly once from a restarted worker
        w2 = volley.start_worker(conf, "drain2", exit_when_idle=True)
        assert volley.wait_exit(w2, 120) == 0, tail(w2.logpath)
        got = Counter(a for r in rx.values() for a in r.accepted)
        assert set(got) == {r["email"].lower() for r in rows}
        assert max(got.values()) == 1, f"duplicates: {[a for a, n in got.items() if n > 1]}"
        st = volley.stats(cid)
        assert st.get("delivered") == len(rows), st
        assert volley.r.xpending(volley.key("jobs"), "volley")["pending"] == 0
    finally:
        for r in rx.values():
            r.stop()


def test_name_kept_while_draining(volley):
    """A drain longer than the heartbeat TTL keeps the name: nobody may take it (and the jobs on our wire).

    Four threads with one job and one connection each, all in DATA at SIGTERM; the receiver holds the
    last recipient's DATA 7 s and the others 1 s. Thread 0 (the first to read: it gets an early
    recipient) finishes its drain at once, yet it renews the process's name, so it must stay until
    the thread draining the 7 s transaction is done too."""
    rx = SlowReceiver(lambda rcpt: 7.0 if rcpt.startswith("ld00003") else 1.0)
    try:
        conf = volley.write_conf(f"127.0.0.1:{rx.port}", file="longdrain.conf", name="longdrain", threads=4,
                                 connections=4, batch=1, max_inflight=1, shutdown_ms=20000)
        cid = volley.push(volley.write_campaign(), volley.write_recipients(make_recipients(4, prefix="ld")))
        w = volley.start_worker(conf, "ld1")
        assert wait_for(lambda: len(rx.started) == 4, 30), tail(w.logpath)
        w.send_signal(signal.SIGTERM)
        key = volley.key("worker", "longdrain")
        t = time.monotonic()
        while time.monotonic() - t < 6.5:  # past the 5 s TTL, the last DATA still held by the receiver
            assert volley.r.hget(key, "pid") == str(w.pid), f"name lost {time.monotonic() - t:.1f}s into the drain"
            time.sleep(0.25)
        assert volley.wait_exit(w, 30) == 0, tail(w.logpath)
        assert not volley.r.exists(key), "a clean exit releases the name"
        assert volley.stats(cid).get("delivered") == 4
    finally:
        rx.stop()
