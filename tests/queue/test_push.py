"""`volley push` and `volley status` against a real redis-server.

What a user relies on: push prints only the campaign id, queues exactly the
good rows with their variables, lists bad rows by line number and carries
on, refuses a campaign whose template does not compile without writing
anything, and both commands fail with one line when Redis is unreachable.
"""

import re

import pytest

from volley_itest import PREFIX, free_port


def push_jsonl(volley, conf, ini, lines):
    """`volley push --format jsonl` with the lines on stdin (a pipe)."""
    return volley.run("push", "-c", conf, "--campaign", ini, "--recipients", "-", "--format", "jsonl",
                      input="\n".join(lines) + "\n")


def jobs(r):
    return [f for _id, f in r.xrange(f"{PREFIX}:jobs", "-", "+")]


def test_push_queues_rows_with_variables(shop_campaign, tmp_path, volley):
    r = volley.r
    conf, ini = volley.write_conf(), shop_campaign()
    csv = tmp_path / "list.csv"
    # BOM, CRLF, quoted fields with commas, doubled quotes and a line break, empty value
    csv.write_bytes(b'\xef\xbb\xbfemail,first_name,token\r\n'
                    b'ann@example.test,"Ann, ""the"" First",t1\r\n'
                    b'"bob@example.test","Bob\nJr",t2\r\n'
                    b'cat@example.test,,t3\r\n')
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "spring\n"
    got = jobs(r)
    assert got == [
        {"campaign": "spring", "to": "ann@example.test", "var.first_name": 'Ann, "the" First', "var.token": "t1"},
        {"campaign": "spring", "to": "bob@example.test", "var.first_name": "Bob\nJr", "var.token": "t2"},
        {"campaign": "spring", "to": "cat@example.test", "var.first_name": "", "var.token": "t3"},
    ]
    assert r.hget(f"{PREFIX}:stats:spring", "queued") == "3"
    c = r.hgetall(f"{PREFIX}:campaign:spring")
    assert c["from"] == '"Shop" <news@shop.example>'
    assert c["subject"] == "Hello {{first_name}}; welcome"  # ';' is not a comment inside a value
    assert c["text"] == "Dear {{first_name}},\nyour code is {{token}}.\n"
    assert c["html"] == "<p>Dear {{first_name}}</p>\n"
    assert c["mail_from"] == "bounces@shop.example"
    assert c["list_unsubscribe"] == "https://shop.example/u/{{token}}"
    assert c["feedback_id"] == "spring:shop"
    assert c["header.X-Campaign"] == "spring"
    assert c["default.first_name"] == "friend"
    assert int(c["created_ms"]) > 1_600_000_000_000 and "id" not in c
    # the consumer group exists, reading from the start of the stream
    groups = r.xinfo_groups(f"{PREFIX}:jobs")
    assert [g["name"] for g in groups] == ["volley"] and groups[0]["lag"] == 3

    # pushing again to the same id adds jobs, keeps created_ms, replaces the fields
    created = c["created_ms"]
    csv2 = tmp_path / "more.csv"
    csv2.write_text("email\ndan@example.test\n")
    ini2 = shop_campaign(subject="Second {{first_name}}")
    p = volley.run("push", "-c", conf, "--campaign", ini2, "--recipients", csv2)
    assert p.returncode == 0, p.stderr
    c = r.hgetall(f"{PREFIX}:campaign:spring")
    assert c["subject"] == "Second {{first_name}}" and c["created_ms"] == created
    assert r.hget(f"{PREFIX}:stats:spring", "queued") == "4"
    assert len(jobs(r)) == 4


def test_bad_rows_listed_by_line_and_skipped(shop_campaign, tmp_path, volley):
    r = volley.r
    conf, ini = volley.write_conf(), shop_campaign()
    csv = tmp_path / "list.csv"
    csv.write_text("email,first_name,token\n"
                   "ok1@example.test,A,1\n"          # line 2
                   "not-an-address,B,2\n"            # line 3: invalid address
                   "ok2@example.test,C\n"            # line 4: too few columns
                   "\"multi\nline\"@x.test,D,4\n"    # lines 5-6: address with a line break
                   "a@b@example.test,E,5\n"          # line 7: two @
                   "ok3@example.test,\"F\"x,6\n"     # line 8: text after a closing quote
                   "  ok4@example.test ,G,7\n")      # line 9: blanks around the address are trimmed
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "spring\n"
    bad = [ln for ln in p.stderr.splitlines() if ": skipped:" in ln]
    lines = [int(re.search(r"list\.csv:(\d+):", ln).group(1)) for ln in bad]
    assert lines == [3, 4, 5, 7, 8], p.stderr
    assert "invalid email address" in bad[0] and "expected 3 columns, got 2" in bad[1]
    assert "2 jobs queued, 5 bad rows skipped" in p.stderr, p.stderr
    assert [j["to"] for j in jobs(r)] == ["ok1@example.test", "ok4@example.test"]
    assert r.hget(f"{PREFIX}:stats:spring", "queued") == "2"



def test_over_long_record_from_a_pipe_is_one_bad_row(shop_campaign, tmp_path, volley):
    """A 9 MB quoted field read from a pipe: skipped whole, nothing inside it queued, the next row kept."""
    r = volley.r
    conf, ini = volley.write_conf(), shop_campaign()
    # the row-like line sits past the 8 MiB record bound, where a reader that gave up would resume
    text = ("email,first_name,token\n"
            "victim@example.test,\"" + "x" * (8_700_000) + "\n"   # line 2: the field opens
            "smuggled@example.test,evil,1\n"                       # line 3: inside the field
            + "y" * 300_000 + "\",2\n"                             # line 4: the field closes
            "legit@example.test,ok,3\n")                            # line 5
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", "-", input=text)
    assert p.returncode == 0, p.stderr
    bad = [ln for ln in p.stderr.splitlines() if ": skipped:" in ln]
    assert bad == ["volley push: <stdin>:2: skipped: record longer than 8388608 bytes (unterminated quote?)"], p.stderr
    assert "1 jobs queued, 1 bad rows skipped" in p.stderr, p.stderr
    assert jobs(r) == [{"campaign": "spring", "to": "legit@example.test", "var.first_name": "ok", "var.token": "3"}]


def test_addresses_the_worker_refuses_are_bad_rows(shop_campaign, tmp_path, volley):
    """Non-ASCII (UTF-8 or not) and unsendable addresses are refused by push with the worker's reason."""
    r = volley.r
    conf, ini = volley.write_conf(), shop_campaign()
    csv = tmp_path / "list.csv"
    csv.write_bytes(b"email,first_name,token\n"
                    b"ok1@example.test,A,1\n"                 # line 2
                    b"z\xc4\x85b@example.org,B,2\n"            # line 3: UTF-8, needs SMTPUTF8
                    b"ann@ex\xe4mple.test,C,3\n"              # line 4: Latin-1, not even UTF-8
                    b"a..b@example.test,D,4\n"                # line 5: not a dot-atom
                    b"a@example..test,E,5\n"                  # line 6: empty domain label
                    b"ok2@example.test,F,6\n")                # line 7
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv)
    assert p.returncode == 0, p.stderr
    bad = [ln.split(": skipped: ", 1)[1] for ln in p.stderr.splitlines() if ": skipped: " in ln]
    assert bad == ["invalid email address: non-ASCII address (SMTPUTF8) not supported"] * 2 + [
        "invalid email address: invalid character in local part",
        "invalid email address: empty or over-long domain label"], p.stderr
    assert "2 jobs queued, 4 bad rows skipped" in p.stderr, p.stderr
    assert [j["to"] for j in jobs(r)] == ["ok1@example.test", "ok2@example.test"]
    # JSON lines: an escaped non-ASCII address is refused the same way
    p = push_jsonl(volley, conf, ini, ['{"email": "j\\u00f6rg@example.test"}', '{"email": "ok3@example.test"}'])
    assert p.returncode == 0, p.stderr
    assert "<stdin>:1: skipped: invalid email address: non-ASCII address (SMTPUTF8) not supported" in p.stderr
    assert [j["to"] for j in jobs(r)][2:] == ["ok3@example.test"]

def test_every_row_bad_is_a_failure(shop_campaign, tmp_path, volley):
    r = volley.r
    conf, ini = volley.write_conf(), shop_campaign()
    csv = tmp_path / "list.csv"
    csv.write_text("email,first_name\nnope,A\n")
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv)
    assert p.returncode == 1 and "0 jobs queued, 1 bad rows skipped" in p.stderr, (p.returncode, p.stderr)
    assert r.xlen(f"{PREFIX}:jobs") == 0


@pytest.mark.parametrize("subject,where", [("Hello {{first_name", "subject"), ("Hi {{#a}}x{{/b}}", "subject")])
def test_template_error_writes_nothing(shop_campaign, tmp_path, volley, subject, where):
    r = volley.r
    conf, ini = volley.write_conf(), shop_campaign(subject=subject)
    csv = tmp_path / "list.csv"
    csv.write_text("email\na@example.test\n")
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stdout == ""
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and where in err and re.search(r"line \d+, column \d+", err), err
    assert r.dbsize() == 0, "a rejected campaign must write nothing"


@pytest.mark.parametrize("csv_text,words", [
    ("name,token\nA,1\n", "no 'email' column"),
    ("email,first name\na@example.test,A\n", "not a valid variable name"),
    ("email,x,x\na@example.test,1,2\n", "appears twice"),
    ("", "empty recipient list"),
])
def test_bad_header_writes_nothing(shop_campaign, tmp_path, volley, csv_text, words):
    r = volley.r
    conf, ini = volley.write_conf(), shop_campaign()
    csv = tmp_path / "list.csv"
    csv.write_text(csv_text)
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv)
    assert p.returncode == 2 and words in p.stderr and p.stdout == "", (p.returncode, p.stderr)
    assert r.dbsize() == 0


def test_bad_campaign_file_names_the_line(tmp_path, volley):
    r = volley.r
    conf = volley.write_conf()
    ini = tmp_path / "c.ini"
    ini.write_text("[campaign]\nfrom = a@b.example\nsubject = x\ntext_file = missing.txt\n")
    csv = tmp_path / "list.csv"
    csv.write_text("email\na@example.test\n")
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv)
    assert p.returncode == 2 and "c.ini:4:" in p.stderr and "missing.txt" in p.stderr, p.stderr
    ini.write_text("[campaign]\nid = has space\n")
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv)
    assert p.returncode == 2 and "c.ini:2:" in p.stderr, p.stderr
    # found by fuzz_campaign_ini: a default.* key under [campaign] skipped [defaults]' variable-name check
    ini.write_text("[campaign]\nfrom = a@b.example\nsubject = x\ntext = y\ndefault.bad name! = z\n")
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv)
    assert p.returncode == 2 and "c.ini:5:" in p.stderr and "[defaults]" in p.stderr, p.stderr
    ini.write_text("[campaign]\nfrom = a@b.example\nsubject = x\ntext = y\nheader.X-Tag = z\n")
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv)
    assert p.returncode == 2 and "c.ini:5:" in p.stderr and "[headers]" in p.stderr, p.stderr
    assert r.dbsize() == 0



def test_nul_byte_in_campaign_file_writes_nothing(shop_campaign, tmp_path, volley):
    """CAMPAIGN.ini is read line by line as C strings: a NUL used to end the subject there, silently."""
    r = volley.r
    conf, ini = volley.write_conf(), shop_campaign()
    ini.write_bytes(ini.read_bytes().replace(b"subject = Hello", b"subject = Hel\0lo"))
    csv = tmp_path / "list.csv"
    csv.write_text("email\na@example.test\n")
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.strip().splitlines() == [f"volley push: {ini}:6: NUL byte in line"], p.stderr
    assert r.dbsize() == 0

def test_jsonl_from_stdin_and_generated_id(shop_campaign, tmp_path, volley):
    r = volley.r
    conf, ini = volley.write_conf(), shop_campaign(cid=None)
    lines = [
        '{"email": "ann@example.test", "first_name": "Ann \\u00e9\\ud83d\\ude00", "token": "t1"}',
        '{"email": "bob@example.test", "token": 42, "vip": true}',
        '{"first_name": "no email"}',
        '{"email": "x@example.test", "token": null}',
        'not json',
        '',
        '{"email":"cat@example.test"}',
    ]
    p = push_jsonl(volley, conf, ini, lines)
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    assert re.fullmatch(r"c\d{13}[0-9a-f]{6}", cid), cid
    bad = [int(m) for m in re.findall(r"<stdin>:(\d+): skipped", p.stderr)]
    assert bad == [3, 4, 5], p.stderr
    got = jobs(r)
    assert got[0] == {"campaign": cid, "to": "ann@example.test", "var.first_name": "Ann \u00e9\U0001F600",
                      "var.token": "t1"}
    assert got[1] == {"campaign": cid, "to": "bob@example.test", "var.token": "42", "var.vip": "true"}
    assert got[2] == {"campaign": cid, "to": "cat@example.test"}
    assert r.hget(f"{PREFIX}:stats:{cid}", "queued") == "3"


def test_jsonl_repeated_field_and_control_bytes_in_names(shop_campaign, tmp_path, volley):
    """A name given twice is refused (which one would count?); a reason never echoes a control byte."""
    r = volley.r
    conf, ini = volley.write_conf(), shop_campaign()
    p = push_jsonl(volley, conf, ini, ['{"email": "a@example.test", "token": "1", "token": "2"}',
                               '{"email": "b@example.test", "email": "victim@example.test"}',
                               '{"email": "c@example.test", "\\u001b]0;pwned\\u0007\\u001b[2J": "x"}',
                               '{"email": "d@example.test", "token": "4"}'])
    assert p.returncode == 0, p.stderr
    bad = [ln for ln in p.stderr.splitlines() if ": skipped: " in ln]
    assert bad[0] == "volley push: <stdin>:1: skipped: field 'token' given twice", p.stderr
    assert bad[1] == "volley push: <stdin>:2: skipped: field 'email' given twice", p.stderr
    assert bad[2].startswith("volley push: <stdin>:3: skipped: invalid variable name '?]0;pwned??[2J'"), p.stderr
    assert not any(ord(c) < 32 and c != "\n" for c in p.stderr), repr(p.stderr)
    assert [(j["to"], j.get("var.token")) for j in jobs(r)] == [("d@example.test", "4")]


def test_more_variable_columns_than_a_job_holds_writes_nothing(shop_campaign, tmp_path, volley):
    """65 variable columns: every row would be refused, so the header is, before anything is written."""
    r = volley.r
    conf, ini = volley.write_conf(), shop_campaign()
    csv = tmp_path / "list.csv"
    names = [f"v{i}" for i in range(65)]
    csv.write_text("email," + ",".join(names) + "\na@example.test," + ",".join("x" * 65) + "\n")
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.strip().splitlines() == [f"volley push: {csv}:1: 65 variable columns (at most 64)"], p.stderr
    assert r.dbsize() == 0
    csv.write_text("email," + ",".join(names[:64]) + "\na@example.test," + ",".join("x" * 64) + "\n")
    p = volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv)
    assert p.returncode == 0 and len(jobs(r)) == 1, p.stderr

def test_status_table(shop_campaign, tmp_path, volley):
    r = volley.r
    conf, ini = volley.write_conf(), shop_campaign()
    csv = tmp_path / "list.csv"
    csv.write_text("email,token\n" + "".join(f"u{i}@example.test,{i}\n" for i in range(5)))
    assert volley.run("push", "-c", conf, "--campaign", ini, "--recipients", csv).returncode == 0
    # a worker-like consumer takes two jobs; other counters as a worker would leave them
    r.xreadgroup("volley", "host-7", {f"{PREFIX}:jobs": ">"}, count=2)
    r.hset(f"{PREFIX}:stats:spring", mapping={"delivered": 7, "bounced": 1})
    r.hset(f"{PREFIX}:stats:other", mapping={"queued": 12, "failed": 2})
    r.zadd(f"{PREFIX}:retry", {"m1": 1})
    r.xadd(f"{PREFIX}:dead", {"reason": "x"})

    p = volley.run("status", "-c", conf)
    assert p.returncode == 0, p.stderr
    out = p.stdout

    def row(label):
        m = re.search(rf"^\s*{label}\s+(\d+)\s*$", out, re.M)
        assert m, f"no '{label}' in:\n{out}"
        return int(m.group(1))

    assert (row("stream length"), row("undelivered"), row("pending")) == (5, 3, 2)
    assert (row(r"retry \(deferred\)"), row("dead letters")) == (1, 1)
    assert re.search(r"^\s*host-7\s+2\s+\S+s\s*$", out, re.M), out
    cols = re.search(r"^\s*CAMPAIGN\s+QUEUED\s+DELIVERED\s+DEFERRED\s+BOUNCED\s+FAILED\s+CANCELLED\s+SUPPRESSED"
                     r"\s+HELD\s+STATE\s*$", out, re.M)
    assert cols, out
    assert re.search(r"^\s*other\s+12\s+0\s+0\s+0\s+2\s+0\s+0\s+0\s+active\s*$", out, re.M), out
    assert re.search(r"^\s*spring\s+5\s+7\s+0\s+1\s+0\s+0\s+0\s+0\s+active\s*$", out, re.M), out
    # table columns line up: each campaign row is as wide as the header (the campaigns table: up to its blank line)
    table = out[out.index("\ncampaigns\n"):].split("\n\n")[0]
    lines = [ln for ln in table.splitlines() if re.match(r"^\s*(CAMPAIGN|other|spring)\s", ln)]
    assert len({len(ln) for ln in lines}) == 1, lines

    p = volley.run("status", "-c", conf, "other")
    assert p.returncode == 0 and "other" in p.stdout and "spring " not in p.stdout, p.stdout


@pytest.mark.parametrize("cmd", ["push", "status"])
def test_unreachable_redis_is_one_line(shop_campaign, tmp_path, volley, cmd):
    port = free_port()  # nothing listens there
    conf, ini = volley.write_conf(redis={"url": f"redis://127.0.0.1:{port}"}), shop_campaign()
    csv = tmp_path / "list.csv"
    csv.write_text("email\na@example.test\n")
    args = ["push", "-c", conf, "--campaign", ini, "--recipients", csv] if cmd == "push" else ["status", "-c", conf]
    p = volley.run(*args)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert p.stdout == ""
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "refused" in err[0].lower(), err


def test_usage_errors(volley):
    p = volley.run("push", "--help")
    assert p.returncode == 0 and "--recipients" in p.stdout
    p = volley.run("push", "-c", "x.conf", "--campaign", "c.ini")
    assert p.returncode == 2 and "--recipients" in p.stderr
    p = volley.run("push", "--bogus")
    assert p.returncode == 2 and "--bogus" in p.stderr
    p = volley.run("status", "--help")
    assert p.returncode == 0 and "CAMPAIGN" in p.stdout
