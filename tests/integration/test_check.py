"""
NAME
    test_check - `volley check` validates a configuration without starting anything; `volley --version`

DESCRIPTION
    What an operator relies on before (re)starting a fleet or reloading a unit:
    - the shipped example and a test config are valid: exit 0, "FILE: ok", no Redis contacted;
    - a file with several mistakes lists each one with its file, line and key in one run (the worker
      stops at the first), including the sections other modules own ([retry], [provider NAME]), exit 2;
    - --dkim loads every key the way the signer does, names each bad key, and prints for each good one
      the TXT record to publish, split into strings of at most 255 bytes; the record is the key's
      (it equals the public key openssl derives, and python3-dkim verifies a volley signature with it);
    - volley --version prints the VERSION file's version.
"""

import re

from dkim_util import make_dkim_keys, verify_each
from volley_itest import BUILD, ROOT, binary

import subprocess


def check(*args, cwd=None):
    return subprocess.run([str(binary("volley")), "check", *map(str, args)], capture_output=True, text=True,
                          timeout=20, cwd=cwd)


def test_version_is_the_version_file():
    p = subprocess.run([str(binary("volley")), "--version"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"volley {(ROOT / 'VERSION').read_text().strip()}\n"


def test_good_configs_pass(volley, tmp_path):
    p = check("-c", ROOT / "config/volley.conf.example")
    assert p.returncode == 0 and p.stdout.strip().endswith("volley.conf.example: ok"), p.stdout + p.stderr
    assert p.stderr == ""
    conf = volley.write_conf("127.0.0.1:25", providers={"gmail": {"rate": "10/s"}})
    # the Redis of the config is stopped: check must not need it
    volley.redis.stop()
    p = check("-c", conf)
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    assert p.stdout == f"{conf}: ok\n"


BAD = """\
[redis]
url = redis://127.0.0.1:6379
[worker]
threads = many
hostname = ok.example
bogus_key = 1
[nosuch]
x = 1
[smtp]
connections = 0
this line has no equals sign
idle_timeout_ms = 5000
[retry]
schedule = 10m 5x
[provider gmail]
rate = fast
"""


def test_every_error_named_with_line_and_key(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text(BAD)
    p = check("-c", conf)
    assert p.returncode == 2, p.stdout + p.stderr
    errs = p.stderr.splitlines()
    want = [
        (4, "bad value 'many' for [worker] threads"),
        (6, "unknown key 'bogus_key' in [worker]"),
        (7, "unknown section [nosuch]"),
        (10, "bad value '0' for [smtp] connections"),
        (11, "expected key = value"),
        (14, "5x"),
        (16, "[provider gmail] rate"),
    ]
    for line, text in want:
        assert any(e.startswith(f"{conf}:{line}: ") and text in e for e in errs), (line, text, errs)
    assert errs[-1] == f"volley check: {conf}: {len(want)} errors"
    assert len(errs) == len(want) + 1, errs  # the good lines (hostname, idle_timeout_ms, x in [nosuch]) are not blamed
    assert "ok" not in p.stdout


def test_unreadable_file(tmp_path):
    p = check("-c", tmp_path / "missing.conf")
    assert p.returncode == 2 and "missing.conf" in p.stderr and "No such file" in p.stderr, p.stderr


def txt_records(stdout):
    """{qname bytes: joined TXT value bytes} of check --dkim's lines; asserts each string fits 255 bytes."""
    out = {}
    for line in stdout.splitlines():
        m = re.fullmatch(r'(\S+) IN TXT((?: "[^"]*")+)', line)
        if not m:
            continue
        parts = re.findall(r'"([^"]*)"', m.group(2))
        assert all(1 <= len(s) <= 255 for s in parts), [len(s) for s in parts]
        out[m.group(1).encode()] = "".join(parts).encode()
    return out


def test_dkim_records_match_keys_and_verify(volley, tmp_path):
    keys = make_dkim_keys(tmp_path / "keys", "sender.test")
    wrong = tmp_path / "keys" / "ed-as-rsa.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", str(wrong)], check=True,
                   capture_output=True)
    good = volley.write_conf("127.0.0.1:25", file="good.conf", dkim=keys["dkim"])
    p = check("-c", good, "--dkim")
    assert p.returncode == 0, p.stderr
    recs = txt_records(p.stdout)
    # the records openssl derives from the same key files (dkim_util: SPKI for RSA, raw 32 bytes for Ed25519)
    assert recs == keys["records"], (recs, keys["records"])
    rsa_line = next(ln for ln in p.stdout.splitlines() if "k=rsa" in ln)
    assert rsa_line.count('" "') >= 1, "an RSA-2048 record is longer than 255 bytes: split into strings"

    # a message signed by volley's signer verifies against the printed records
    raw = (b"From: News <news@sender.test>\r\nTo: a@example.test\r\nSubject: hi\r\n"
           b"Date: Sat, 28 Nov 2026 09:00:00 +0000\r\nMessage-ID: <1@sender.test>\r\n\r\nhello\r\n")
    signed = subprocess.run([str(BUILD / "tools" / "dkim-sign"), "-c", str(good)], input=raw, capture_output=True,
                            timeout=20, check=True).stdout
    assert verify_each(signed, recs) == [True, True]

    # each bad key named (file and key), the good ones still printed
    bad = volley.write_conf("127.0.0.1:25", file="bad.conf", dkim={"key": keys["dkim"]["key"] + [
        f"sender.test wrong rsa {wrong}", f"sender.test gone ed25519 {tmp_path / 'nope.pem'}"]})
    p = check("-c", bad, "--dkim")
    assert p.returncode == 2, p.stdout
    assert len(txt_records(p.stdout)) == 2
    errs = p.stderr.splitlines()
    assert any("sender.test wrong" in e and "configured as rsa" in e and str(bad) in e for e in errs), errs
    assert any("sender.test gone" in e and "nope.pem" in e for e in errs), errs
    assert errs[-1].endswith("2 errors"), errs
    # without --dkim the key files are not opened
    assert check("-c", bad).returncode == 0
