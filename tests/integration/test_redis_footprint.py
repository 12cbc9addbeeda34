"""What Redis keeps once a campaign is done: after 10,000 delivered messages nothing per job is left outside
the events stream. No outcome marker per job, no recorded entry left in the job streams (they are trimmed by
the record script), only the keys of the contract whose size does not grow with the messages sent: the
campaign hash, its counters, the provider's counters (`<p>:pstats:default`: these recipients match no
named provider), the two (empty) job streams with their group and the events stream (capped, and documented
per entry). docs/redis-contract.md; the bench's `redis` section measures the same in bytes."""

from volley_itest import PREFIX

N = 10000
EVENT_LIMIT = 100  # bytes of MEMORY USAGE per entry of the events stream (issue 12's target)
PER_JOB_LIMIT = 16  # bytes per delivered message outside the events stream (issue 12's target)


def used_memory(r):
    return int(r.info("memory")["used_memory"])


def test_nothing_per_job_left_after_10000_delivered(volley, volley_sink, recipients):
    sink = volley_sink()
    volley.write_conf(sink.hostport, connections=20, messages_per_connection=100000, batch=500, max_inflight=2048)
    r = volley.r
    r.flushall()
    before = used_memory(r)
    rows = recipients(N)
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
    volley.run_worker()
    assert sink.stop() == 0
    assert sink.stats()["messages"] == N

    st = volley.stats(cid)
    assert st.get("delivered") == N and st.get("queued") == N, st
    assert r.xlen(volley.key("events")) == N

    # the keys: a fixed set, whatever N is (the worker's heartbeat may still be there, with its TTL)
    keys = set(r.keys(f"{PREFIX}:*"))
    fixed = {volley.key("campaign", cid), volley.key("stats", cid), volley.key("jobs"), volley.key("jobs", "high"),
             volley.key("events"), volley.key("pstats", "default"), volley.key("events", "dict")}
    assert fixed <= keys, f"missing keys: {fixed - keys}"
    extra = keys - fixed
    assert all(k.startswith(volley.key("worker") + ":") for k in extra), f"keys left per job? {sorted(extra)[:10]}"
    assert r.dbsize() == len(keys) <= len(fixed) + 1, sorted(keys)[:10]

    # the job streams: every entry recorded and trimmed, nothing pending, the group still there
    for s in (volley.key("jobs"), volley.key("jobs", "high")):
        assert r.xlen(s) == 0, f"{s} keeps {r.xlen(s)} recorded entries"
        assert r.xpending(s, "volley")["pending"] == 0

    # bytes: every key but the events stream together stays under PER_JOB_LIMIT per message (it is a few KB
    # in all: the campaign's templates and the empty streams). used_memory is only printed: it also counts
    # the allocator's rounding of the events stream's nodes, which MEMORY USAGE leaves out.
    outside = sum(r.memory_usage(k, samples=0) for k in keys - {volley.key("events")})
    assert outside < PER_JOB_LIMIT * N, f"{outside} B outside the events stream for {N} messages"
    events = r.memory_usage(volley.key("events"), samples=0)
    # the compact encoding (docs/redis-contract.md "Event fields"): issue 12's bound per delivered event
    assert events / N <= EVENT_LIMIT, f"events stream {events / N:.1f} B per entry"
    grown = used_memory(r) - before
    print(f"{N} delivered: {len(keys)} keys, {outside} B outside events ({outside / N:.2f} B/msg), "
          f"events {events / N:.1f} B/entry; used_memory grew {grown / N:.1f} B/msg in all")
