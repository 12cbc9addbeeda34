"""Prometheus metrics ([metrics] listen): a real Prometheus server scrapes a worker during a campaign.

- A campaign of gmail.com (throttled: provider gmail, 200/s from egress 127.0.0.2) and example.test
  (unthrottled, a few refused 550 5.1.1) recipients over STARTTLS to volley-sink, pushed once Prometheus
  (the Debian package's binary, on loopback, scrape_interval 1s) scrapes the idle worker: it sees the
  delivered count grow while the campaign runs, and its query API returns
  sum(volley_messages_total{status="delivered"}) equal to the delivered count Redis recorded, and the
  bounces under class="bad-mailbox"; the per-provider series, transactions, connects, TLS handshakes,
  histograms and throttle gauges agree with what happened; `promtool check metrics` finds nothing wrong
  in the exposition; every query of docs/grafana-dashboard.json runs on that Prometheus and the delivery
  panels show the campaign.
- Failures are counted by their result: a route to a closed port shows as refused connects and deferred
  messages, with no transaction started.
- A port already taken stops the worker at start with exit 2 and the reason; a reload with a new
  address keeps the server where it started and logs that a restart is needed.
"""

import json
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from volley_itest import (THROTTLE, free_port, make_recipients, stop_process, stop_workers, wait_for, wait_port)

PROMETHEUS = "/usr/bin/prometheus"
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
PROMTOOL = "/usr/bin/promtool"


def scrape(port):
    """GET /metrics of the worker; (content type, text)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.headers["Content-Type"], r.read().decode()


def samples(text):
    """{(name, frozenset(labels)): value} of an exposition text (the simple form volley writes)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        if "{" in series:
            name, rest = series.split("{", 1)
            labels = frozenset(tuple(kv.split("=", 1)) for kv in rest.rstrip("}").replace('"', "").split(","))
        else:
            name, labels = series, frozenset()
        out[(name, labels)] = float(value)
    return out


def total(s, name, **labels):
    """Sum of the samples of name whose labels include labels."""
    want = {(k, str(v)) for k, v in labels.items()}
    return sum(v for (n, ls), v in s.items() if n == name and want <= ls)


class Prometheus:
    """/usr/bin/prometheus on loopback scraping one target every second; its data in a temporary folder."""

    def __init__(self, d, target):
        self.port = free_port()
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "prometheus.yml"
        conf.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                        "scrape_configs:\n  - job_name: volley\n    static_configs:\n"
                        f"      - targets: ['{target}']\n")
        self.log = open(d / "prometheus.log", "wb")
        self.p = subprocess.Popen([PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={d / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{self.port}"],
                                  stdout=self.log, stderr=subprocess.STDOUT)
        assert wait_port(self.port, timeout=30), "prometheus did not start listening"

    def query(self, q, at=None):
        """The API's instant query; the list of results."""
        args = {"query": q, **({"time": f"{at:.3f}"} if at else {})}
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(args)
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, q, at=None):
        """The single value of q (None when there is no sample)."""
        res = self.query(q, at)
        return float(res[0]["value"][1]) if res else None

    def range(self, q, start, end):
        url = f"http://127.0.0.1:{self.port}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": q, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"})
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        res = body["data"]["result"]
        return [float(v) for _, v in res[0]["values"]] if res else []

    def stop(self):
        stop_process(self.p)
        self.log.close()


def test_prometheus_scrapes_worker_during_campaign(volley, volley_sink, tmp_path):
    sink = volley_sink("--rcpt-reply", "gone*@example.test=550 5.1.1 no such user", tls=True)
    mport = free_port()
    n_gmail, n_other, n_gone, rate = 1200, 400, 25, 200  # gmail's share takes 6 s
    volley.write_conf({"gmail.com": sink.hostport, "example.test": sink.hostport}, preset=THROTTLE, threads=2,
                      tls="opportunistic", egress={"ips": "127.0.0.2"}, metrics={"listen": f"127.0.0.1:{mport}"},
                      providers={"gmail": {"rate": f"{rate}/s", "daily_cap": 100000, "connections": 4}})
    prom = Prometheus(tmp_path / "prom", f"127.0.0.1:{mport}")
    try:
        w = volley.start_worker()
        assert wait_port(mport, timeout=10), f"metrics port not open; log:\n{w.logpath.read_text()}"
        ctype, text = scrape(mport)
        assert ctype.startswith("text/plain; version=0.0.4"), ctype
        # Prometheus scrapes the idle worker before the campaign is pushed: scrapes then fall inside it
        assert wait_for(lambda: prom.value('up{job="volley"}') == 1, 30), "prometheus never scraped the worker"
        rows = (make_recipients(n_gmail, domains=("gmail.com",)) +
                make_recipients(n_other, domains=("example.test",), prefix="other") +
                make_recipients(n_gone, domains=("example.test",), prefix="gone"))
        t_start = time.time()
        cid = volley.push_rows(rows, name="c")
        n = n_gmail + n_other
        done = wait_for(lambda: int(volley.stats(cid).get("delivered", 0)) >= n and
                        int(volley.stats(cid).get("bounced", 0)) >= n_gone, 60)
        t_done = time.time()
        delivered = int(volley.stats(cid).get("delivered", 0))
        assert done, f"only {delivered} of {n} delivered; log:\n{w.logpath.read_text()[-3000:]}"

        # the count Prometheus holds becomes the delivered count Redis recorded (a scrape a second)
        q = 'sum(volley_messages_total{status="delivered"})'
        assert wait_for(lambda: prom.value(q) == delivered, 15), f"prometheus says {prom.value(q)}, redis {delivered}"
        # ... and it was scraped while the campaign ran: values between none and all of them
        seen = prom.range(q, t_start, t_done)
        assert any(0 < v < delivered for v in seen), f"no scrape caught the campaign under way: {seen}"
        assert prom.value('sum(volley_messages_total{status="delivered",provider="gmail"})') == n_gmail
        assert prom.value('sum(volley_messages_total{status="delivered",provider="none"})') == n_other
        # the bounces with their class (lib/bounce_class: 5.1.1 is bad-mailbox); a delivery has no class label
        bounced = int(volley.stats(cid).get("bounced", 0))
        assert bounced == n_gone
        assert wait_for(lambda: prom.value('sum(volley_messages_total{status="bounced",class="bad-mailbox"})') == bounced,
                        5)
        assert prom.value('sum(volley_messages_total{status="delivered",class!=""})') is None
        assert prom.value('sum(volley_messages_total{source_ip="127.0.0.2"})') == n + n_gone
        assert prom.value("volley_queue_time_seconds_count") == n + n_gone
        # the rate in use was published while gmail mail waited for its slots: at most the provider's rate
        peak = prom.value('max_over_time(volley_throttle_rate_per_second{provider="gmail"}[2m])')
        print(f"gmail: peak rate in use {peak}/s, scrapes during the campaign {seen}, campaign {t_done - t_start:.1f} s, "
              f"rates {prom.range('max(volley_throttle_rate_per_second)', t_start, t_done)}")
        assert peak is not None and 0 < peak <= rate, peak

        _, text = scrape(mport)
        s = samples(text)
        assert total(s, "volley_smtp_transactions_total", result="delivered") == n
        assert total(s, "volley_smtp_transactions_total", result="bounced") == n_gone
        assert total(s, "volley_smtp_transaction_seconds_count") == n + n_gone
        assert total(s, "volley_smtp_transaction_seconds_bucket", le="+Inf") == n + n_gone
        conns = total(s, "volley_smtp_connects_total", result="ok")
        assert 1 <= conns <= n, text
        assert total(s, "volley_smtp_tls_handshakes_total", result="ok") == conns, "every connection used STARTTLS"
        assert total(s, "volley_smtp_tls_handshakes_total", result="failed") == 0
        assert total(s, "volley_inflight_messages") == 0, "everything recorded: nothing in flight"
        assert total(s, "volley_throttle_daily_sent", provider="gmail", source_ip="127.0.0.2") == n_gmail
        assert total(s, "volley_throttle_daily_cap", provider="gmail", source_ip="127.0.0.2") == 100000
        assert total(s, "volley_throttle_suspended", provider="gmail") == 0
        assert total(s, "volley_redis_round_trips_total") > 0
        # a queue time is at least the time the throttle made the last gmail message wait
        assert total(s, "volley_queue_time_seconds_sum") / (n + n_gone) > 1, "gmail's share waits 6 s for its slots"

        body = tmp_path / "metrics.txt"
        body.write_text(text)
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (
            f"promtool check metrics: {check.stdout}{check.stderr}")
        check_dashboard(prom, text)
        assert stop_workers([w]) == [0]
    finally:
        prom.stop()


def check_dashboard(prom, text):
    """docs/grafana-dashboard.json: a dashboard Grafana imports (panels with a place and PromQL targets), every
    query accepted by this Prometheus with the dashboard's variables filled in, the delivery panels showing data,
    and every metric family volley exports on some panel."""
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"] and dash["schemaVersion"] >= 30
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "instance"}
    exprs = []
    for p in dash["panels"]:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]), p
        if p["type"] == "row":
            continue
        assert p["type"] in ("timeseries", "stat") and p["targets"], p
        exprs += [(p["title"], t["expr"]) for t in p["targets"]]
    families = {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE ")}
    used = {f for f in families for _, e in exprs if f in e}
    assert used == families, f"metrics on no panel: {families - used}"
    for title, e in exprs:
        q = e.replace("$__rate_interval", "1m").replace('"$instance"', '".*"')
        res = prom.query(q)  # asserts the API said success: the query parses and evaluates
        if title in ("Delivered / s", "Outcomes by status", "Delivered by provider and source IP", "Transactions by result",
                     "Connects by result", "TLS handshakes by result", "Time in queue", "Sent today vs daily cap",
                     "Deferrals and bounces by class"):
            assert res, f"panel {title!r}: no data for {q}"


def test_refused_connects_counted(volley):
    mport = free_port()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    volley.write_conf(f"127.0.0.1:{closed}", metrics={"listen": f"127.0.0.1:{mport}"}, bad_host_ms=100)
    rows = make_recipients(20)
    cid = volley.push_rows(rows, name="c")
    w = volley.start_worker()
    assert wait_for(lambda: int(volley.stats(cid).get("deferred", 0)) >= 20, 30), volley.stats(cid)
    assert wait_port(mport, timeout=5)
    s = samples(scrape(mport)[1])
    assert total(s, "volley_smtp_connects_total", result="refused") >= 1
    assert total(s, "volley_smtp_connects_total", result="ok") == 0
    assert total(s, "volley_messages_total", status="deferred") == 20
    assert total(s, "volley_smtp_transactions_total") == 0, "no MAIL FROM was ever sent"
    assert stop_workers([w]) == [0]


def test_port_taken_is_an_error(volley):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        volley.write_conf("127.0.0.1:1", metrics={"listen": f"127.0.0.1:{port}"})
        run = volley.run_worker(expect=2)
    assert "[metrics] listen" in run.log and str(port) in run.log, run.log


def test_reload_keeps_the_server(volley):
    """SIGHUP with a new [metrics] listen: the server keeps its address (it needs a restart) and says so."""
    port, other = free_port(), free_port()
    volley.write_conf("127.0.0.1:1", metrics={"listen": f"127.0.0.1:{port}"})
    w = volley.start_worker()
    assert wait_port(port, timeout=10), w.logpath.read_text()
    volley.write_conf("127.0.0.1:1", metrics={"listen": f"127.0.0.1:{other}"})
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "needs a restart" in w.logpath.read_text(), 10), w.logpath.read_text()
    assert "[metrics] listen" in w.logpath.read_text()
    assert scrape(port)[1].startswith("# HELP volley_messages_total"), "still served where it started"
    assert not wait_port(other, timeout=1)
    assert stop_workers([w]) == [0]
