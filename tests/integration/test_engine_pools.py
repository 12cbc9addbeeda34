"""Connection limits as the receiving side sees them (volley-sink --stats-file / --log-file).

lim1.test and lim2.test share one MX (mx.limits.test, 127.0.0.20), so they share one site and one limit.
[smtp] connections is per site and source IP for the whole process (several worker threads), so:
  - without [egress]: peak concurrent connections <= connections;
  - with two egress IPs: peak <= connections x 2, and the sink sees exactly those source addresses.
messages_per_connection caps what one connection carries (max_msgs_per_conn).
"""

from collections import Counter

from engine_dns import ADDR

from volley_itest import ENGINE, one_event, port_free_on, rows_for

N = 150
WORKER_BOUND = 45


def _run(volley, volley_sink, dnsmasq, connections, per_conn, egress=None):
    mx_port = port_free_on([ADDR["mx.limits.test"]])
    # a little latency per reply, so connections overlap and the limit is really tested. One sink thread:
    # with several, a connection closing on one thread (after its 221 to QUIT reached volley) and the
    # next one accepted on another can be counted as overlapping for a moment (seen: peak 4 with limit 3).
    sink = volley_sink("--listen", f"{ADDR['mx.limits.test']}:{mx_port}", "--delay-ms", "5", "--threads", "1")
    volley.write_conf(preset=ENGINE, threads=2, dns=dnsmasq.conf, egress=egress or {}, mx_port=mx_port,
                      connections=connections, messages_per_connection=per_conn)
    addrs = [f"r{i:03d}@{'lim1.test' if i % 2 else 'lim2.test'}" for i in range(N)]
    volley.push_rows(rows_for(addrs))
    volley.run_worker(WORKER_BOUND)
    evs = volley.events_by_to()
    bad = [one_event(evs, a) for a in addrs if one_event(evs, a)["status"] != "delivered"]
    assert not bad, f"{len(bad)} not delivered, first: {bad[0]}"
    assert sink.stop() == 0
    st = sink.stats()
    log = sink.log_records()
    assert st["messages"] == N and len(log) == N, st
    per_conn = Counter(line["conn"] for line in log)
    return st, log, per_conn, evs, addrs


def test_connection_and_message_limits_without_egress(volley, volley_sink, dnsmasq):
    st, log, per_conn, evs, _ = _run(volley, volley_sink, dnsmasq, connections=3, per_conn=5)
    assert st["peak_concurrent"] <= 3, f"[smtp] connections = 3 (whole process, 2 threads): {st}"
    assert st["peak_concurrent"] >= 2, f"the run should have used parallel connections: {st}"
    assert st["max_msgs_per_conn"] <= 5 and max(per_conn.values()) <= 5, (st, per_conn.most_common(3))
    assert st["connections"] >= N // 5, st
    assert set(st["by_source_ip"]) == {"127.0.0.1"}, st
    assert all(not e.get("source_ip") for es in evs.values() for e in es), "no egress: no source_ip"


def test_connection_limit_is_per_egress_ip(volley, volley_sink, dnsmasq):
    egress = {"ips": "127.0.0.2 127.0.0.3", "ehlo.127.0.0.2": "out2.volley.test", "ehlo.127.0.0.3": "out3.volley.test"}
    st, log, per_conn, evs, addrs = _run(volley, volley_sink, dnsmasq, connections=2, per_conn=4, egress=egress)
    assert st["peak_concurrent"] <= 2 * 2, f"connections = 2 per site and source IP, 2 IPs: {st}"
    assert st["max_msgs_per_conn"] <= 4 and max(per_conn.values()) <= 4, (st, per_conn.most_common(3))
    assert set(st["by_source_ip"]) == {"127.0.0.2", "127.0.0.3"}, f"only the egress IPs may be seen: {st}"
    assert all(v["messages"] > 0 for v in st["by_source_ip"].values()), st
    # each event names the source IP the sink really saw for that recipient
    src_of = {line["rcpts"][0]: line["src"] for line in log}
    for a in addrs:
        e = one_event(evs, a)
        assert e.get("source_ip") in ("127.0.0.2", "127.0.0.3"), e
        assert e["source_ip"] == src_of[a], f"event says {e['source_ip']}, sink saw {src_of[a]} for {a}"


def test_egress_ehlo_name_per_source_ip(volley):
    """[egress] ehlo.IP: each connection introduces itself with the name of the address it leaves from."""
    from engine_hostile import HostileServer

    srv = HostileServer("ok")
    try:
        volley.write_conf(f"{srv.hostport} tls=none", preset=ENGINE,
                          egress={"ips": "127.0.0.2 127.0.0.3", "ehlo.127.0.0.2": "out2.volley.test"},
                          connections=1, messages_per_connection=2)
        addrs = [f"e{i}@ehlo.example" for i in range(8)]
        volley.deliver(addrs, WORKER_BOUND)
        assert srv.messages == len(addrs)
        seen = set(srv.ehlo)
        # 127.0.0.3 has no ehlo.* key: it uses [worker] hostname
        assert seen == {("127.0.0.2", "out2.volley.test"), ("127.0.0.3", "volley.test")}, seen
    finally:
        srv.stop()
