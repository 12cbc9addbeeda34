"""A worker SIGKILLed while it holds connection leases: the others get its share back within lease_ms.

Two worker processes (one thread each) share gmail's fleet-wide limit of 4 connections over source
IP 127.0.0.2 to a slow sink (every reply held 100 ms), so every lease is in use. Worker ka is killed
with SIGKILL while it holds leases: its TCP connections close at once, but its leases stay in
p:thr:conn:gmail:127.0.0.2 until they expire ([throttle] lease_ms = 3000, no renewal from a dead
worker). Within lease_ms (plus one renewal round and the sink's 200 ms stats period) worker kb holds
all 4 leases and the sink sees 4 concurrent connections again; never more than 4 at any time.
"""

import signal
import time

from volley_itest import SPREAD, THROTTLE, log_tails, make_recipients, stop_workers, wait_for


LEASE_MS = 3000
LIMIT = 4


def test_killed_worker_leases_return_within_lease_ms(volley, volley_sink):
    sink = volley_sink("--delay-ms", "100")
    for name in ("ka", "kb"):
        volley.write_conf({"gmail.com": sink.hostport}, file=f"{name}.conf", name=name, preset=THROTTLE, threads=1,
                          **SPREAD, egress={"ips": "127.0.0.2"}, throttle={"lease_ms": LEASE_MS},
                          providers={"gmail": {"rate": "1000/s", "connections": LIMIT}})
    volley.push_rows(make_recipients(600, domains=("gmail.com",)), name="c")
    ka, kb = [volley.start_worker(f"{n}.conf", n) for n in ("ka", "kb")]
    key = volley.key("thr", "conn", "gmail:127.0.0.2")

    def holders():
        now = time.time() * 1000
        live = [m for m, exp in volley.r.zrange(key, 0, -1, withscores=True) if exp > now]
        return sum(m.startswith("ka-") for m in live), sum(m.startswith("kb-") for m in live)

    both = wait_for(lambda: (lambda h: h[0] >= 1 and h[1] >= 1 and sum(h) == LIMIT)(holders()), 10)
    assert both, f"both workers should hold leases (held {holders()}); stats {sink.stats()}\n{log_tails([ka, kb])}"
    before = holders()
    ka.send_signal(signal.SIGKILL)
    ka.wait(timeout=5)
    t_kill = time.monotonic()
    samples = []  # (seconds after the kill, ka leases, kb leases, sink concurrent)
    full_at = None
    while time.monotonic() - t_kill < LEASE_MS / 1000 + 3:
        a, b = holders()
        conc = (sink.stats() or {}).get("concurrent", -1)
        dt = time.monotonic() - t_kill
        samples.append((round(dt, 2), a, b, conc))
        if full_at is None and a == 0 and b == LIMIT and conc == LIMIT:
            full_at = dt
            break
        time.sleep(0.05)
    stop_workers([kb])
    sink.stop()
    st = sink.stats()
    ka_gone = next((s[0] for s in samples if s[1] == 0), None)
    print(f"lease: held before the kill (ka, kb) {before}; ka's leases gone after {ka_gone} s; kb at {LIMIT} "
          f"connections after {full_at} s; peak_concurrent {st['peak_concurrent']}; samples {samples[::5]}")
    assert ka_gone is not None and ka_gone <= LEASE_MS / 1000 + 0.5, f"ka's leases still live: {samples[-3:]}"
    assert full_at is not None and full_at <= LEASE_MS / 1000 + 1.5, \
        f"kb did not get the full share back within lease_ms: {samples[-5:]}\n{log_tails([kb])}"
    assert st["peak_concurrent"] <= LIMIT, f"peak {st['peak_concurrent']} concurrent with connections = {LIMIT}"
