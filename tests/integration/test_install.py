"""
NAME
    test_install - `make install`, the systemd unit, and the worker's sd_notify protocol

DESCRIPTION
    What an operator installing volley as a service relies on:
    - `make install DESTDIR=D` puts volley in PREFIX/bin, volley-sink in PREFIX/lib/volley, the man pages
      volley(1) and volley.conf(5) (clean roff: groff has nothing to warn about), the example config as
      /etc/volley/volley.conf (a second install keeps an operator's edited file), the systemd unit
      volley-worker@.service naming the installed paths and the sysusers.d entry of its user;
    - the unit is Type=notify, reloads with SIGHUP, gives a stop more time than the default shutdown_ms,
      raises LimitNOFILE, and `systemd-analyze verify` accepts an instance of it (installed under a
      scratch PREFIX so the paths it checks exist);
    - under systemd (NOTIFY_SOCKET: here a unix datagram socket the test binds) `volley worker` sends
      READY=1 once running, WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1 with MONOTONIC_USEC then
      READY=1 around a SIGHUP reload, and STOPPING=1 with EXTEND_TIMEOUT_USEC covering shutdown_ms on
      SIGTERM, then exits 0.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from volley_itest import BUILD, ROOT, binary, tail, wait_for

UNIT = "volley-worker@.service"


def make_install(*args):
    p = subprocess.run(["make", "-s", "-C", str(ROOT), f"BUILD={BUILD}", "install", *args], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def unit_settings(path):
    """{key: [values]} of a unit file (a key may repeat, e.g. ExecReload)."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def render(page):
    """A man page as plain text, as man(1) shows it (no hyphenation, no overstrike)."""
    return subprocess.run(["groff", "-man", "-rHY=0", "-Tascii", "-P", "-cbou", str(page)], capture_output=True,
                          text=True, timeout=30, check=True).stdout


def test_install_tree(tmp_path):
    dest = tmp_path / "dest"
    make_install(f"DESTDIR={dest}")
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == sorted([
        "etc/volley/volley.conf",
        "usr/local/bin/volley",
        "usr/local/lib/volley/volley-sink",
        "usr/local/lib/systemd/system/" + UNIT,
        "usr/local/lib/sysusers.d/volley.conf",
        "usr/local/share/man/man1/volley.1",
        "usr/local/share/man/man5/volley.conf.5",
    ]), files
    assert os.access(dest / "usr/local/bin/volley", os.X_OK)
    version = (ROOT / "VERSION").read_text().strip()
    p = subprocess.run([str(dest / "usr/local/bin/volley"), "--version"], capture_output=True, text=True, timeout=10)
    assert p.stdout == f"volley {version}\n"
    conf = dest / "etc/volley/volley.conf"
    assert conf.read_text() == (ROOT / "config/volley.conf.example").read_text()
    p = subprocess.run([str(dest / "usr/local/bin/volley"), "check", "-c", str(conf)], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 0, p.stderr

    # man pages: the version, every config key in volley.conf(5), every command in volley(1); no groff warning
    man1, man5 = dest / "usr/local/share/man/man1/volley.1", dest / "usr/local/share/man/man5/volley.conf.5"
    for page in (man1, man5):
        assert f'"volley {version}"' in page.read_text().splitlines()[1]
        g = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True, text=True, timeout=30)
        assert (g.returncode, g.stderr) == (0, ""), f"{page.name}: {g.stderr}"
    text5 = render(man5)
    for key in ("shutdown_ms", "max_inflight_bytes", "suppress_hard_bounces", "password_file"):
        assert key in text5, key
    text1 = render(man1)
    for cmd in ("push", "worker", "status", "campaign", "suppress", "warmup", "check"):
        assert re.search(rf"^\s+volley\s+{cmd}\b", text1, re.M), cmd

    # the unit: the installed paths, notify, reload by SIGHUP, stop time above the default shutdown_ms
    u = unit_settings(dest / "usr/local/lib/systemd/system" / UNIT)
    assert u["Type"] == ["notify"]
    assert u["ExecStart"] == ["/usr/local/bin/volley worker -c /etc/volley/volley.conf --name %i"]
    assert "/bin/kill -HUP $MAINPID" in u["ExecReload"]
    shutdown_ms = int(re.search(r"^shutdown_ms = (\d+)$", conf.read_text(), re.M).group(1))
    assert int(u["TimeoutStopSec"][0]) * 1000 > shutdown_ms
    assert int(u["LimitNOFILE"][0]) >= 65536
    assert int(u["WatchdogSec"][0]) > 0
    assert u["User"] == ["volley"]
    assert "u volley " in (dest / "usr/local/lib/sysusers.d/volley.conf").read_text()

    # a second install keeps the operator's config
    conf.write_text(conf.read_text() + "\n# edited by the operator\n")
    p = make_install(f"DESTDIR={dest}")
    assert "keeping" in p.stdout
    assert conf.read_text().endswith("# edited by the operator\n")


def test_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    # real paths under a scratch prefix: verify checks that ExecStart's binary exists
    pfx = tmp_path / "pfx"
    make_install(f"PREFIX={pfx}/usr", f"SYSCONFDIR={pfx}/etc")
    inst = tmp_path / "volley-worker@mta1.service"
    shutil.copy(pfx / "usr/lib/systemd/system" / UNIT, inst)
    # Documentation=man:volley(1) is looked up with man(1)
    env = dict(os.environ, MANPATH=f"{pfx}/usr/share/man:")
    p = subprocess.run(["systemd-analyze", "verify", str(inst)], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "volley-worker@mta1.service" not in p.stderr, p.stderr  # no finding about our unit


class NotifySocket:
    """A unix datagram socket standing in for systemd's $NOTIFY_SOCKET: every message with its arrival time."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.msgs = []  # (time.monotonic(), {key: value})
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.done:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self.lock:
                self.msgs.append((time.monotonic(), fields))

    def having(self, key, value=None):
        with self.lock:
            return [(t, m) for t, m in self.msgs if key in m and (value is None or m[key] == value)]

    def close(self):
        self.done = True
        self.thread.join()
        self.sock.close()


def test_sd_notify_ready_watchdog_reload_stopping(volley, volley_sink, tmp_path):
    sink = volley_sink()
    conf = volley.write_conf(sink.hostport, name="svc", threads=2, shutdown_ms=4000)
    ns = NotifySocket(tmp_path / "notify.sock")
    try:
        env = dict(os.environ, NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="300000")
        log = tmp_path / "svc.log"
        with open(log, "wb") as f:
            w = subprocess.Popen([str(binary("volley")), "worker", "-c", str(conf)], stdout=f,
                                 stderr=subprocess.STDOUT, env=env)
        volley.workers.append(w)  # killed at teardown if still running
        assert wait_for(lambda: ns.having("READY", "1"), 15), f"no READY=1: {ns.msgs}\n{tail(log)}"
        t_ready, ready = ns.having("READY", "1")[0]
        assert ready.get("STATUS") == "worker svc: 2 threads", ready
        # READY comes once the name is claimed: the worker is listed in Redis by then
        assert volley.r.exists(volley.key("worker", "svc"))

        # the watchdog: WATCHDOG=1 about every 150 ms (half of WATCHDOG_USEC)
        assert wait_for(lambda: len(ns.having("WATCHDOG")) >= 5, 5), ns.msgs
        times = [t for t, _ in ns.having("WATCHDOG")]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert max(gaps) < 0.3 and min(gaps) > 0.1, gaps

        # SIGHUP: RELOADING=1 stamped with CLOCK_MONOTONIC (what systemd compares), then READY=1 again
        before = time.monotonic_ns() // 1000
        w.send_signal(signal.SIGHUP)
        assert wait_for(lambda: ns.having("RELOADING", "1"), 5), ns.msgs
        after = time.monotonic_ns() // 1000
        t_rel, rel = ns.having("RELOADING", "1")[0]
        assert before <= int(rel["MONOTONIC_USEC"]) <= after, (before, rel, after)
        assert wait_for(lambda: [t for t, _ in ns.having("READY", "1") if t >= t_rel], 5), ns.msgs

        # SIGTERM: STOPPING=1, the stop timeout extended past shutdown_ms, exit 0
        w.send_signal(signal.SIGTERM)
        assert volley.wait_exit(w, 30) == 0, tail(log)
        stopping = ns.having("STOPPING", "1")
        assert len(stopping) == 1, ns.msgs
        assert int(stopping[0][1]["EXTEND_TIMEOUT_USEC"]) == (4000 + 20000) * 1000
        assert not volley.r.exists(volley.key("worker", "svc")), "a clean exit releases the name"
    finally:
        ns.close()

