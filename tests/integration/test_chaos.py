"""
NAME
    test_chaos - the chaos ledger, small: 3,000 recipients, workers SIGKILLed, Redis restarted

DESCRIPTION
    The same run as `make chaos` (tests/integration/chaos_ledger.py) at a size the suite can
    afford (~20 s): three workers from one config, volley-sink deferring, dropping connections,
    closing after 40 messages and rejecting some recipients, one worker SIGKILLed and restarted
    every 2-4 s, Redis (AOF, appendfsync always) SIGKILLed and restarted once. The ledger must
    hold: one final outcome per recipient, every delivered recipient at the sink, duplicates at the
    sink within the jobs counted as reclaimed, counters equal to the events and adding up.
"""

from chaos_ledger import run_chaos, summary


def test_chaos_ledger_small(tmp_path):
    # the sink holds each reply batch 100 ms so the run lasts ~15-20 s (with CHUNKING a connection has up to 4
    # transactions waiting on one hold: 50 ms ended the run in 9 s, before a second kill); kills every 2-4 s: 5-6
    # kills, as many as 200 ms with kills every 3-6 s gave in 25-30 s
    f = run_chaos(tmp_path, 3000, delay_ms=100, kill_every=(2.0, 4.0), redis_restart_at=0.4, timeout_s=400)
    print(summary(f))
    assert not f["problems"], summary(f)
    assert f["kills"] >= 2 and f["redis_restarts"] == 1, summary(f)  # the faults really happened
    assert f["final"] == 3000 and f["delivered"] > 0 and f["bounced"] > 0 and f["suppressed"] > 0, summary(f)
    assert f["deferred_attempts"] > 0, summary(f)  # --defer-percent and --drop-percent were met and retried
