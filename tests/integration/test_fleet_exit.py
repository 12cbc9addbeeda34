"""
NAME
    test_fleet_exit - a worker that exits leaves no heartbeat behind: `volley status` lists no alive worker

DESCRIPTION
    `volley status` lists a worker as alive while its name's key <p>:worker:<name> exists; a clean
    exit (--exit-when-idle, SIGTERM, SIGINT) deletes it. A heartbeat still on its way to Redis when
    the worker ended could arrive after that delete and write the key back, listing the stopped worker
    (with its last, stale info line) for the key's 5 s TTL. A TCP relay between the worker and Redis
    makes that window wide: from a point near the end of the run it holds what the worker's open
    connections send (to Redis, and its QUIT to the mail server) while new connections (the release)
    pass at once, so a beat sent in the run's last second reaches Redis after the release unless the
    worker waited for its answer.
"""

import queue
import signal
import socket
import threading
import time

import pytest

from volley_itest import tail, wait_for


class HoldingRelay:
    """127.0.0.1 TCP relay (to Redis or a mail server) that delays what the worker's connections send by `delay` seconds: bytes
    arriving from hold_from on, on connections accepted before cutoff (monotonic times; None: never / no
    cutoff yet). hold() sets both to now: the connections open now are slowed, new ones pass at once."""

    def __init__(self, upstream_port, delay=0.6):
        self.upstream, self.delay = upstream_port, delay
        self.hold_from = None
        self.cutoff = None
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.socks = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self):
        self.hold_from = self.cutoff = time.monotonic()

    def held(self, born):
        return (self.hold_from is not None and time.monotonic() >= self.hold_from
                and (self.cutoff is None or born < self.cutoff))

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            self.socks += [c, u]
            born = time.monotonic()
            threading.Thread(target=self._pump, args=(c, u, born), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, None), daemon=True).start()

    def _pump(self, src, dst, born):
        """src -> dst; on the worker's side (born set) each chunk leaves `delay` after it arrived while held."""
        q = queue.Queue()
        if born is not None:
            threading.Thread(target=self._send_due, args=(q, dst), daemon=True).start()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if born is None:
                    dst.sendall(data)
                else:
                    q.put((time.monotonic() + (self.delay if self.held(born) else 0), data))
        except OSError:
            pass
        if born is None:
            try:
                dst.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        q.put(None)

    def _send_due(self, q, dst):
        try:
            while (item := q.get()) is not None:
                time.sleep(max(0.0, item[0] - time.monotonic()))
                dst.sendall(item[1])
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.lsock.close()
        for s in self.socks:
            s.close()


@pytest.fixture
def relay(redis_server):
    r = HoldingRelay(redis_server.port)
    yield r
    r.close()


def workers_alive(volley):
    p = volley.status()
    assert p.returncode == 0, p.stderr
    return int(p.stdout.split("workers alive:")[1].split()[0])


def ms_to_next_beat(volley, name):
    """Milliseconds until the worker's next heartbeat is due (it beats every 1000 ms; beat_ms is Redis's clock)."""
    beat = int(volley.r.hget(volley.key("worker", name), "beat_ms"))
    sec, usec = volley.r.time()
    return beat + 1000 - (sec * 1000 + usec // 1000)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exit_leaves_no_worker_alive(volley, volley_sink, relay, sig, tmp_path):
    sink = volley_sink()
    via_relay = volley.write_conf(sink.hostport, file="relay.conf", name="sig", threads=1,
                                  redis={"url": f"redis://127.0.0.1:{relay.port}"})
    volley.write_conf(sink.hostport)  # status reads Redis directly
    for i in range(1):
        relay.hold_from = relay.cutoff = None
        w = volley.start_worker(via_relay, f"sig{i}")
        assert wait_for(lambda: (volley.r.hget(volley.key("worker", "sig"), "info") or "").startswith("pid="), 10), \
            tail(w.logpath)
        # the signal just before a heartbeat is due: the turn that sees it is likely the one that sends that beat
        time.sleep(1.0)
        due = ms_to_next_beat(volley, "sig")
        if due < 60:
            due += 1000
        time.sleep((due - 30) / 1000)
        relay.hold()
        w.send_signal(sig)
        assert volley.wait_exit(w, 30) == 0, tail(w.logpath)
        assert workers_alive(volley) == 0, f"round {i}: {volley.r.hgetall(volley.key('worker', 'sig'))}"
        # and it stays so once everything held has reached Redis
        time.sleep(relay.delay + 0.3)
        assert volley.r.keys(volley.key("worker", "*")) == [], f"round {i}: a late heartbeat wrote the name back"
        assert workers_alive(volley) == 0


def test_exit_when_idle_leaves_no_worker_alive(volley, volley_sink, redis_server, recipients):
    """--exit-when-idle: once the campaign is delivered, what the worker sends to Redis takes 0.9 s and its
    QUIT to the mail server 1.5 s, so the run's end spans a heartbeat still on its way to Redis."""
    sink = volley_sink()
    rrelay = HoldingRelay(redis_server.port, delay=0.9)
    srelay = HoldingRelay(int(sink.hostport.rsplit(":", 1)[1]), delay=1.5)
    try:
        via_relay = volley.write_conf(f"127.0.0.1:{srelay.port}", file="relay.conf", name="quick", threads=1,
                                      redis={"url": f"redis://127.0.0.1:{rrelay.port}"})
        volley.write_conf(sink.hostport)
        for i in range(3):
            volley.push_rows(recipients(3), name=f"c{i}", cid=f"c{i}")
            rrelay.hold_from = rrelay.cutoff = srelay.hold_from = srelay.cutoff = None
            w = volley.start_worker(via_relay, f"quick{i}", exit_when_idle=True)
            assert wait_for(lambda: volley.stats(f"c{i}").get("delivered") == 3, 30), tail(w.logpath)
            rrelay.hold()
            srelay.hold()
            assert volley.wait_exit(w, 60) == 0, tail(w.logpath)
            assert workers_alive(volley) == 0, f"run {i}: {volley.r.hgetall(volley.key('worker', 'quick'))}"
            time.sleep(rrelay.delay + 0.3)
            assert volley.r.keys(volley.key("worker", "*")) == [], f"run {i}: a late heartbeat wrote the name back"
            assert workers_alive(volley) == 0
    finally:
        rrelay.close()
        srelay.close()
