"""
NAME
    test_fleet_ack - one XACK per run of deliveries, and duplicates still told exactly

DESCRIPTION
    The record script acknowledges a run of delivered jobs with one multi-id XACK when every job of the
    run was read (XREADGROUP >) while the worker's heartbeat key held the generation it still holds
    (queue/outcome.c): no other worker can have taken one over. A batch whose reply was lost is sent again
    without generations, so each job is acknowledged alone and the ones recorded already are told.

    A TCP proxy between the worker and redis-server lets the worker's third record call reach Redis
    (it runs) but drops the connection before any reply comes back: the worker keeps the batch and records
    it again once it has reconnected. What a user relies on: every recipient got the message once, stats
    delivered equals the recipients, one counted delivered event per job, every outcome of the lost batch
    recorded again is an event marked duplicate (counted nothing), and the worker never reports a
    one-XACK run that acknowledged fewer jobs than it held. And the fast path is in use: about one XACK
    per record call, not one per outcome.
"""

import re
import signal
import socket
import threading
import time
from collections import Counter

from volley_itest import make_recipients, stop_process, tail, wait_for


N = 1500


class LosingProxy:
    """Forwards TCP to Redis; the `nth` command chunk holding all of `marks` is forwarded, but from then on that
    connection's replies are dropped and, `hold_s` later, the connection is closed (a reply lost in an outage).
    Later connections pass through untouched."""

    def __init__(self, port, marks, nth, hold_s=0.5):
        self.port, self.marks, self.nth, self.hold_s = port, marks, nth, hold_s
        self.seen = 0
        self.fired = threading.Event()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.url = f"redis://127.0.0.1:{self.lsock.getsockname()[1]}"
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.port))
            conn = {"hold": False}
            threading.Thread(target=self._pump, args=(c, s, conn, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(s, c, conn, False), daemon=True).start()

    def _pump(self, src, dst, conn, up):
        """src -> dst: the worker's commands (up) are watched for the nth marked one; replies pass unless held."""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if up and not self.fired.is_set() and all(m in data for m in self.marks):
                    self.seen += 1
                    if self.seen == self.nth:
                        conn["hold"] = True
                        self.fired.set()
                        threading.Timer(self.hold_s, self._cut, args=(src, dst)).start()
                if up or not conn["hold"]:
                    dst.sendall(data)
        except OSError:
            pass
        self._cut(src, dst)

    @staticmethod
    def _cut(c, s):
        for x in (c, s):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()

    def close(self):
        self.closing = True
        self.lsock.close()


def test_lost_record_reply_resent_as_duplicates(volley, volley_sink):
    sink = volley_sink()
    rows = make_recipients(N, prefix="ack")
    marks = [b"EVALSHA", volley.key("events").encode(), volley.key("dead").encode()]
    proxy = LosingProxy(volley.redis.port, marks, nth=3)
    try:
        conf = volley.write_conf(sink.hostport, file="ack.conf", name="ack", threads=1, connections=4,
                                 batch=64, redis={"url": proxy.url})
        volley.write_conf(sink.hostport)  # push, stats and events go to Redis directly
        cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
        volley.r.config_resetstat()
        w = volley.start_worker(conf, "ack")
        assert wait_for(proxy.fired.is_set, 30), f"no record call went through the proxy:\n{tail(w.logpath)}"
        assert wait_for(lambda: volley.stats(cid).get("delivered", 0) >= N and
                        volley.r.xpending(volley.key("jobs"), "volley")["pending"] == 0, 60), (
            f"the run did not finish: {volley.stats(cid)}\n{tail(w.logpath)}")
        time.sleep(0.5)
        xacks = volley.r.info("commandstats").get("cmdstat_xack", {}).get("calls", 0)
        assert stop_process(w, signal.SIGTERM) == 0, tail(w.logpath)
    finally:
        proxy.close()
    log = w.logpath.read_text()
    assert "BUG:" not in log, tail(w.logpath)

    counts = Counter(sink.final_rcpts())
    assert set(counts) == {r["email"] for r in rows} and max(counts.values()) == 1, (
        f"{N - len(counts)} recipients never got the message, {sum(v > 1 for v in counts.values())} twice")
    st = volley.stats(cid)
    assert st.get("delivered") == N, st
    ev = [e for e in volley.events() if e["status"] == "delivered"]
    firsts = [e for e in ev if e.get("duplicate") != "1"]
    again = [e for e in ev if e.get("duplicate") == "1"]
    assert len(firsts) == N and len({e["job"] for e in firsts}) == N, f"{len(firsts)} counted delivered events"
    # the lost batch ran, so recording it again finds every one of its jobs acknowledged
    assert again, f"no outcome was recorded again after the lost reply:\n{tail(w.logpath)}"
    assert {e["job"] for e in again} <= {e["job"] for e in firsts}
    # job by job it would take an XACK per outcome. With one per run: about one per record call, plus the jobs
    # acknowledged alone: at most the first read (before the first heartbeat reply told the generation), the
    # one whose reply the cut swallowed (re-read by the pending pass), and every outcome sent again (the lost
    # batches: each one is a duplicate, outcomes - N of them)
    calls, outcomes = map(int, re.search(r"redis: (\d+) record calls of (\d+) outcomes", log).groups())
    assert xacks <= calls + 2 * 64 + (outcomes - N) < outcomes, (
        f"{xacks} XACK calls for {outcomes} outcomes in {calls} record calls: runs are not acknowledged with one XACK")
