"""The command line as an operator meets it: --help works, a bad flag or a
bad config value is exit status 2 with one line that names the culprit."""

import subprocess

import pytest

from volley_itest import binary, free_port

COMMANDS = ["worker", "push", "status"]


def volley(*args, cwd=None):
    return subprocess.run([str(binary("volley"))] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=20, cwd=cwd)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_exits_zero(cmd):
    p = volley(cmd, "--help")
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    assert "-c" in out and cmd in out, f"`volley {cmd} --help` should show usage:\n{out}"
    if cmd == "worker":
        assert "--exit-when-idle" in out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_bad_flag_is_one_line_exit_2(cmd):
    p = volley(cmd, "--frobnicate")
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{p.stderr}"
    assert "--frobnicate" in lines[0] or "frobnicate" in lines[0], lines[0]


def _conf(tmp_path, worker_extra="", tls="off"):
    c = tmp_path / "volley.conf"
    c.write_text(f"[redis]\nurl = redis://127.0.0.1:{free_port()}\nprefix = volley\n\n"
                 f"[worker]\nthreads = 1\nhostname = volley.test\n{worker_extra}\n"
                 f"[route]\n* = 127.0.0.1:{free_port()}\n\n[tls]\nmode = {tls}\n")
    return c


@pytest.mark.parametrize("line,key", [
    ("threads = lots", "threads"),
    ("shutdown_ms = -5", "shutdown_ms"),
    ("max_inflight = 99999999999999999999", "max_inflight"),
    ("colour = blue", "colour"),
])
def test_bad_config_value_names_the_key(tmp_path, line, key):
    conf = _conf(tmp_path, worker_extra=line)
    p = volley("worker", "-c", conf, "--exit-when-idle")
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{p.stderr}"
    assert key in lines[0], lines[0]


def test_bad_tls_mode_names_the_key(tmp_path):
    conf = _conf(tmp_path, tls="sometimes")
    p = volley("worker", "-c", conf, "--exit-when-idle")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "mode" in p.stderr, p.stderr



@pytest.mark.parametrize("cmd", COMMANDS)
@pytest.mark.parametrize("where,line", [("value", 3), ("start", 1)])
def test_nul_byte_in_config_is_an_error(tmp_path, cmd, where, line):
    """A NUL used to cut a value short, or (first byte) make the whole file count as empty: defaults were used."""
    conf = _conf(tmp_path)
    text = conf.read_bytes()
    if where == "value":
        text = text.replace(b"prefix = volley", b"prefix = vol\0ley")
    else:
        text = b"\0" + text
    conf.write_bytes(text)
    p = volley(cmd, "-c", conf, *(["--exit-when-idle"] if cmd == "worker" else
                                 ["--campaign", "x.ini", "--recipients", "x.csv"] if cmd == "push" else []))
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.strip().splitlines() == [f"volley {cmd}: {conf}:{line}: NUL byte in line"], p.stderr

def test_missing_config_file(tmp_path):
    p = volley("worker", "-c", tmp_path / "nope.conf", "--exit-when-idle")
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "nope.conf" in p.stderr


def test_push_rejects_csv_without_email_column(volley, smtp_receiver):
    rx = smtp_receiver()
    volley.write_conf(rx.hostport)
    camp = volley.write_campaign()
    csvp = volley.dir / "noemail.csv"
    csvp.write_text("name,token\nA,1\n")
    p = volley.run("push", "-c", volley.conf, "--campaign", camp, "--recipients", csvp)
    assert p.returncode != 0 and p.stdout.strip() == "", (p.returncode, p.stdout)
    assert "email" in p.stderr, p.stderr
    assert volley.r.xlen(volley.key("jobs")) == 0, "a rejected push must queue nothing"
