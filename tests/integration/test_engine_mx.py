"""Direct-to-MX delivery through a real DNS server (dnsmasq on loopback, zone in engine_dns.py).

No [route] here: the worker resolves every recipient domain's MX through [dns] servers and
delivers to the MX hosts on [smtp] mx_port. Shown: the MX walk (dead first host -> second),
implicit MX, null MX and NXDOMAIN bounce, a DNS timeout defers, and two domains sharing one MX
set share one pool (one connection carries both with connections = 1).
"""

from engine_dns import ADDR

from volley_itest import ENGINE, one_event, port_free_on, rows_for

WORKER_BOUND = 30


def test_mx_walk_implicit_null_nxdomain_timeout(volley, volley_sink, dnsmasq):
    mx_port = port_free_on([ADDR["mx1.two.test"], ADDR["mx2.two.test"], ADDR["plain.test"]])
    sink = volley_sink("--listen", f"{ADDR['mx2.two.test']}:{mx_port}", "--listen", f"{ADDR['plain.test']}:{mx_port}")
    volley.write_conf(preset=ENGINE, mx_port=mx_port, connect_timeout_ms=1000, timeout_ms=3000,
                      dns={**dnsmasq.conf, "timeout_ms": 300})
    rows = rows_for(["a@two.test", "b@two.test", "c@plain.test", "d@null.test", "e@nx.test", "f@timeout.test"])
    volley.push_rows(rows)
    volley.run_worker(WORKER_BOUND)

    evs = volley.events_by_to()
    for to in ("a@two.test", "b@two.test"):
        e = one_event(evs, to)
        assert e["status"] == "delivered", f"first MX is dead, the second must take it: {e}"
        assert e["host"] == f"mx2.two.test:{mx_port}", e
    e = one_event(evs, "c@plain.test")
    assert e["status"] == "delivered" and e["host"] == f"plain.test:{mx_port}", f"implicit MX: {e}"

    e = one_event(evs, "d@null.test")
    assert (e["status"], e["code"], e["dsn"]) == ("bounced", "556", "5.1.10"), f"null MX: {e}"
    e = one_event(evs, "e@nx.test")
    assert e["status"] == "bounced" and e["code"].startswith("5") and e["dsn"].startswith("5."), f"NXDOMAIN: {e}"
    assert "NXDOMAIN" in e["reply"], e
    e = one_event(evs, "f@timeout.test")
    assert e["status"] == "deferred", f"a DNS timeout is temporary: {e}"
    assert "timeout" in e["reply"].lower(), e
    retry = [m for m, _due in volley.retry_members()]
    assert len(retry) == 1 and b"f@timeout.test" in retry[0], f"the deferred job must wait in the retry set: {retry}"

    assert sink.stop() == 0
    got = sorted(r for line in sink.log_records() for r in line["rcpts"])
    assert got == ["a@two.test", "b@two.test", "c@plain.test"], got


def test_domains_sharing_an_mx_set_share_one_pool(volley, volley_sink, dnsmasq):
    mx_port = port_free_on([ADDR["mxs1.shared.test"], ADDR["mxs2.shared.test"]])
    sink = volley_sink("--listen", f"{ADDR['mxs1.shared.test']}:{mx_port}",
                       "--listen", f"{ADDR['mxs2.shared.test']}:{mx_port}")
    volley.write_conf(preset=ENGINE, dns=dnsmasq.conf, mx_port=mx_port, connections=1,
                      messages_per_connection=1000, idle_timeout_ms=5000)
    addrs = [f"u{i}@{'one.test' if i % 2 else 'other.test'}" for i in range(20)]
    volley.deliver(addrs, WORKER_BOUND)
    assert sink.stop() == 0
    st = sink.stats()
    log = sink.log_records()
    assert sorted(r for line in log for r in line["rcpts"]) == sorted(addrs)
    conns = {line["conn"] for line in log}
    assert st["peak_concurrent"] == 1, st
    assert len(conns) == 1 and st["connections"] == 1, (
        f"one.test and other.test have one MX set: one pool, one connection expected; sink saw connections "
        f"{sorted(conns)}, stats {st}")


def test_route_wins_over_mx(volley, volley_sink, dnsmasq):
    """A [route] for a domain is used even though DNS knows its MX; other domains still go by MX."""
    mx_port = port_free_on([ADDR["mx2.two.test"], ADDR["plain.test"]])
    routed = volley_sink()  # 127.0.0.1:<own port>
    by_mx = volley_sink("--listen", f"{ADDR['plain.test']}:{mx_port}")
    volley.write_conf({"two.test": f"{routed.hostport} tls=none"}, preset=ENGINE, dns=dnsmasq.conf,
                      mx_port=mx_port)
    addrs = ["r1@two.test", "r2@two.test", "m1@plain.test"]
    evs = volley.deliver(addrs, WORKER_BOUND)
    assert one_event(evs, "r1@two.test")["host"] == routed.hostport
    assert one_event(evs, "m1@plain.test")["host"] == f"plain.test:{mx_port}"
    routed.stop()
    by_mx.stop()
    assert sorted(r for line in routed.log_records() for r in line["rcpts"]) == ["r1@two.test", "r2@two.test"]
    assert [r for line in by_mx.log_records() for r in line["rcpts"]] == ["m1@plain.test"]
