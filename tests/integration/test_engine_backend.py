"""The event loop's backend: where io_uring is denied (a seccomp filter returning EPERM for the io_uring
system calls, as Docker's and containerd's default profiles do) `[worker] backend = auto` runs on epoll,
says so in one log line and delivers the whole campaign over STARTTLS; `backend = io_uring` refuses to start
there with a clear reason; where io_uring works, auto uses it. build/tools/no-uring (tests/tools/no-uring.c)
installs the filter and execs the worker. A reload keeps the running backend and says so."""

import signal

from volley_itest import binary, tail, wait_for

N = 300


def no_uring():
    return [binary("tools/no-uring")]


def test_auto_falls_back_to_epoll_under_seccomp(volley, volley_sink, recipients):
    sink = volley_sink(tls=True)
    volley.write_conf(sink.hostport, tls="opportunistic", backend="auto")
    rows = recipients(N)
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
    run = volley.run_worker(wrap=no_uring())
    lines = [ln for ln in run.log.splitlines() if "event loop:" in ln]
    assert len(lines) == 1, f"one line must name the backend, got {lines}"
    assert "event loop: epoll (io_uring is unavailable (Operation not permitted): backend = auto falls back)" \
        in lines[0], lines[0]
    st = volley.stats(cid)
    assert st.get("delivered") == N, st
    got = {m["To"] for m in sink.messages()}
    assert got == {r["email"] for r in rows}
    assert sink.stop() == 0
    s = sink.stats()
    assert s["messages"] == N and s["tls_connections"] == s["connections"] > 0, s


def test_io_uring_backend_refuses_to_start_without_it(volley, volley_sink, recipients):
    sink = volley_sink()
    volley.write_conf(sink.hostport, backend="io_uring")
    cid = volley.push(volley.write_campaign(), volley.write_recipients(recipients(3)))
    run = volley.run_worker(wrap=no_uring(), expect=1)
    assert "io_uring is unavailable (Operation not permitted)" in run.log, run.tail()
    assert "[worker] backend = io_uring" in run.log, run.tail()
    assert not volley.stats(cid).get("delivered"), "nothing may be sent by a worker that did not start"


def test_auto_uses_io_uring_where_it_works(volley, volley_sink, recipients):
    sink = volley_sink()
    volley.write_conf(sink.hostport, backend="auto")
    rows = recipients(20)
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
    run = volley.run_worker()
    lines = [ln for ln in run.log.splitlines() if "event loop:" in ln]
    assert len(lines) == 1 and "event loop: io_uring (" in lines[0], lines
    assert volley.stats(cid).get("delivered") == len(rows)


def test_reload_keeps_the_backend(volley, volley_sink, recipients):
    sink = volley_sink()
    volley.write_conf(sink.hostport, backend="epoll")
    w = volley.start_worker()
    assert wait_for(lambda: "event loop: epoll ([worker] backend = epoll)" in w.logpath.read_text(), 10), \
        tail(w.logpath)
    volley.write_conf(sink.hostport, backend="io_uring")
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "configuration reloaded" in w.logpath.read_text(), 5), tail(w.logpath)
    assert "reload: a new [worker] backend needs a restart" in w.logpath.read_text(), tail(w.logpath)
    rows = recipients(10)
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
    assert wait_for(lambda: volley.stats(cid).get("delivered", 0) == len(rows), 20), \
        f"stats {volley.stats(cid)}; log:\n{tail(w.logpath)}"
    assert w.logpath.read_text().count("event loop:") == 1, "the threads keep their loop: no second start"
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=15) == 0
