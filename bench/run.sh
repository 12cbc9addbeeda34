#!/bin/bash
# NAME
#   run.sh - `make bench`: volley measured against its targets, side by side
# SYNOPSIS
#   make bench                                  (BUILD and PYTHON come from the Makefile)
#   BENCH_QUICK=1 make bench                    (smaller counts, about 2 minutes)
#   BENCH_SECTIONS="spine tls" bench/run.sh     (only some sections)
# DESCRIPTION
#   Every figure that has a target is measured next to its yardstick in the
#   same run, because the machine is small, shared and noisy: only ratios
#   measured side by side mean anything. Sections (docs/bench.md says why):
#     spine     volley push of N personalised ~2 KB messages (text + html,
#               5 variables) into a throwaway redis-server, then
#               `volley worker --exit-when-idle` (plaintext) into volley-sink,
#               once with the bench's tuning and once with the shipped
#               defaults plus only [route] and [smtp] connections = 50;
#               Postfix smtp-source -d -s 50 -m N -l 2048 into the same sink
#               before and after them (the mean is the yardstick). End to end
#               = messages / (worker start to last outcome recorded).
#               Targets: end to end >= 2.0x smtp-source (bench tuning),
#               >= 1.5x (defaults); worker CPU per message <= 10 us.
#     redis     the plaintext spine again, measuring Redis: its CPU per
#               delivered message over the worker phase beside the floor (a
#               pipelined XADD of the same job fields, same run; target <= 8 us
#               and <= 4x), and the memory it keeps per delivered message once
#               the campaign is done (used_memory after - before; target
#               <= 16 B outside <p>:events, events <= 100 B per entry).
#               BENCH_BASELINE_VOLLEY=path/to/old/volley runs the same
#               measures with that binary first, in the same run.
#     sinks     bench/sink-vs-smtp-sink.sh (volley-sink vs smtp-sink, 1.5x).
#     tls       the spine again with [tls] mode = required (STARTTLS on every
#               connection). Targets: >= 0.7x the plaintext msgs/s; worker
#               CPU per message <= 20 us.
#     epoll     the plaintext spine (bench tuning) with [worker] backend =
#               io_uring and = epoll, in the order io_uring, epoll, epoll,
#               io_uring (a machine that drifts moves both means alike).
#               Target: epoll >= 0.8x io_uring msgs/s.
#     conns     the worker holding C (5000) concurrent STARTTLS connections
#               open to a volley-sink that delays every reply; worker VmRSS
#               sampled at the peak of open connections. Target: < 60 KB per
#               connection over the idle worker's RSS.
#     render    bench-render (target >= 300,000 msgs/s on one thread) and
#               bench-dkim rsa-2048 beside `openssl speed rsa2048` (>= 85%).
#     throttle  build/tools/bench-throttle's lines, when it is built; then 3
#               `volley worker` processes (2 threads each) with gmail's
#               shipped limits (100/s, 5 connections, 50 messages per
#               connection) send 3000 gmail.com messages into volley-sink as
#               fast as those allow: the throttle's Redis commands per
#               message (from the workers' exit lines). Target: < 0.05.
#     mta       M (20000) personalised messages, DKIM-signed (rsa-2048), to a
#               volley-sink: volley (push + worker, bench tuning, a [dkim]
#               key) vs a private Postfix instance (bulk relay settings,
#               docs/bench.md) with OpenDKIM as its milter, fed the same
#               rendered messages over SMTP by bench/smtp-inject.py. Both
#               sides' msgs/s (ratio) and CPU per message; every message at
#               the sink must carry a DKIM-Signature, a sample of 50 per side
#               is verified. Needs root (Postfix) and postfix + opendkim.
#     cluster   one worker (2 threads, shards = 12) on a Redis Cluster of 1,
#               2 and 3 primaries (each fresh cluster warmed by one unmeasured
#               run), 3 runs of each interleaved: the median
#               Redis CPU per delivered message summed over the primaries
#               (INFO cpu; each node's idle CPU over as long shown and taken
#               off), per node its context switches and commandstats, the
#               worker's record and read batch sizes; the same under
#               callgrind: Redis instructions per message. Target: each flat
#               within 20% (max / min <= 1.2). Then 1 and 3 primaries at a
#               moderate rate (sink replies held 10 ms) with [worker]
#               batch_wait_ms 25 and 0.
#     replicas  what replication costs: the plaintext spine (bench tuning)
#               with a replica attached to the bench's redis-server, with
#               [redis] replicas_ack = 0 and = 1 (a WAIT after each record
#               batch), in the order 0, 1, 1, 0: msgs/s of each (ratio), the
#               primary's and the replica's CPU per delivered message.
#   Output: progress per section, a markdown table, then key=value lines.
#   Exit status 0 when every section ran (targets missed or not), 1 when a
#   section could not run or lost messages.
# ENVIRONMENT
#   BUILD (build), PYTHON (/usr/bin/python3), BENCH_QUICK=1, BENCH_SECTIONS,
#   BENCH_MSGS (spine messages, 100000; quick 20000), BENCH_MTA_MSGS (20000),
#   BENCH_METRICS=IP:PORT ([metrics] listen in the worker configs of write_conf, scraped every second
#   with curl for the whole run), BENCH_MTA_SESSIONS (injector sessions into Postfix, 20), BENCH_CONNS (5000;
#   quick 1000), BENCH_CONNS_DELAY_MS (sink reply delay in the conns section,
#   3000), BENCH_SPINE_CONNS / BENCH_BATCH / BENCH_INFLIGHT (worker tuning: 50,
#   1000, 8192), BENCH_THROTTLE_TIMEOUT (120 s), BENCH_FLEET_MSGS (3000;
#   quick 1500), BENCH_FLEET_RATE (100/s), BENCH_CLUSTER_MSGS (150000;
#   quick 20000), BENCH_CLUSTER_REPEAT (3; quick 1), BENCH_CLUSTER_DELAY_MS (10),
#   BENCH_CLUSTER_WARM (1: a first, unmeasured run of the campaign on each
#   fresh cluster; 0: measure fresh nodes),
#   BENCH_CLUSTER_INSTR_MSGS (5000, under callgrind), BENCH_KEEP=1 keeps the work
#   directory. docs/bench.md has the details and the measured results.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
VOLLEY=$BUILD/volley
SINK=$BUILD/volley-sink
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
TIME=/usr/bin/time
QUICK=${BENCH_QUICK:-0}
SECTIONS=${BENCH_SECTIONS:-"spine sinks tls epoll redis conns render throttle mta cluster replicas"}
if [ "$QUICK" = 1 ]; then
    MSGS=${BENCH_MSGS:-20000}
    CONNS=${BENCH_CONNS:-1000}
    SINK_ENV=(MSGS=20000 ROUNDS=1 PROCS="1 4")
    RENDER_N=100000 DKIM_N=1000 OSSL_SECS=1
else
    MSGS=${BENCH_MSGS:-100000}
    CONNS=${BENCH_CONNS:-5000}
    SINK_ENV=(MSGS=100000 ROUNDS=3 PROCS="1 4")
    RENDER_N=300000 DKIM_N=6000 OSSL_SECS=3
fi
FLEET_MSGS=${BENCH_FLEET_MSGS:-$([ "$QUICK" = 1 ] && echo 1500 || echo 3000)}
FLEET_RATE=${BENCH_FLEET_RATE:-100/s}
CONNS_DELAY_MS=${BENCH_CONNS_DELAY_MS:-3000}
THROTTLE_TIMEOUT=${BENCH_THROTTLE_TIMEOUT:-120}
# the worker's throughput settings (reported in the output and docs/bench.md)
SPINE_THREADS=2 SPINE_BATCH=${BENCH_BATCH:-1000} SPINE_INFLIGHT=${BENCH_INFLIGHT:-8192}
SPINE_CONNS=${BENCH_SPINE_CONNS:-50} SPINE_MPC=100000

has_section() { [[ " $SECTIONS " == *" $1 "* ]]; }

for b in "$VOLLEY" "$SINK"; do
    [ -x "$b" ] || { echo "bench: $b not built (run make)" >&2; exit 1; }
done
for b in redis-server redis-cli openssl "$SMTP_SOURCE" "$TIME"; do
    command -v "$b" >/dev/null || { echo "bench: $b not installed (make deps)" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/volley-bench.XXXXXX")
PIDS=()
cleanup() {
    # stop only what this script started, by pid
    local p
    declare -F mta_postfix_stop >/dev/null && mta_postfix_stop
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $TMP ${DK_DIR:-}" >&2; else rm -rf "$TMP" ${DK_DIR:+"$DK_DIR"}; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -n "${BENCH_METRICS:-}" ]; then
    # what Prometheus would do: scrape every second, for the whole run (a worker not running refuses: fine)
    (while sleep 1; do curl -s -o /dev/null --max-time 1 "http://$BENCH_METRICS/metrics" || true; done) &
    PIDS+=($!)
fi

RESULTS=()  # key=value lines, printed at the end
ROWS=()     # markdown table rows
FAILED=0
res() { RESULTS+=("$1=$2"); }
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 |"); }
say() { echo "== $*"; }
py() { "$PYTHON" -c "$@"; }
# calc EXPR - a Python arithmetic expression, printed
calc() { "$PYTHON" -c "print($1)"; }
# verdict OK_EXPR - "ok" or "MISS" by a Python boolean expression
verdict() { if [ "$(calc "bool($1)")" = True ]; then echo ok; else echo MISS; fi; }

free_port() {
    py 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for CMD... - retry a check for up to 10 s
wait_for() {
    for _ in $(seq 100); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# start_sink NAME ARGS... - start a volley-sink on a free port; sets SINK_PORT, SINK_PID, SINK_STATS
start_sink() {
    local name=$1
    shift
    SINK_STATS=$TMP/$name.stats.json
    "$SINK" --listen 127.0.0.1:0 --stats-file "$SINK_STATS" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    wait_for grep -q '^listening ' "$TMP/$name.out" || {
        echo "bench: volley-sink ($name) did not start: $(tail -n 3 "$TMP/$name.err")" >&2
        exit 1
    }
    SINK_PORT=$(sed -n 's/^listening 127.0.0.1:\([0-9]*\)$/\1/p' "$TMP/$name.out" | head -1)
    wait_for test -s "$SINK_STATS"
}

# stop_sink - SIGTERM the current sink and wait for its final stats
stop_sink() {
    kill "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
}

# sstat FILE KEY - one counter from a volley-sink stats file
sstat() { py "import json; print(json.load(open('$1'))['$2'])"; }

# settle_stat FILE KEY WANT - wait (up to 5 s) until the stats file shows WANT (it is rewritten every 200 ms)
settle_stat() {
    for _ in $(seq 50); do
        [ "$(sstat "$1" "$2")" -ge "$3" ] && return 0
        sleep 0.1
    done
    return 0
}

# time_field FILE LABEL - a value from `/usr/bin/time -v` output
time_field() { sed -n "s/^[[:space:]]*$2: //p" "$1" | head -1; }
# cpu_ticks PID - user + system clock ticks a running process has used so far (all threads)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# cpu_s FILE - user + system seconds from `/usr/bin/time -v` output
cpu_s() { calc "$(time_field "$1" 'User time (seconds)') + $(time_field "$1" 'System time (seconds)')"; }

# ---------------------------------------------------------------- fixtures
REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$TMP" \
    --logfile "$TMP/redis.log" --daemonize no --protected-mode no &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_for redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping || { echo "bench: redis-server did not start" >&2; exit 1; }
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# a self-signed certificate for the sinks' STARTTLS (RSA 2048, as most receiving MTAs use)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/sink.key" -out "$TMP/sink.crt" -days 2 \
    -subj /CN=volley-sink.test >/dev/null 2>&1

# campaign: text + html, 5 variables per recipient, about 2 KB rendered
mkdir -p "$TMP/campaign"
cat >"$TMP/campaign/bench.ini" <<'EOF'
[campaign]
id = bench
from = Shop News <news@shop.example>
reply_to = Shop Support <support@shop.example>
mail_from = bounces@shop.example
subject = {{first_name}}, your {{plan}} spring code {{code}} is inside
text_file = bench.txt
html_file = bench.html
list_unsubscribe = https://shop.example/u/{{unsub_token}}
feedback_id = spring:bench:shop

[headers]
X-Campaign = bench

[defaults]
city = your town
EOF
cat >"$TMP/campaign/bench.txt" <<'EOF'
Hello {{first_name}},

Spring is here and so is our biggest sale of the season. As a {{plan}}
member you get early access to every deal, before anyone else. Use the
code {{code}} at checkout for an extra 15% off everything in the garden,
kitchen and outdoor departments.

We have also opened a new store near you in {{city}}.

Top picks: cedar garden bed 89.00 EUR, cast iron skillet 34.50 EUR.

Happy shopping,
The Shop team

Unsubscribe: https://shop.example/u/{{unsub_token}}
EOF
cat >"$TMP/campaign/bench.html" <<'EOF'
<!DOCTYPE html><html><head><meta charset="utf-8"><title>Spring sale</title></head>
<body style="font-family: Arial, sans-serif; color: #222; max-width: 600px">
<h1 style="color: #2a7">Hello {{first_name}},</h1>
<p>Spring is here and so is our biggest sale of the season. As a <b>{{plan}}</b>
member you get early access to every deal. Use the code <code>{{code}}</code>
at checkout for an extra 15% off in the garden, kitchen and outdoor departments.</p>
<p>We have opened a new store in <b>{{city}}</b>: the coffee is on us.</p>
<p>Top picks: cedar garden bed 89.00 EUR, cast iron skillet 34.50 EUR.</p>
<p><a href="https://shop.example/spring?u={{unsub_token}}">See all offers</a></p>
<p style="font-size: 11px; color: #888"><a href="https://shop.example/u/{{unsub_token}}">Unsubscribe</a></p>
</body></html>
EOF

# make_csv FILE N - N recipients with 5 variables each, mixed ASCII and UTF-8
make_csv() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
names = ["Ann", "Łucja", "Bob", "Zoë", "Christopher", "Agnieszka", "Olu", "Björn"]
plans = ["standard", "pro", "team"]
cities = ["Kraków", "Lyon", "Osaka", "Porto", "Leeds"]
with open(path, "w", encoding="utf-8") as f:
    f.write("email,first_name,plan,code,city,unsub_token\n")
    for i in range(n):
        f.write("user%07d@example.test,%s,%s,SPR%06d,%s,%016x\n"
                % (i, names[i % 8], plans[i % 3], i, cities[i % 5], (i * 2654435761) & 0xFFFFFFFFFFFFFFFF))
EOF
}

# write_conf FILE SINK_PORT TLS_MODE CONNECTIONS MPC INFLIGHT [extra lines]
write_conf() {
    cat >"$1" <<EOF
[redis]
url = redis://127.0.0.1:$REDIS_PORT
prefix = bench

[worker]
threads = $SPINE_THREADS
hostname = volley.bench.test
name = bench
batch = $SPINE_BATCH
max_inflight = $6

[smtp]
connections = $4
messages_per_connection = $5
new_connections_per_sec = 0
timeout_ms = 60000
idle_timeout_ms = 5000

[route]
* = 127.0.0.1:$2

[tls]
mode = $3

[queue]
claim_idle = 10m

[log]
level = warn
EOF
    [ $# -ge 7 ] && printf '%s\n' "$7" >>"$1"
    [ -n "${BENCH_METRICS:-}" ] && printf '\n[metrics]\nlisten = %s\n' "$BENCH_METRICS" >>"$1"
    return 0
}

# push CONF CSV - queue the bench campaign; prints seconds taken
push() {
    local t0 t1
    t0=$(date +%s%N)
    "$VOLLEY" push -c "$1" --campaign "$TMP/campaign/bench.ini" --recipients "$2" >"$TMP/push.out" 2>"$TMP/push.err" || {
        echo "bench: volley push failed: $(tail -n 3 "$TMP/push.err")" >&2
        exit 1
    }
    t1=$(date +%s%N)
    calc "round(($t1 - $t0) / 1e9, 3)"
}

# last_outcome_ms PREFIX - unix ms of the last outcome recorded: the id of the events stream's last entry
# (XADD '*': Redis's clock, the same machine's); empty when the stream is empty
last_outcome_ms() { rcli xrevrange "$1:events" + - count 1 | head -1 | sed -n 's/^\([0-9]*\)-[0-9]*$/\1/p'; }

# run_worker NAME CONF N [PREFIX] - worker --exit-when-idle under /usr/bin/time -v after a push of N;
# sets W_SECS W_RATE W_CPU_US W_RSS_KB W_SENT, and W_E2E_SECS W_E2E_RATE (the worker's start to the last
# outcome recorded in PREFIX:events, default bench); the sink (SINK_STATS) must count N new messages
run_worker() {
    local name=$1 conf=$2 n=$3 prefix=${4:-bench} t0 t1 before rc=0 last
    before=$(sstat "$SINK_STATS" messages)
    local r0 s0
    W_C0=$(sstat "$SINK_STATS" connections)
    r0=$(cpu_ticks "$REDIS_PID")
    s0=$(cpu_ticks "$SINK_PID")
    t0=$(date +%s%N)
    "$TIME" -v -o "$TMP/$name.time" timeout 600 "$VOLLEY" worker -c "$conf" --exit-when-idle \
        2>"$TMP/$name.log" || rc=$?
    t1=$(date +%s%N)
    if [ "$rc" -ne 0 ]; then
        echo "bench: $name: volley worker exited with status $rc; last log lines:" >&2
        tail -n 20 "$TMP/$name.log" >&2
        FAILED=1
    fi
    W_REDIS_US=$(calc "round(($(cpu_ticks "$REDIS_PID") - $r0) * 1e6 / $HZ / $n, 1)")
    W_SINK_US=$(calc "round(($(cpu_ticks "$SINK_PID") - $s0) * 1e6 / $HZ / $n, 1)")
    settle_stat "$SINK_STATS" messages $((before + n))
    W_SENT=$(($(sstat "$SINK_STATS" messages) - before))
    W_CONNS=$(($(sstat "$SINK_STATS" connections) - W_C0))
    # steady rate: the sink's first to last accepted message of this run (its log has one line per message)
    sleep 0.3
    # and the time from the worker's start to the first message, from the last message to the worker's exit
    read -r W_STEADY W_HEAD_MS W_TAIL_MS < <(tail -n +$((before + 1)) "${W_MSGLOG:-$TMP/spine.msglog}" |
        awk -v t0="$t0" -v t1="$t1" 'NR == 1 {lo = hi = $1} {if ($1 < lo) lo = $1; if ($1 > hi) hi = $1}
            END {r = (hi > lo) ? (NR - 1) * 1000 / (hi - lo) : 0; printf "%.0f %d %d\n", r, lo - t0 / 1e6, t1 / 1e6 - hi}')
    W_SECS=$(calc "($t1 - $t0) / 1e9")
    W_RATE=$(calc "round($W_SENT / $W_SECS)")
    last=$(last_outcome_ms "$prefix")
    [ -n "$last" ] || last=$((t1 / 1000000)) # no events stream: the worker's exit bounds it
    W_E2E_SECS=$(calc "max($last - $t0 / 1e6, 1) / 1e3")
    W_E2E_RATE=$(calc "round($W_SENT / $W_E2E_SECS)")
    W_CPU_US=$(calc "round($(cpu_s "$TMP/$name.time") * 1e6 / max($W_SENT, 1), 1)")
    W_RSS_KB=$(time_field "$TMP/$name.time" 'Maximum resident set size (kbytes)')
    if [ "$W_SENT" -ne "$n" ]; then
        echo "bench: $name: the sink counted $W_SENT of $n messages" >&2
        FAILED=1
    fi
}

PLAIN_RATE=""
CSV=$TMP/rcpt.csv
if has_section spine || has_section tls || has_section epoll || has_section redis; then
    make_csv "$CSV" "$MSGS"
    start_sink spine --threads 2 --log-file "$TMP/spine.msglog" --tls-cert "$TMP/sink.crt" --tls-key "$TMP/sink.key"
    SPINE_SINK_STATS=$SINK_STATS
fi

# ---------------------------------------------------------------- 1. spine
# run_smtp_source TAG - smtp-source -d -s 50 of MSGS x 2048 B into the spine sink; sets SS_SENT SS_RATE SS_CPU_US
run_smtp_source() {
    local tag=$1 before s0 t0 t1
    before=$(sstat "$SINK_STATS" messages)
    s0=$(cpu_ticks "$SINK_PID")
    t0=$(date +%s%N)
    "$TIME" -v -o "$TMP/$tag.time" "$SMTP_SOURCE" -d -s 50 -m "$MSGS" -l 2048 \
        -f bench@shop.example -t user@example.test "127.0.0.1:$SINK_PORT" >"$TMP/$tag.out" 2>&1 || {
        echo "bench: smtp-source failed: $(tail -n 3 "$TMP/$tag.out")" >&2
        FAILED=1
    }
    t1=$(date +%s%N)
    SS_SINK_US=$(calc "round(($(cpu_ticks "$SINK_PID") - $s0) * 1e6 / $HZ / $MSGS, 1)")
    settle_stat "$SINK_STATS" messages $((before + MSGS))
    SS_SENT=$(($(sstat "$SINK_STATS" messages) - before))
    SS_RATE=$(calc "round($SS_SENT / (($t1 - $t0) / 1e9))")
    SS_CPU_US=$(calc "round($(cpu_s "$TMP/$tag.time") * 1e6 / max($SS_SENT, 1), 1)")
    echo "smtp-source ($tag): $SS_SENT messages, $SS_RATE msgs/s, ${SS_CPU_US} us CPU/msg; volley-sink ${SS_SINK_US} us CPU/msg"
}

# write_defaults_conf FILE SINK_PORT - a user's first benchmark: the shipped defaults plus only a route to the
# sink (plain text, like smtp-source) and [smtp] connections = 50 (and where the bench's Redis listens)
write_defaults_conf() {
    cat >"$1" <<EOC
[redis]
url = redis://127.0.0.1:$REDIS_PORT

[smtp]
connections = 50

[route]
* = 127.0.0.1:$2 tls=none
EOC
}

if has_section spine; then
    say "spine: $MSGS messages, volley worker vs smtp-source into volley-sink 127.0.0.1:$SINK_PORT"
    # smtp-source before and after the two volley runs, the same count and size into the same sink: the
    # yardstick is the mean of the two, so a machine that gets busier or quieter during the section moves both
    run_smtp_source smtp-source-1
    SS1_RATE=$SS_RATE SS1_CPU_US=$SS_CPU_US
    m0=$(sstat "$SINK_STATS" messages)
    b0=$(sstat "$SINK_STATS" bytes)
    SS_BYTES=$(calc "round($b0 / max($m0, 1))")

    # volley with the bench's tuning
    conf=$TMP/plain.conf
    write_conf "$conf" "$SINK_PORT" off "$SPINE_CONNS" "$SPINE_MPC" "$SPINE_INFLIGHT"
    rcli flushall >/dev/null
    PUSH_SECS=$(push "$conf" "$CSV")
    PUSH_RATE=$(calc "round($MSGS / $PUSH_SECS)")
    b0=$(sstat "$SINK_STATS" bytes)
    m0=$(sstat "$SINK_STATS" messages)
    run_worker plain "$conf" "$MSGS"
    V_BYTES=$(calc "round(($(sstat "$SINK_STATS" bytes) - $b0) / max($(sstat "$SINK_STATS" messages) - $m0, 1))")
    PLAIN_RATE=$W_RATE
    echo "volley push: $MSGS jobs in ${PUSH_SECS} s ($PUSH_RATE jobs/s)"
    echo "volley worker (bench tuning): $W_SENT messages in $(calc "round($W_SECS, 2)") s, $W_RATE msgs/s;" \
        "start to last outcome recorded $(calc "round($W_E2E_SECS, 2)") s, $W_E2E_RATE msgs/s;" \
        "worker ${W_CPU_US} us CPU/msg, peak RSS $W_RSS_KB KB, $V_BYTES bytes/msg at the sink ($SS_BYTES from smtp-source)"
    echo "  sink-side rate first to last message $W_STEADY msgs/s (start to first message $W_HEAD_MS ms," \
        "last message to exit $W_TAIL_MS ms); $W_CONNS connections opened;" \
        "CPU per message: redis-server ${W_REDIS_US} us, volley-sink ${W_SINK_US} us"
    echo "worker config: threads=$SPINE_THREADS batch=$SPINE_BATCH max_inflight=$SPINE_INFLIGHT" \
        "[smtp] connections=$SPINE_CONNS messages_per_connection=$SPINE_MPC"
    res spine_msgs "$MSGS"
    res spine_msg_bytes "$V_BYTES"
    res push_jobs_per_sec "$PUSH_RATE"
    res volley_msgs_per_sec "$W_RATE"
    res volley_e2e_msgs_per_sec "$W_E2E_RATE"
    res volley_cpu_us_per_msg "$W_CPU_US"
    res volley_peak_rss_kb "$W_RSS_KB"
    res volley_steady_msgs_per_sec "$W_STEADY"
    res volley_redis_cpu_us_per_msg "$W_REDIS_US"
    res volley_sink_cpu_us_per_msg "$W_SINK_US"
    res volley_connections "$W_CONNS"
    T_E2E_RATE=$W_E2E_RATE T_CPU_US=$W_CPU_US T_REDIS_US=$W_REDIS_US T_RSS_KB=$W_RSS_KB

    # volley as a user first runs it: shipped defaults, a route and 50 connections (prefix volley)
    conf=$TMP/defaults.conf
    write_defaults_conf "$conf" "$SINK_PORT"
    rcli flushall >/dev/null
    push "$conf" "$CSV" >/dev/null
    run_worker defaults "$conf" "$MSGS" volley
    echo "volley worker (shipped defaults + route + connections = 50): $W_SENT messages in" \
        "$(calc "round($W_SECS, 2)") s, $W_RATE msgs/s; start to last outcome recorded" \
        "$(calc "round($W_E2E_SECS, 2)") s, $W_E2E_RATE msgs/s; worker ${W_CPU_US} us CPU/msg;" \
        "$W_CONNS connections opened; redis-server ${W_REDIS_US} us CPU/msg"
    res defaults_e2e_msgs_per_sec "$W_E2E_RATE"
    res defaults_cpu_us_per_msg "$W_CPU_US"
    res defaults_redis_cpu_us_per_msg "$W_REDIS_US"
    D_E2E_RATE=$W_E2E_RATE D_CPU_US=$W_CPU_US

    run_smtp_source smtp-source-2
    SS2_RATE=$SS_RATE
    SS_RATE=$(calc "round(($SS1_RATE + $SS2_RATE) / 2)")
    SS_CPU_US=$(calc "round(($SS1_CPU_US + $SS_CPU_US) / 2, 1)")
    res smtp_source_msgs_per_sec "$SS_RATE"
    res smtp_source_cpu_us_per_msg "$SS_CPU_US"
    r=$(calc "round($T_E2E_RATE / $SS_RATE, 2)")
    rd=$(calc "round($D_E2E_RATE / $SS_RATE, 2)")
    res spine_ratio "$r"
    res defaults_ratio "$rd"
    row "spine" "end to end, bench tuning: volley msgs/s, worker start to last outcome recorded (plaintext, $MSGS x ${V_BYTES} B)" \
        "$T_E2E_RATE" ">= 2.0 x smtp-source ($SS_RATE: $SS1_RATE before, $SS2_RATE after); ratio $r" "$(verdict "$r >= 2.0")"
    row "spine" "end to end, shipped defaults + \`[route]\` + \`[smtp] connections = 50\`" "$D_E2E_RATE" \
        ">= 1.5 x smtp-source ($SS_RATE); ratio $rd" "$(verdict "$rd >= 1.5")"
    row "spine" "worker CPU per plaintext message (bench tuning)" "${T_CPU_US} us" \
        "<= 10 us (smtp-source: ${SS_CPU_US} us; redis-server ${T_REDIS_US} us, not included)" "$(verdict "$T_CPU_US <= 10")"
    row "spine" "worker CPU per plaintext message (shipped defaults)" "${D_CPU_US} us" "-" "-"
    row "spine" "volley worker peak RSS" "$T_RSS_KB KB" "-" "-"
    row "spine" "volley push" "$PUSH_RATE jobs/s" "-" "-"
fi
# ---------------------------------------------------------------- 3. STARTTLS (run next to the spine, same sink)
if has_section tls; then
    say "tls: $MSGS messages, [tls] mode = required"
    conf=$TMP/tls.conf
    write_conf "$conf" "$SINK_PORT" required "$SPINE_CONNS" "$SPINE_MPC" "$SPINE_INFLIGHT"
    rcli flushall >/dev/null
    t0=$(sstat "$SINK_STATS" tls_connections)
    push "$conf" "$CSV" >/dev/null
    run_worker tls "$conf" "$MSGS"
    settle_stat "$SINK_STATS" messages 0
    TLS_CONNS=$(($(sstat "$SINK_STATS" tls_connections) - t0))
    echo "volley worker (STARTTLS): $W_SENT messages in $(calc "round($W_SECS, 2)") s, $W_RATE msgs/s," \
        "${W_CPU_US} us CPU/msg, peak RSS $W_RSS_KB KB, $TLS_CONNS TLS connections at the sink"
    echo "  sink-side rate first to last message $W_STEADY msgs/s (start to first message $W_HEAD_MS ms," \
        "last message to exit $W_TAIL_MS ms); $W_CONNS connections opened;" \
        "CPU per message: redis-server ${W_REDIS_US} us, volley-sink ${W_SINK_US} us"
    res tls_msgs_per_sec "$W_RATE"
    res tls_cpu_us_per_msg "$W_CPU_US"
    res tls_peak_rss_kb "$W_RSS_KB"
    res tls_steady_msgs_per_sec "$W_STEADY"
    res tls_redis_cpu_us_per_msg "$W_REDIS_US"
    res tls_sink_cpu_us_per_msg "$W_SINK_US"
    res tls_connections "$TLS_CONNS"
    if [ "$TLS_CONNS" -eq 0 ]; then
        echo "bench: tls: the sink saw no STARTTLS" >&2
        FAILED=1
    fi
    if [ -n "$PLAIN_RATE" ]; then
        r=$(calc "round($W_RATE / $PLAIN_RATE, 2)")
        res tls_ratio "$r"
        row "tls" "volley worker msgs/s, STARTTLS required" "$W_RATE" \
            ">= 0.7 x plaintext ($PLAIN_RATE); ratio $r" "$(verdict "$r >= 0.7")"
    else
        row "tls" "volley worker msgs/s, STARTTLS required" "$W_RATE" "(spine not run: no ratio)" "-"
    fi
    row "tls" "worker CPU per STARTTLS message (bench tuning)" "${W_CPU_US} us" \
        "<= 20 us (redis-server ${W_REDIS_US} us, not included)" "$(verdict "$W_CPU_US <= 20")"
fi
# ---------------------------------------------------------------- epoll: the fallback backend beside io_uring
# epoll_run BACKEND - the plaintext spine (bench tuning) with [worker] backend = BACKEND; sets W_* (run_worker)
epoll_run() {
    local conf=$TMP/backend-$1.conf
    write_conf "$conf" "$SINK_PORT" off "$SPINE_CONNS" "$SPINE_MPC" "$SPINE_INFLIGHT" $'[worker]\nbackend = '"$1"
    rcli flushall >/dev/null
    push "$conf" "$CSV" >/dev/null
    run_worker "backend-$1" "$conf" "$MSGS"
    echo "volley worker ([worker] backend = $1): $W_SENT messages in $(calc "round($W_SECS, 2)") s, $W_RATE msgs/s," \
        "${W_CPU_US} us CPU/msg, peak RSS $W_RSS_KB KB"
}
if has_section epoll; then
    say "epoll: $MSGS messages, [worker] backend = io_uring vs epoll (io_uring, epoll, epoll, io_uring)"
    E_IO_RATE=0 E_EP_RATE=0 E_IO_CPU=0 E_EP_CPU=0
    for be in io_uring epoll epoll io_uring; do
        epoll_run "$be"
        if [ "$be" = epoll ]; then
            E_EP_RATE=$(calc "$E_EP_RATE + $W_RATE / 2") E_EP_CPU=$(calc "$E_EP_CPU + $W_CPU_US / 2")
        else
            E_IO_RATE=$(calc "$E_IO_RATE + $W_RATE / 2") E_IO_CPU=$(calc "$E_IO_CPU + $W_CPU_US / 2")
        fi
    done
    E_IO_RATE=$(calc "round($E_IO_RATE)") E_EP_RATE=$(calc "round($E_EP_RATE)")
    E_IO_CPU=$(calc "round($E_IO_CPU, 1)") E_EP_CPU=$(calc "round($E_EP_CPU, 1)")
    r=$(calc "round($E_EP_RATE / $E_IO_RATE, 2)")
    res io_uring_msgs_per_sec "$E_IO_RATE"
    res epoll_msgs_per_sec "$E_EP_RATE"
    res epoll_cpu_us_per_msg "$E_EP_CPU"
    res epoll_ratio "$r"
    row "epoll" "volley worker msgs/s, \`[worker] backend = epoll\` (plaintext, mean of 2 runs)" "$E_EP_RATE" \
        ">= 0.8 x io_uring ($E_IO_RATE, mean of the 2 runs around them); ratio $r" "$(verdict "$r >= 0.8")"
    row "epoll" "worker CPU per plaintext message, epoll" "${E_EP_CPU} us" "- (io_uring: ${E_IO_CPU} us)" "-"
fi
# ---------------------------------------------------------------- redis: Redis cost per delivered message
# redis_used - used_memory in bytes
redis_used() { rcli info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
# redis_cpu_us - redis-server's user + system CPU so far in us (INFO cpu: getrusage of the process, the
# same figure as utime + stime in /proc/<pid>/stat, at microsecond rather than clock-tick resolution)
redis_cpu_us() { rcli info cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.0f\n", s * 1e6}'; }
# cmdstats PORT N TOP PREFIX - where a redis-server's time went: the TOP commands taking most, calls and us per
# message (N delivered in all; wall time inside each call, so preemption on a busy machine counts; scripts
# include the commands they call)
cmdstats() {
    redis-cli -h 127.0.0.1 -p "$1" info commandstats | awk -F'[:=,]' -v n="$2" '/^cmdstat_/ {sub("cmdstat_", "", $1);
        printf "%s %d calls (%.4f/msg) %.2f us/msg\n", $1, $3, $3 / n, $5 / n}' | sort -k5 -rn | head -"$3" |
        sed "s/^/$4: /"
}

# redis_run TAG VOLLEY_BIN - the plaintext spine with VOLLEY_BIN; sets R_CPU_US R_KEEP_B R_KEYS_B R_EV_B R_EV_N R_DBSIZE
redis_run() {
    local tag=$1 bin=$2 conf=$TMP/redis-$1.conf m0 m1 c0 c1 evmem
    write_conf "$conf" "$SINK_PORT" off "$SPINE_CONNS" "$SPINE_MPC" "$SPINE_INFLIGHT"
    rcli flushall >/dev/null
    rcli script flush >/dev/null
    m0=$(redis_used)
    VOLLEY=$bin push "$conf" "$CSV" >/dev/null
    rcli config resetstat >/dev/null
    c0=$(redis_cpu_us)
    VOLLEY=$bin run_worker "redis-$tag" "$conf" "$MSGS"
    c1=$(redis_cpu_us)
    cmdstats "$REDIS_PORT" "$MSGS" 12 "  $tag"
    sleep 0.5 # let the worker's connections close before the memory is read
    m1=$(redis_used)
    evmem=$(rcli memory usage bench:events samples 0)
    R_EV_N=$(rcli xlen bench:events)
    R_DBSIZE=$(rcli dbsize)
    R_CPU_US=$(calc "round(($c1 - $c0) / $MSGS, 2)")
    R_EV_B=$(calc "round(${evmem:-0} / max($R_EV_N, 1), 1)")
    R_KEEP_B=$(calc "round(($m1 - $m0 - ${evmem:-0}) / $MSGS, 1)")
    # the same by key: MEMORY USAGE of every key but the events stream (the worker's heartbeat excluded)
    R_KEYS_B=$(calc "round($(rcli --scan --pattern 'bench:*' | grep -v -e '^bench:events$' -e '^bench:worker:' |
        while read -r key; do rcli memory usage "$key" samples 0; done | awk '{s += $1} END {print s + 0}') / $MSGS, 2)")
    echo "$tag: redis-server ${R_CPU_US} us CPU per delivered message (/proc ticks: ${W_REDIS_US} us);" \
        "retained $(calc "$m1 - $m0") B after the campaign: events stream ${evmem:-0} B for $R_EV_N entries" \
        "(${R_EV_B} B/entry), ${R_KEEP_B} B per message outside it (MEMORY USAGE of the other keys:" \
        "${R_KEYS_B} B per message); $R_DBSIZE keys:" \
        "$(rcli --scan --pattern 'bench:*' | sed 's/:[0-9][0-9-]*$/:<id>/' | sort | uniq -c | tr -s ' \n' ' ')"
}

# floor_resp CSV - RESP text of one XADD per recipient with the fields volley push writes
floor_resp() {
    "$PYTHON" - "$1" <<'EOF'
import csv, sys
out = sys.stdout.buffer
with open(sys.argv[1], encoding="utf-8") as f:
    for row in csv.DictReader(f):
        args = ["XADD", "bench:floor", "*", "campaign", "bench", "to", row.pop("email")]
        for k, v in row.items():
            args += ["var." + k, v]
        enc = [a.encode() for a in args]
        out.write(b"*%d\r\n" % len(enc) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in enc))
EOF
}

if has_section redis; then
    say "redis: $MSGS messages, Redis CPU and memory per delivered message (plaintext spine)"
    if [ -n "${BENCH_BASELINE_VOLLEY:-}" ]; then
        redis_run before "$BENCH_BASELINE_VOLLEY"
        B_CPU_US=$R_CPU_US B_KEEP_B=$R_KEEP_B B_KEYS_B=$R_KEYS_B B_EV_B=$R_EV_B
    fi
    redis_run after "$VOLLEY"
    # the floor: Redis storing the same jobs once, a pipelined XADD per job
    floor_resp "$CSV" >"$TMP/floor.resp"
    c0=$(redis_cpu_us)
    rcli --pipe <"$TMP/floor.resp" >"$TMP/floor.out"
    c1=$(redis_cpu_us)
    FLOOR_US=$(calc "round(($c1 - $c0) / $MSGS, 2)")
    rcli del bench:floor >/dev/null
    r=$(calc "round($R_CPU_US / $FLOOR_US, 1)")
    echo "floor: pipelined XADD of the same job fields ${FLOOR_US} us per entry; ratio $r"
    res redis_cpu_us_per_msg "$R_CPU_US"
    res redis_xadd_floor_us "$FLOOR_US"
    res redis_cpu_floor_ratio "$r"
    res redis_retained_b_per_msg "$R_KEEP_B"
    res redis_keys_b_per_msg "$R_KEYS_B"
    res redis_events_b_per_entry "$R_EV_B"
    if [ -n "${BENCH_BASELINE_VOLLEY:-}" ]; then
        rb=$(calc "round($B_CPU_US / $FLOOR_US, 1)")
        res redis_before_cpu_us_per_msg "$B_CPU_US"
        res redis_before_retained_b_per_msg "$B_KEEP_B"
        res redis_before_events_b_per_entry "$B_EV_B"
        row "redis" "Redis CPU per delivered message, before ($BENCH_BASELINE_VOLLEY)" "${B_CPU_US} us" \
            "(${rb}x the XADD floor)" "-"
        row "redis" "Redis memory retained per message, before" \
            "${B_KEEP_B} B (keys ${B_KEYS_B} B) + events ${B_EV_B} B/entry" "-" "-"
    fi
    row "redis" "Redis CPU per delivered message (plaintext, $MSGS)" "${R_CPU_US} us" \
        "<= 8 us and <= 4x XADD floor (${FLOOR_US} us); ratio $r" "$(verdict "$R_CPU_US <= 8 and $r <= 4")"
    row "redis" "Redis memory retained per delivered message, outside events" \
        "${R_KEEP_B} B (keys ${R_KEYS_B} B)" "<= 16 B" "$(verdict "$R_KEEP_B <= 16 and $R_KEYS_B <= 16")"
    row "redis" "events stream per entry" "${R_EV_B} B" "<= 100 B" "$(verdict "$R_EV_B <= 100")"
fi
if has_section spine || has_section tls || has_section epoll || has_section redis; then
    stop_sink
fi

# ---------------------------------------------------------------- 2. sinks
if has_section sinks; then
    say "sinks: bench/sink-vs-smtp-sink.sh ${SINK_ENV[*]}"
    if env VOLLEY_BUILD="$BUILD" "${SINK_ENV[@]}" bench/sink-vs-smtp-sink.sh >"$TMP/sinks.out" 2>&1; then
        cat "$TMP/sinks.out"
        sk() { sed -n "s/^$1=//p" "$TMP/sinks.out" | tail -1; }
        for k in smtp_sink_msgs_per_sec volley_sink_msgs_per_sec ratio smtp_sink_msgs_per_sec_p1 \
            volley_sink_msgs_per_sec_p1 ratio_p1 smtp_sink_cpu_us_per_msg volley_sink_cpu_us_per_msg; do
            res "sinks_$k" "$(sk "$k")"
        done
        row "sinks" "volley-sink / smtp-sink, 4 smtp-source procs" \
            "$(sk volley_sink_msgs_per_sec) / $(sk smtp_sink_msgs_per_sec) msgs/s" \
            ">= 1.5x; ratio $(sk ratio)" "$(verdict "$(sk ratio) >= 1.5")"
        row "sinks" "volley-sink / smtp-sink, 1 smtp-source proc" \
            "$(sk volley_sink_msgs_per_sec_p1) / $(sk smtp_sink_msgs_per_sec_p1) msgs/s" \
            "(ratio $(sk ratio_p1))" "-"
        row "sinks" "sink CPU per message" "volley-sink $(sk volley_sink_cpu_us_per_msg) us" \
            "(smtp-sink $(sk smtp_sink_cpu_us_per_msg) us)" "-"
    else
        cat "$TMP/sinks.out"
        echo "bench: sink-vs-smtp-sink.sh failed" >&2
        row "sinks" "volley-sink vs smtp-sink" "failed" ">= 1.5x" "FAIL"
        FAILED=1
    fi
fi

# ---------------------------------------------------------------- 4. connection scale
# conns_run TAG TLS_MODE - the worker holds CONNS connections open to a sink that delays every reply;
# writes TAG_* key=value lines to $TMP/TAG.res. Runs in a subshell (ulimit, its own trap).
conns_run() {
    local tag=$1 mode=$2
    (
        # the EXIT trap is not inherited by a subshell: stop what this one starts
        SUB_PIDS=()
        trap 'for p in "${SUB_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done' EXIT
        # each side needs a descriptor per connection, plus its rings and files
        ulimit -n "$(ulimit -Hn)"
        need=$((CONNS + 500))
        [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] || {
            echo "bench: $tag: ulimit -n $(ulimit -n) < $need; raise the hard limit" >&2
            exit 1
        }
        start_sink "$tag" --threads 2 --tls-cert "$TMP/sink.crt" --tls-key "$TMP/sink.key" \
            --delay-ms "$CONNS_DELAY_MS" --idle-timeout-ms 0
        SUB_PIDS+=("$SINK_PID")
        conf=$TMP/$tag.conf
        # one message per connection, every message in flight at once: CONNS connections open together
        write_conf "$conf" "$SINK_PORT" "$mode" "$CONNS" 1 "$CONNS"
        rcli flushall >/dev/null
        [ -s "$TMP/conns.csv" ] || make_csv "$TMP/conns.csv" "$CONNS"
        "$VOLLEY" worker -c "$conf" 2>"$TMP/$tag.log" &
        wpid=$!
        SUB_PIDS+=("$wpid")
        sleep 2 # started, connected to Redis, idle
        kill -0 "$wpid" 2>/dev/null || { echo "bench: $tag: worker died: $(tail -n 5 "$TMP/$tag.log")" >&2; exit 1; }
        rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$wpid/status"; }
        base=$(rss)
        push "$conf" "$TMP/conns.csv" >/dev/null
        # sample every 100 ms: keep the RSS seen when the sink's concurrent count was highest
        peak=0 peak_rss=$base max_rss=$base t0=$(date +%s)
        while :; do
            cur=$(sstat "$SINK_STATS" concurrent)
            r=$(rss)
            [ "$r" -gt "$max_rss" ] && max_rss=$r
            if [ "$cur" -gt "$peak" ] || { [ "$cur" -eq "$peak" ] && [ "$r" -gt "$peak_rss" ]; }; then
                peak=$cur peak_rss=$r
            fi
            [ "$(sstat "$SINK_STATS" messages)" -ge "$CONNS" ] && break
            [ $(($(date +%s) - t0)) -ge 180 ] && { echo "bench: $tag: not done after 180 s" >&2; break; }
            sleep 0.1
        done
        done_s=$(($(date +%s) - t0))
        kill -TERM "$wpid"
        wait "$wpid" || true
        sent=$(sstat "$SINK_STATS" messages)
        tlsc=$(sstat "$SINK_STATS" tls_connections)
        speak=$(sstat "$SINK_STATS" peak_concurrent)
        stop_sink
        per=$(calc "round(($peak_rss - $base) / max($peak, 1), 1)")
        echo "$tag ([tls] mode = $mode): worker RSS idle $base KB, at $peak open connections $peak_rss KB" \
            "(max seen $max_rss KB): $per KB per connection; sink peak_concurrent $speak," \
            "$tlsc TLS connections, $sent messages in ${done_s} s"
        {
            echo "${tag}_peak=$peak"
            echo "${tag}_sink_peak_concurrent=$speak"
            echo "${tag}_tls_connections=$tlsc"
            echo "${tag}_rss_base_kb=$base"
            echo "${tag}_rss_peak_kb=$peak_rss"
            echo "${tag}_kb_per_conn=$per"
            echo "${tag}_messages=$sent"
        } >"$TMP/$tag.res"
    ) || FAILED=1
    if [ -s "$TMP/$tag.res" ]; then
        while IFS= read -r l; do RESULTS+=("$l"); done <"$TMP/$tag.res"
        [ "$(sed -n "s/^${tag}_messages=//p" "$TMP/$tag.res")" -ge "$CONNS" ] || {
            echo "bench: $tag: messages lost" >&2
            FAILED=1
        }
    fi
}

if has_section conns; then
    say "conns: $CONNS concurrent connections (STARTTLS, then plaintext for comparison), sink reply delay ${CONNS_DELAY_MS} ms"
    res conns_target "$CONNS"
    conns_run conns required
    conns_run conns_plain off
    if [ -s "$TMP/conns.res" ]; then
        per=$(sed -n 's/^conns_kb_per_conn=//p' "$TMP/conns.res")
        pk=$(sed -n 's/^conns_peak=//p' "$TMP/conns.res")
        row "conns" "worker RSS per open STARTTLS connection" "$per KB" \
            "< 60 KB; $pk of $CONNS open at the peak" "$(verdict "$per < 60 and $pk >= 0.9 * $CONNS")"
    else
        row "conns" "worker RSS per open STARTTLS connection" "failed" "< 60 KB" "FAIL"
    fi
    if [ -s "$TMP/conns_plain.res" ]; then
        per=$(sed -n 's/^conns_plain_kb_per_conn=//p' "$TMP/conns_plain.res")
        pk=$(sed -n 's/^conns_plain_peak=//p' "$TMP/conns_plain.res")
        row "conns" "worker RSS per open plaintext connection" "$per KB" "(comparison; $pk open at the peak)" "-"
    fi
fi

# ---------------------------------------------------------------- 5. render and sign
if has_section render; then
    say "render: bench-render -n $RENDER_N (median of 3), bench-dkim -n $DKIM_N vs openssl speed rsa2048"
    rates=()
    for _ in 1 2 3; do
        "$BUILD/tools/bench-render" -n "$RENDER_N" >"$TMP/render.out"
        rates+=("$(sed -n 's/^render_msgs_per_sec=//p' "$TMP/render.out")")
    done
    head -n 2 "$TMP/render.out"
    RENDER=$(printf '%s\n' "${rates[@]}" | sort -n | sed -n 2p)
    echo "render_msgs_per_sec runs: ${rates[*]}; median $RENDER"
    res render_msgs_per_sec "$RENDER"
    row "render" "render + MIME msgs/s, one thread" "$RENDER" ">= 300000" "$(verdict "$RENDER >= 300000")"

    # dkim and openssl speed alternate: dkim, openssl, dkim; the two dkim runs' mean is compared
    "$BUILD/tools/bench-dkim" -n "$DKIM_N" -e $((DKIM_N * 5)) >"$TMP/dkim1.out"
    openssl speed -seconds "$OSSL_SECS" rsa2048 >"$TMP/ossl.out" 2>/dev/null
    "$BUILD/tools/bench-dkim" -n "$DKIM_N" -e $((DKIM_N * 5)) >"$TMP/dkim2.out"
    cat "$TMP/dkim1.out" "$TMP/dkim2.out" | grep -E '^(rsa2048|ed25519):'
    d1=$(sed -n 's/^dkim_rsa2048_per_sec=//p' "$TMP/dkim1.out")
    d2=$(sed -n 's/^dkim_rsa2048_per_sec=//p' "$TMP/dkim2.out")
    e1=$(sed -n 's/^dkim_ed25519_per_sec=//p' "$TMP/dkim1.out")
    e2=$(sed -n 's/^dkim_ed25519_per_sec=//p' "$TMP/dkim2.out")
    DKIM=$(calc "round(($d1 + $d2) / 2)")
    ED=$(calc "round(($e1 + $e2) / 2)")
    # "rsa 2048 bits 0.000284s 0.000009s   3522.4 111111.0": sign/s is the 6th field
    OSSL=$(awk '$1 == "rsa" && $2 == "2048" {print $6}' "$TMP/ossl.out" | tail -1)
    grep -E '^(rsa 2048| *sign)' "$TMP/ossl.out" || true
    r=$(calc "round($DKIM / $OSSL, 3)")
    echo "dkim rsa2048 $DKIM/s (runs $d1, $d2), openssl speed rsa2048 sign $OSSL/s: $(calc "round($r * 100, 1)")%"
    res dkim_rsa2048_per_sec "$DKIM"
    res dkim_ed25519_per_sec "$ED"
    res openssl_rsa2048_sign_per_sec "$OSSL"
    res dkim_vs_openssl "$r"
    row "render" "DKIM rsa-2048 signatures/s" "$DKIM" \
        ">= 85% of openssl speed ($OSSL/s); $(calc "round($r * 100, 1)")%" "$(verdict "$r >= 0.85")"
    row "render" "DKIM ed25519 signatures/s" "$ED" "-" "-"
fi

# ---------------------------------------------------------------- 6. throttle
if has_section throttle; then
    if [ -x "$BUILD/tools/bench-throttle" ]; then
        say "throttle: bench-throttle"
        targs=()
        [ "$QUICK" = 1 ] && targs=(--messages 2000000)
        # stdout carries the results; of its log (stderr) only the first lines and a count are kept
        if timeout "$THROTTLE_TIMEOUT" "$BUILD/tools/bench-throttle" "${targs[@]}" >"$TMP/throttle.out" \
            2> >(awk 'NR <= 5; END {if (NR > 5) print "... " NR " log lines in all"}' >"$TMP/throttle.err"); then
            cat "$TMP/throttle.out"
            sleep 0.2
            [ -s "$TMP/throttle.err" ] && sed 's/^/  stderr: /' "$TMP/throttle.err"
            # key=value lines are kept as results; other lines go into the table as they are
            n=0
            while IFS= read -r l; do
                [ -n "$l" ] || continue
                if [[ "$l" =~ ^[A-Za-z0-9_]+=[^\ ]+$ ]]; then
                    RESULTS+=("throttle_${l#throttle_}")
                else
                    n=$((n + 1))
                    row "throttle" "bench-throttle line $n" "${l//|//}" "-" "-"
                fi
            done <"$TMP/throttle.out"
        else
            rc=$?
            sleep 0.2
            head -n 20 "$TMP/throttle.out"
            sed 's/^/  stderr: /' "$TMP/throttle.err"
            echo "bench: bench-throttle failed (status $rc; 124 = killed after ${THROTTLE_TIMEOUT} s)" >&2
            row "throttle" "bench-throttle" "failed" "-" "FAIL"
            FAILED=1
        fi
    else
        echo "throttle bench: not built yet"
        row "throttle" "bench-throttle" "not built yet" "-" "-"
    fi

    # the same cost in the real engine: 3 worker processes share gmail's limit, sending as fast as it allows
    say "throttle: $FLEET_MSGS gmail.com messages, 3 worker processes sharing [provider gmail] rate = $FLEET_RATE"
    start_sink fleet --threads 2
    make_csv "$TMP/fleet.csv" "$FLEET_MSGS"
    sed -i 's/@example\.test,/@gmail.com,/' "$TMP/fleet.csv"
    fpids=()
    for n in 1 2 3; do
        write_conf "$TMP/fleet$n.conf" "$SINK_PORT" off 50 100000 2000 "$(printf '[provider gmail]\nrate = %s' "$FLEET_RATE")"
        sed -i -e "s/^name = bench$/name = fleet$n/" -e 's/^level = warn$/level = info/' -e 's/^prefix = bench$/prefix = fleet/' \
            -e 's/^batch = .*/batch = 100/' "$TMP/fleet$n.conf"
    done
    push "$TMP/fleet1.conf" "$TMP/fleet.csv" >/dev/null
    t0=$(date +%s%N)
    for n in 1 2 3; do
        timeout 600 "$VOLLEY" worker -c "$TMP/fleet$n.conf" --exit-when-idle 2>"$TMP/fleet$n.log" &
        fpids+=($!)
    done
    frc=0
    for p in "${fpids[@]}"; do wait "$p" || frc=$?; done
    t1=$(date +%s%N)
    settle_stat "$SINK_STATS" messages "$FLEET_MSGS"
    fsent=$(sstat "$SINK_STATS" messages)
    stop_sink
    fcmds=0
    for n in 1 2 3; do
        c=$(sed -n 's/.*throttle_redis_cmds=\([0-9]*\).*/\1/p' "$TMP/fleet$n.log" | tail -1)
        fcmds=$((fcmds + ${c:-0}))
    done
    # where they went, per throttle instance (each worker thread logs its counts by kind on exit)
    grep -ho 'throttle: [0-9]* Redis commands: .*' "$TMP"/fleet?.log | sed 's/^/  /' || true
    if [ "$frc" -ne 0 ] || [ "$fsent" -ne "$FLEET_MSGS" ]; then
        echo "bench: throttle fleet: status $frc, the sink counted $fsent of $FLEET_MSGS" >&2
        tail -n 5 "$TMP"/fleet?.log >&2
        FAILED=1
    fi
    fsecs=$(calc "($t1 - $t0) / 1e9")
    fper=$(calc "round($fcmds / max($fsent, 1), 4)")
    echo "3 workers: $fsent messages in $(calc "round($fsecs, 2)") s ($(calc "round($fsent / $fsecs)")/s of $FLEET_RATE)," \
        "$fcmds throttle Redis commands, $fper per message"
    res throttle_fleet_cmds_per_msg "$fper"
    res throttle_fleet_msgs_per_s "$(calc "round($fsent / $fsecs)")"
    row "throttle" "Redis commands per message, 3 worker processes, gmail $FLEET_RATE" \
        "$fper ($fcmds for $fsent, $(calc "round($fsent / $fsecs)")/s)" "< 0.05" "$(verdict "$fper < 0.05")"
fi

# ---------------------------------------------------------------- 7. mta: volley vs Postfix + OpenDKIM
# sess_ticks SID - clock ticks used by every process of session SID, alive (utime + stime) or exited and reaped by
# one of them (cutime + cstime); the fields are counted after the ") " that ends the command name
sess_ticks() {
    # (processes that end between the glob and the read are skipped: cat goes on past them)
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v sid="$1" '{sub(/^.*\) /, "")} $4 == sid {s += $12 + $13 + $14 + $15} END {print s + 0}'
}
# listening PORT - something accepts on 127.0.0.1:PORT
listening() { py "import socket; socket.create_connection(('127.0.0.1', $1), 1).close()"; }

# mta_postfix_start DIR SMTPD_PORT RELAY_PORT MILTER_PORT - a private Postfix instance (config, queue and data
# under DIR) set up for bulk relay to 127.0.0.1:RELAY_PORT with OpenDKIM as its milter; sets PF_CONF PF_SID
mta_postfix_start() {
    local d=$1 pid
    mkdir -p "$d/conf" "$d/queue" "$d/data"
    chmod 755 "$d"
    chown postfix:postfix "$d/data"
    cat >"$d/conf/main.cf" <<EOC
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.bench.test
# the log (postlogd) to start-fg's standard output: DIR/maillog
maillog_file = /dev/stdout
# a relay only: no local delivery, no aliases, no bounces to the postmaster
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 local delivery is disabled
alias_maps =
alias_database =
notify_classes =
biff = no
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
relayhost = [127.0.0.1]:$3
smtp_tls_security_level = none
smtpd_tls_security_level = none
# bulk relay: 50 parallel deliveries to the relay from the start (no slow start), processes for them,
# and connections kept open and reused across messages
default_process_limit = 150
default_destination_concurrency_limit = 50
smtp_destination_concurrency_limit = 50
relay_destination_concurrency_limit = 50
initial_destination_concurrency = 50
smtp_connection_cache_destinations = [127.0.0.1]:$3
smtp_connection_cache_time_limit = 10s
smtp_connection_reuse_time_limit = 300s
# DKIM signing by OpenDKIM, for mail received over SMTP and mail submitted locally
smtpd_milters = inet:127.0.0.1:$4
non_smtpd_milters = \$smtpd_milters
milter_protocol = 6
milter_default_action = tempfail
EOC
    # master.cf: Postfix's stock one, smtpd listening on the loopback port instead of port 25, and no chroot (the
    # private queue directory has no chroot environment)
    awk -v listen="127.0.0.1:$2" '/^smtp[ \t]+inet/ {print listen " inet n - n - - smtpd"; next}
        /^[a-z]/ && NF >= 8 && $5 == "y" {$5 = "n"} {print}' /usr/share/postfix/master.cf.dist >"$d/conf/master.cf"
    PF_CONF=$d/conf
    # its own session, so that every Postfix process (and only those) can be found and counted
    setsid postfix -c "$PF_CONF" start-fg >"$d/maillog" 2>&1 &
    PIDS+=("$!")
    wait_for listening "$2" || { echo "bench: postfix did not start: $(tail -n 5 "$d/maillog")" >&2; return 1; }
    pid=$(tr -d ' ' <"$d/queue/pid/master.pid")
    PF_SID=$(awk '{sub(/^.*\) /, ""); print $4}' "/proc/$pid/stat")
}

# mta_postfix_stop - stop the instance started by mta_postfix_start, then anything left in its session
mta_postfix_stop() {
    [ -n "${PF_CONF:-}" ] || return 0
    postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true
    sleep 0.5
    # the process group setsid made (its id is the session's): whatever did not stop
    [ -n "${PF_SID:-}" ] && kill -KILL -- "-$PF_SID" 2>/dev/null || true
    PF_CONF=""
}

# dkim_check DIR PUBKEY_B64 - every message in DIR/new carries a DKIM-Signature by d=shop.example, and a sample of
# 50 verifies (python3-dkim, with the public key in place of DNS); prints "signed N of M, verified K of 50"
dkim_check() {
    "$PYTHON" - "$1" "$2" <<'EOC'
import os, random, sys
import dkim
d, pub = os.path.join(sys.argv[1], "new"), sys.argv[2]
names = sorted(os.listdir(d))
signed = 0
for n in names:
    with open(os.path.join(d, n), "rb") as f:
        head = f.read(8192).split(b"\r\n\r\n", 1)[0]
    signed += b"\r\nDKIM-Signature: v=1; a=rsa-sha256;" in head and b"d=shop.example;" in head
txt = ("v=DKIM1; k=rsa; p=" + pub).encode()
ok = 0
sample = random.Random(1).sample(names, min(50, len(names)))
for n in sample:
    with open(os.path.join(d, n), "rb") as f:
        ok += bool(dkim.verify(f.read(), dnsfunc=lambda name, timeout=5: txt))
print(f"signed {signed} of {len(names)}, verified {ok} of {len(sample)}")
sys.exit(0 if signed == len(names) and ok == len(sample) else 1)
EOC
}

if has_section mta; then
    MTA_MSGS=${BENCH_MTA_MSGS:-20000}
    MTA_SESSIONS=${BENCH_MTA_SESSIONS:-20}
    say "mta: $MTA_MSGS personalised DKIM-signed (rsa-2048) messages, volley vs Postfix + OpenDKIM, to volley-sink"
    for b in postfix opendkim /usr/share/postfix/master.cf.dist; do
        command -v "$b" >/dev/null || [ -f "$b" ] || { echo "bench: $b not installed (make deps)" >&2; exit 1; }
    done
    M=$TMP/mta
    mkdir -p "$M"
    chmod 711 "$TMP" # the postfix user must reach its queue and data directories below
    # OpenDKIM refuses a configuration or key file below a directory others may write (such as /tmp): the key
    # and its configuration go to a directory of their own under /run
    DK_DIR=$(mktemp -d /run/volley-bench-opendkim.XXXXXX)
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$DK_DIR/dkim.pem" 2>/dev/null
    chmod 600 "$DK_DIR/dkim.pem"
    DKIM_PUB=$(openssl pkey -in "$DK_DIR/dkim.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
    make_csv "$M/rcpt.csv" "$MTA_MSGS"

    # the messages Postfix gets: the same campaign rendered by volley, unsigned, kept by a sink (not timed)
    start_sink mta-src --threads 2 --maildir "$M/src"
    write_conf "$M/src.conf" "$SINK_PORT" off "$SPINE_CONNS" "$SPINE_MPC" "$SPINE_INFLIGHT"
    rcli flushall >/dev/null
    push "$M/src.conf" "$M/rcpt.csv" >/dev/null
    timeout 600 "$VOLLEY" worker -c "$M/src.conf" --exit-when-idle 2>"$M/src.log" || {
        echo "bench: mta: rendering the messages failed: $(tail -n 3 "$M/src.log")" >&2
        exit 1
    }
    settle_stat "$SINK_STATS" messages "$MTA_MSGS"
    stop_sink

    # volley: push, then the worker (bench tuning, [dkim] key) until the last outcome is recorded
    start_sink mta-volley --threads 2 --maildir "$M/volley" --log-file "$M/volley.msglog"
    write_conf "$M/volley.conf" "$SINK_PORT" off "$SPINE_CONNS" "$SPINE_MPC" "$SPINE_INFLIGHT" \
        "$(printf '[dkim]\nkey = shop.example bench rsa %s' "$DK_DIR/dkim.pem")"
    rcli flushall >/dev/null
    r0=$(cpu_ticks "$REDIS_PID")
    "$TIME" -v -o "$M/push.time" "$VOLLEY" push -c "$M/volley.conf" --campaign "$TMP/campaign/bench.ini" \
        --recipients "$M/rcpt.csv" >"$M/push.out" 2>&1 || { echo "bench: mta: volley push failed" >&2; exit 1; }
    MV_PUSH_SECS=$(time_field "$M/push.time" 'Elapsed (wall clock) time (h:mm:ss or m:ss)' | awk -F: '{print $NF + 60 * $(NF-1)}')
    MV_PUSH_US=$(calc "round($(cpu_s "$M/push.time") * 1e6 / $MTA_MSGS, 1)")
    W_MSGLOG=$M/volley.msglog run_worker mta-volley "$M/volley.conf" "$MTA_MSGS"
    MV_REDIS_US=$(calc "round(($(cpu_ticks "$REDIS_PID") - $r0) * 1e6 / $HZ / $MTA_MSGS, 1)")
    MV_SECS=$(calc "$MV_PUSH_SECS + $W_E2E_SECS")
    MV_RATE=$(calc "round($W_SENT / $MV_SECS)")
    MV_WORKER_US=$W_CPU_US
    MV_CPU_US=$(calc "round($MV_WORKER_US + $MV_REDIS_US, 1)")
    stop_sink
    MV_DKIM=$(dkim_check "$M/volley" "$DKIM_PUB") || { echo "bench: mta: volley's signatures: $MV_DKIM" >&2; FAILED=1; }
    echo "volley: $W_SENT messages, push $MV_PUSH_SECS s + worker start to last outcome recorded" \
        "$(calc "round($W_E2E_SECS, 2)") s = $(calc "round($MV_SECS, 2)") s, $MV_RATE msgs/s; CPU per message: worker" \
        "$MV_WORKER_US us + redis-server $MV_REDIS_US us = $MV_CPU_US us (volley push $MV_PUSH_US us);" \
        "$W_CONNS connections; at the sink: $MV_DKIM"

    # Postfix + OpenDKIM: the same messages injected over SMTP, relayed to a sink like volley's
    start_sink mta-postfix --threads 2 --maildir "$M/postfix" --log-file "$M/postfix.msglog"
    DK_PORT=$(free_port)
    PF_PORT=$(free_port)
    cat >"$DK_DIR/opendkim.conf" <<EOC
Syslog no
Mode s
Domain shop.example
Selector bench
KeyFile $DK_DIR/dkim.pem
Canonicalization relaxed/relaxed
SignatureAlgorithm rsa-sha256
SignHeaders From,To,Subject,Date,Message-ID,MIME-Version,Content-Type,Reply-To,List-Unsubscribe,List-Unsubscribe-Post,Feedback-ID
OversignHeaders From
InternalHosts 127.0.0.1
Socket inet:$DK_PORT@127.0.0.1
EOC
    opendkim -f -x "$DK_DIR/opendkim.conf" >"$M/opendkim.out" 2>&1 &
    DK_PID=$!
    PIDS+=("$DK_PID")
    wait_for listening "$DK_PORT" || { echo "bench: opendkim did not start: $(tail -n 5 "$M/opendkim.out")" >&2; exit 1; }
    mta_postfix_start "$M/pf" "$PF_PORT" "$SINK_PORT" "$DK_PORT" || exit 1
    sleep 1 # its start-up work done
    p0=$(sess_ticks "$PF_SID")
    d0=$(cpu_ticks "$DK_PID")
    "$TIME" -v -o "$M/inject.time" "$PYTHON" bench/smtp-inject.py --maildir "$M/src" --to "127.0.0.1:$PF_PORT" \
        --sessions "$MTA_SESSIONS" >"$M/inject.out" 2>&1 || {
        echo "bench: mta: injecting into Postfix failed: $(tail -n 3 "$M/inject.out")" >&2
        FAILED=1
    }
    cat "$M/inject.out"
    # delivered: the sink has all of them (or nothing new for 60 s)
    last=0 still=0
    while [ "$(sstat "$SINK_STATS" messages)" -lt "$MTA_MSGS" ] && [ "$still" -lt 600 ]; do
        n=$(sstat "$SINK_STATS" messages)
        if [ "$n" = "$last" ]; then still=$((still + 1)); else still=0 last=$n; fi
        sleep 0.1
    done
    p1=$(sess_ticks "$PF_SID")
    d1=$(cpu_ticks "$DK_PID")
    # where Postfix's CPU went: seconds by program since its start (live processes, and master's reaped children)
    echo "postfix CPU seconds by program since its start: $({ cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v sid="$PF_SID" -v hz="$HZ" '{c = $2; sub(/^.*\) /, "")}
            $4 == sid {t[c] += ($12 + $13) / hz; if ($14 + $15 > 0) t[c " children"] += ($14 + $15) / hz}
            END {for (k in t) if (t[k] >= 0.01) printf "%s %.2f, ", k, t[k]}')"
    settle_stat "$SINK_STATS" messages "$MTA_MSGS"
    MP_SENT=$(sstat "$SINK_STATS" messages)
    stop_sink
    mta_postfix_stop
    kill "$DK_PID" 2>/dev/null || true
    wait "$DK_PID" 2>/dev/null || true
    start_ms=$(sed -n 's/.* start_ms=\([0-9]*\) .*/\1/p' "$M/inject.out")
    end_ms=$(awk '$1 > m + 0 {m = $1} END {printf "%.0f\n", m}' "$M/postfix.msglog")
    MP_SECS=$(calc "max($end_ms - ${start_ms:-0}, 1) / 1e3")
    MP_RATE=$(calc "round($MP_SENT / $MP_SECS)")
    MP_PF_US=$(calc "round(($p1 - $p0) * 1e6 / $HZ / max($MP_SENT, 1), 1)")
    MP_DK_US=$(calc "round(($d1 - $d0) * 1e6 / $HZ / max($MP_SENT, 1), 1)")
    MP_CPU_US=$(calc "round($MP_PF_US + $MP_DK_US, 1)")
    MP_INJ_US=$(calc "round($(cpu_s "$M/inject.time") * 1e6 / max($MP_SENT, 1), 1)")
    if [ "$MP_SENT" -ne "$MTA_MSGS" ]; then
        echo "bench: mta: the sink counted $MP_SENT of $MTA_MSGS from Postfix; its log:" >&2
        grep -E 'warning|error|fatal|reject' "$M/pf/maillog" | tail -n 10 >&2
        FAILED=1
    fi
    MP_DKIM=$(dkim_check "$M/postfix" "$DKIM_PUB") || { echo "bench: mta: Postfix's signatures: $MP_DKIM" >&2; FAILED=1; }
    echo "postfix + opendkim: $MP_SENT messages, first injected to last at the sink $(calc "round($MP_SECS, 2)") s," \
        "$MP_RATE msgs/s; CPU per message: postfix $MP_PF_US us + opendkim $MP_DK_US us = $MP_CPU_US us" \
        "(injector $MP_INJ_US us); at the sink: $MP_DKIM"
    r=$(calc "round($MV_RATE / max($MP_RATE, 1), 2)")
    rc=$(calc "round($MP_CPU_US / max($MV_CPU_US, 0.1), 2)")
    res mta_msgs "$MTA_MSGS"
    res mta_volley_msgs_per_sec "$MV_RATE"
    res mta_volley_cpu_us_per_msg "$MV_CPU_US"
    res mta_volley_worker_cpu_us_per_msg "$MV_WORKER_US"
    res mta_volley_redis_cpu_us_per_msg "$MV_REDIS_US"
    res mta_volley_push_cpu_us_per_msg "$MV_PUSH_US"
    res mta_postfix_msgs_per_sec "$MP_RATE"
    res mta_postfix_cpu_us_per_msg "$MP_CPU_US"
    res mta_postfix_only_cpu_us_per_msg "$MP_PF_US"
    res mta_opendkim_cpu_us_per_msg "$MP_DK_US"
    res mta_injector_cpu_us_per_msg "$MP_INJ_US"
    res mta_ratio "$r"
    res mta_cpu_ratio "$rc"
    row "mta" "DKIM rsa-2048, $MTA_MSGS personalised: volley / Postfix + OpenDKIM msgs/s" "$MV_RATE / $MP_RATE" \
        "ratio $r" "-"
    row "mta" "CPU per message, volley: worker + redis-server" "$MV_CPU_US us ($MV_WORKER_US + $MV_REDIS_US)" \
        "(volley push $MV_PUSH_US us)" "-"
    row "mta" "CPU per message, Postfix (all its processes) + OpenDKIM" "$MP_CPU_US us ($MP_PF_US + $MP_DK_US)" \
        "(injector $MP_INJ_US us); $rc x volley's" "-"
fi

# ---------------------------------------------------------------- 8. cluster: Redis CPU per message per shard
# cl_start K [WRAP...] - K redis-server primaries in cluster mode (no replicas), the 16384 slots split in K
# ranges, joined with CLUSTER MEET; each run under WRAP (valgrind) when given; sets CL_PORTS CL_PIDS
# (redis-cli --cluster create wants 3 primaries at least)
cl_start() {
    local k=$1 i p lo hi
    shift
    CL_PORTS=() CL_PIDS=()
    for i in $(seq "$k"); do
        p=$(free_port)
        while [ $((p + 10000)) -gt 65535 ]; do p=$(free_port); done
        mkdir -p "$TMP/cl$k-$p"
        "$@" redis-server --bind 127.0.0.1 --port "$p" --save "" --appendonly no --dir "$TMP/cl$k-$p" \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
            --logfile "$TMP/cl$k-$p/redis.log" --protected-mode no 2>"$TMP/cl$k-$p/stderr" &
        CL_PIDS+=($!)
        PIDS+=($!)
        CL_PORTS+=("$p")
        # under valgrind a node takes longer to answer (up to a minute on a busy machine)
        for _ in $(seq $(($# > 0 ? 6 : 1))); do wait_for redis-cli -p "$p" ping && break; done
        redis-cli -p "$p" ping >/dev/null 2>&1 || { echo "bench: cluster node $p did not start" >&2; exit 1; }
    done
    for i in $(seq 0 $((k - 1))); do
        lo=$((16384 * i / k)) hi=$((16384 * (i + 1) / k - 1))
        redis-cli -p "${CL_PORTS[$i]}" cluster addslotsrange "$lo" "$hi" >/dev/null
        [ "$i" -gt 0 ] && redis-cli -p "${CL_PORTS[$i]}" cluster meet 127.0.0.1 "${CL_PORTS[0]}" >/dev/null
    done
    for p in "${CL_PORTS[@]}"; do
        wait_for sh -c "redis-cli -p $p cluster info | grep -q cluster_state:ok" ||
            { echo "bench: cluster of $k did not become ok" >&2; exit 1; }
    done
    sleep 1 # every node agrees on the slots (the gossip after MEET)
}

cl_stop() {
    local p
    for p in "${CL_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${CL_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

# cl_cpu_us PORT - a cluster node's user + system CPU so far in us (INFO cpu, as redis_cpu_us)
cl_cpu_us() { REDIS_PORT=$1 redis_cpu_us; }

# cl_switches PID - the node's context switches so far (voluntary: each wake-up to serve a read or its cron)
cl_switches() { awk '/^(non)?voluntary_ctxt_switches:/ {s += $2} END {print s}' "/proc/$1/status"; }


# cl_run K CONF - push the campaign into the cluster, run one worker until the queue is drained; sets
# CL_SENT and CL_WSECS (the worker's run, s)
cl_run() {
    local k=$1 conf=$2 rc=0 before w0 w1
    push "$conf" "$TMP/cl-$CL_N.csv" >/dev/null
    before=$(sstat "$SINK_STATS" messages)
    "${CL_BEFORE[@]}"
    w0=$(date +%s%N)
    timeout 1200 "$VOLLEY" worker -c "$conf" --exit-when-idle 2>"$conf.log" || rc=$?
    w1=$(date +%s%N)
    "${CL_AFTER[@]}"
    settle_stat "$SINK_STATS" messages $((before + CL_N))
    CL_SENT=$(($(sstat "$SINK_STATS" messages) - before))
    CL_WSECS=$(calc "($w1 - $w0) / 1e9")
    if [ "$rc" -ne 0 ] || [ "$CL_SENT" -ne "$CL_N" ]; then
        echo "bench: cluster of $k: worker exit $rc, the sink counted $CL_SENT of $CL_N" >&2
        tail -n 5 "$conf.log" >&2
        FAILED=1
    fi
    # the worker's batches: record script calls and reads of jobs per thread
    sed -n 's/.*\[\(w[0-9]*\)\] redis: /\1: /p' "$conf.log" | sed "s/^/    $k primaries, worker thread /"
}

# cl_conf K FILE - the worker's config for the cluster of CL_PORTS
cl_conf() {
    write_conf "$2" "$SINK_PORT" off "$SPINE_CONNS" "$SPINE_MPC" "$SPINE_INFLIGHT"
    sed -i -e "s|^url = .*|url = redis+cluster://$(printf '127.0.0.1:%s,' "${CL_PORTS[@]}" | sed 's/,$//')\nshards = $CL_SHARDS|" \
        -e 's/^level = warn$/level = info/' "$2"
}

# cl_zero / cl_dump - callgrind's counts of every node set to 0 before the worker, written out after it
cl_zero() { for p in "${CL_PIDS[@]}"; do callgrind_control -z "$p" >/dev/null 2>&1; done; }
cl_dump() { for p in "${CL_PIDS[@]}"; do callgrind_control -d "$p" >/dev/null 2>&1; done; }
# cl_mark / cl_read - INFO cpu, context switches and command statistics of every node around the worker
cl_mark() {
    CL_C0=() CL_S0=()
    for i in "${!CL_PIDS[@]}"; do
        redis-cli -p "${CL_PORTS[$i]}" config resetstat >/dev/null
        CL_C0+=("$(cl_cpu_us "${CL_PORTS[$i]}")") CL_S0+=("$(cl_switches "${CL_PIDS[$i]}")")
    done
}
cl_read() {
    CL_C1=() CL_S1=()
    for i in "${!CL_PIDS[@]}"; do CL_C1+=("$(cl_cpu_us "${CL_PORTS[$i]}")") CL_S1+=("$(cl_switches "${CL_PIDS[$i]}")"); done
}

# cl_measure SENT WSECS LABEL - each node's CPU per delivered message over the worker's run (cl_mark / cl_read)
# and its context switches; then every node's idle CPU over as long again, all at once (cluster up, no worker:
# its cron and the cluster bus, a fixed cost per node, not per message). Sets CL_PER (raw us per node) and the
# sums CL_RAWSUM, CL_NETSUM (net of idle) and CL_WORST (the busiest node's net us)
cl_measure() {
    local sent=$1 wsecs=$2 label=$3 i us idle i0=() i1=()
    for i in "${!CL_PIDS[@]}"; do i0+=("$(cl_cpu_us "${CL_PORTS[$i]}")"); done
    sleep "$wsecs"
    for i in "${!CL_PIDS[@]}"; do i1+=("$(cl_cpu_us "${CL_PORTS[$i]}")"); done
    CL_PER=() CL_RAWSUM=0 CL_NETSUM=0 CL_WORST=0
    for i in "${!CL_PIDS[@]}"; do
        us=$(calc "round((${CL_C1[$i]} - ${CL_C0[$i]}) / max($sent, 1), 2)")
        idle=$(calc "round((${i1[$i]} - ${i0[$i]}) / max($sent, 1), 2)")
        echo "    $label, node $i: $us us per message, $((CL_S1[i] - CL_S0[i])) context switches; idle" \
            "$(calc "round((${i1[$i]} - ${i0[$i]}) / $wsecs / 1000, 2)") ms/s = $idle us per message over the" \
            "worker's $(calc "round($wsecs, 2)") s"
        CL_PER+=("$us")
        CL_RAWSUM=$(calc "round($CL_RAWSUM + $us, 2)")
        CL_NETSUM=$(calc "round($CL_NETSUM + $us - $idle, 2)")
        CL_WORST=$(calc "max($CL_WORST, $us - $idle)")
    done
}

# cl_one K CONF LABEL [CMDSTATS] - a cluster of K primaries, the campaign run through it with CONF's worker
# settings (cl_conf, then the line in CONF_EXTRA, if set, added under [worker]), measured (cl_measure); the cluster
# stopped after. CMDSTATS=1: print each node's top commands too. With CL_WARM=1 the same campaign is run through
# the fresh cluster once first, unmeasured: the measured run finds the nodes' heaps grown and the scripts loaded,
# as a cluster that has been running does
cl_one() {
    local k=$1 conf=$2 label=$3 stats=${4:-0} i
    cl_start "$k"
    cl_conf "$k" "$conf"
    [ -z "${CONF_EXTRA:-}" ] || sed -i "s/^\[worker\]$/&\n$CONF_EXTRA/" "$conf"
    if [ "$CL_WARM" = 1 ]; then
        CL_N=$CL_MSGS CL_BEFORE=(true) CL_AFTER=(true)
        cl_run "$k" "$conf" >/dev/null
    fi
    CL_N=$CL_MSGS CL_BEFORE=(cl_mark) CL_AFTER=(cl_read)
    cl_run "$k" "$conf"
    if [ "$stats" = 1 ]; then
        for i in "${!CL_PIDS[@]}"; do cmdstats "${CL_PORTS[$i]}" "$CL_SENT" 6 "    $label, node $i"; done
    fi
    cl_measure "$CL_SENT" "$CL_WSECS" "$label"
    echo "$label: Redis CPU per message $CL_RAWSUM us (per primary: ${CL_PER[*]}), $CL_NETSUM us net of idle," \
        "$(calc "round($CL_SENT / max($CL_WSECS, 0.001))") msgs/s"
    cl_stop
}

# med X... - the median of numbers
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

if has_section cluster; then
    # runs of ~2 s: at 60,000 messages (~1.4 s) a worker's start and idle exit were a third of the run, and what
    # they cost each node (groups, scripts, the pending pass, the idle checks) counted as per-message cost
    CL_MSGS=${BENCH_CLUSTER_MSGS:-$([ "$QUICK" = 1 ] && echo 20000 || echo 150000)}
    CL_REPEAT=${BENCH_CLUSTER_REPEAT:-$([ "$QUICK" = 1 ] && echo 1 || echo 3)}
    CL_DELAY_MS=${BENCH_CLUSTER_DELAY_MS:-10}
    CL_WARM=${BENCH_CLUSTER_WARM:-1}
    CL_INSTR_MSGS=${BENCH_CLUSTER_INSTR_MSGS:-5000}
    CL_SHARDS=12
    say "cluster: $CL_MSGS messages, shards = $CL_SHARDS, 1 worker (2 threads), on 1, 2 and 3 primaries," \
        "$CL_REPEAT runs of each interleaved (1, 2, 3, 1, 2, 3, ...): medians$([ "$CL_WARM" = 1 ] &&
            echo "; each fresh cluster warmed by one unmeasured run first")"
    make_csv "$TMP/cl-$CL_MSGS.csv" "$CL_MSGS"
    start_sink cluster --threads 1
    declare -A CL_NETS=() CL_RAWS=() CL_WORSTS=()
    for r in $(seq "$CL_REPEAT"); do
        for k in 1 2 3; do
            cl_one "$k" "$TMP/cl$k.conf" "cluster of $k primaries, run $r" "$([ "$r" = 1 ] && echo 1 || echo 0)"
            CL_NETS[$k]+="$CL_NETSUM " CL_RAWS[$k]+="$CL_RAWSUM " CL_WORSTS[$k]+="$CL_WORST "
        done
    done
    CL_NET=() CL_RAW=()
    for k in 1 2 3; do
        net=$(med ${CL_NETS[$k]}) raw=$(med ${CL_RAWS[$k]}) worst=$(med ${CL_WORSTS[$k]})
        cap_even=$(calc "round($k * 1e6 / max($net, 0.1))")
        cap_here=$(calc "round(1e6 / max($worst, 0.1))")
        echo "cluster of $k primaries: median Redis CPU per message $net us net of idle (runs: ${CL_NETS[$k]% }), raw" \
            "$raw us; capacity at 100% of each primary: $cap_even msgs/s with an even spread, $cap_here with this one"
        res "cluster_${k}p_redis_cpu_us_per_msg" "$raw"
        res "cluster_${k}p_redis_cpu_net_us_per_msg" "$net"
        res "cluster_${k}p_capacity_msgs_per_sec" "$cap_even"
        row "cluster" "$k primaries, shards = $CL_SHARDS: Redis CPU per message, sum of primaries net of idle, median of $CL_REPEAT (raw)" \
            "$net us ($raw us; runs ${CL_NETS[$k]% })" "flat within 20%" "-"
        row "cluster" "$k primaries: capacity at 100% of each primary core (even spread / this spread)" \
            "$cap_even / $cap_here msgs/s" "linear in primaries" "-"
        CL_NET+=("$net") CL_RAW+=("$raw")
    done
    # the work itself, free of the machine's contention: instructions Redis executes per message (callgrind)
    CL_INSTR=()
    if [ "$CL_INSTR_MSGS" -gt 0 ] && command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
        make_csv "$TMP/cl-$CL_INSTR_MSGS.csv" "$CL_INSTR_MSGS"
        for k in 1 2 3; do
            mkdir -p "$TMP/cg$k"
            cl_start "$k" valgrind --tool=callgrind "--callgrind-out-file=$TMP/cg$k/out.%p"
            cl_conf "$k" "$TMP/cg$k.conf"
            CL_N=$CL_INSTR_MSGS CL_BEFORE=(cl_zero) CL_AFTER=(cl_dump)
            cl_run "$k" "$TMP/cg$k.conf"
            ir=()
            for p in "${CL_PIDS[@]}"; do
                ir+=("$(calc "round($(sed -n 's/^summary: //p' "$TMP/cg$k/out.$p.1") / max($CL_SENT, 1) / 1000, 1)")")
            done
            cl_stop
            sum=$(calc "round($(IFS=+; echo "${ir[*]}"), 1)")
            echo "cluster of $k primaries under callgrind, $CL_INSTR_MSGS messages: $sum thousand instructions per" \
                "message (per primary: ${ir[*]})"
            res "cluster_${k}p_redis_kinstr_per_msg" "$sum"
            row "cluster" "$k primaries: Redis instructions per message (callgrind, $CL_INSTR_MSGS messages)" \
                "$sum k ($(IFS=+; echo "${ir[*]}"))" "flat within 20%" "-"
            CL_INSTR+=("$sum")
        done
    fi
    stop_sink
    # a moderate rate: the sink holds every batch of its replies CL_DELAY_MS, so messages are decided a few
    # at a time; with [worker] batch_wait_ms at its default (25) and at 0 (every record call and read as soon
    # as it can), on 1 and 3 primaries
    start_sink cluster-slow --threads 1 --delay-ms "$CL_DELAY_MS"
    declare -A CL_MOD=()
    for k in 1 3; do
        for bw in 25 0; do
            CONF_EXTRA="batch_wait_ms = $bw" cl_one "$k" "$TMP/clm$k-$bw.conf" \
                "moderate rate, $k primaries, batch_wait_ms = $bw"
            CL_MOD[$k,$bw]=$CL_NETSUM CL_MOD[$k,$bw,rate]=$(calc "round($CL_SENT / max($CL_WSECS, 0.001))")
        done
        res "cluster_moderate_${k}p_redis_cpu_net_us_per_msg" "${CL_MOD[$k,25]}"
        res "cluster_moderate_${k}p_redis_cpu_net_us_per_msg_wait0" "${CL_MOD[$k,0]}"
        row "cluster" "$k primaries at a moderate rate (sink replies held $CL_DELAY_MS ms; ${CL_MOD[$k,25,rate]} msgs/s): Redis CPU per message net of idle, batch_wait_ms = 25 / 0" \
            "${CL_MOD[$k,25]} / ${CL_MOD[$k,0]} us ($(calc "round(${CL_MOD[$k,0]} / max(${CL_MOD[$k,25]}, 0.1), 2)") x less with it)" "(comparison)" "-"
    done
    stop_sink
    flat=$(IFS=,; echo "${CL_NET[*]}") flatraw=$(IFS=,; echo "${CL_RAW[*]}")
    spread=$(calc "round(max($flat) / max(min($flat), 0.1), 2)")
    spreadraw=$(calc "round(max($flatraw) / max(min($flatraw), 0.1), 2)")
    res cluster_cpu_spread "$spread"
    res cluster_cpu_spread_raw "$spreadraw"
    row "cluster" "per-message Redis CPU time net of idle, max / min over 1, 2, 3 primaries (raw)" \
        "$spread ($spreadraw)" "<= 1.2" "$(verdict "$spread <= 1.2")"
    if [ "${#CL_INSTR[@]}" -eq 3 ]; then
        flat=$(IFS=,; echo "${CL_INSTR[*]}")
        ispread=$(calc "round(max($flat) / max(min($flat), 0.1), 3)")
        res cluster_instr_spread "$ispread"
        row "cluster" "per-message Redis instructions, max / min over 1, 2, 3 primaries" "$ispread" "<= 1.2" \
            "$(verdict "$ispread <= 1.2")"
    else
        row "cluster" "per-message Redis instructions (callgrind)" \
            "not measured (valgrind not installed, or BENCH_CLUSTER_INSTR_MSGS=0)" "<= 1.2" "-"
    fi
    mspread=$(calc "round(max(${CL_MOD[1,25]}, ${CL_MOD[3,25]}) / max(min(${CL_MOD[1,25]}, ${CL_MOD[3,25]}), 0.1), 2)")
    res cluster_moderate_cpu_spread "$mspread"
    row "cluster" "per-message Redis CPU time net of idle at the moderate rate, max / min over 1, 3 primaries (one run each)" \
        "$mspread" "(comparison)" "-"
    echo "cluster: the 2-core machine shows the per-message cost per shard, not the absolute scaling; at a given" \
        "rate each primary of more wakes up for less work, and a wake-up costs Redis a fixed part (docs/bench.md)"
fi

# ---------------------------------------------------------------- 9. replicas: the cost of replicas_ack
# rep_run ACK - the plaintext spine with [redis] replicas_ack = ACK; sets RP_RATE RP_PRIMARY_US RP_REPLICA_US
rep_run() {
    local conf=$TMP/rep$1.conf r0
    write_conf "$conf" "$SINK_PORT" off "$SPINE_CONNS" "$SPINE_MPC" "$SPINE_INFLIGHT" \
        $'[redis]\nreplicas_ack = '"$1"$'\nreplicas_ack_ms = 1000'
    rcli flushall >/dev/null
    push "$conf" "$CSV" >/dev/null
    r0=$(cpu_ticks "$REP_PID")
    W_MSGLOG=$TMP/rep.msglog run_worker "rep$1" "$conf" "$MSGS"
    RP_RATE=$W_STEADY RP_PRIMARY_US=$W_REDIS_US
    RP_REPLICA_US=$(calc "round(($(cpu_ticks "$REP_PID") - $r0) * 1e6 / $HZ / $MSGS, 1)")
    if grep -q 'replicas_ack:' "$TMP/rep$1.log"; then
        echo "bench: replicas_ack = $1: $(grep -c 'replicas_ack:' "$TMP/rep$1.log") batches not acknowledged by the replica" >&2
        FAILED=1
    fi
    echo "replicas_ack = $1: $RP_RATE msgs/s; redis-server CPU per delivered message: primary $RP_PRIMARY_US us," \
        "replica $RP_REPLICA_US us"
}

if has_section replicas; then
    say "replicas: $MSGS messages, plaintext spine with a replica attached, replicas_ack = 0 / 1 / 1 / 0"
    [ -s "$CSV" ] || make_csv "$CSV" "$MSGS"
    p=$(free_port)
    mkdir -p "$TMP/replica"
    redis-server --bind 127.0.0.1 --port "$p" --save "" --appendonly no --dir "$TMP/replica" \
        --logfile "$TMP/replica/redis.log" --protected-mode no --replicaof 127.0.0.1 "$REDIS_PORT" &
    REP_PID=$!
    PIDS+=("$REP_PID")
    wait_for sh -c "redis-cli -p $p info replication | grep -q master_link_status:up" ||
        { echo "bench: the replica did not attach" >&2; exit 1; }
    start_sink replicas --threads 2 --log-file "$TMP/rep.msglog"
    # each setting's mean of its 2 runs, summed in halves as the epoll section does
    declare -A RP_RATE_M=([0]=0 [1]=0) RP_PRIM_M=([0]=0 [1]=0) RP_REPL_M=([0]=0 [1]=0)
    for ack in 0 1 1 0; do
        rep_run "$ack"
        RP_RATE_M[$ack]=$(calc "${RP_RATE_M[$ack]} + $RP_RATE / 2")
        RP_PRIM_M[$ack]=$(calc "round(${RP_PRIM_M[$ack]} + $RP_PRIMARY_US / 2, 2)")
        RP_REPL_M[$ack]=$(calc "round(${RP_REPL_M[$ack]} + $RP_REPLICA_US / 2, 2)")
    done
    stop_sink
    kill "$REP_PID" 2>/dev/null || true
    wait "$REP_PID" 2>/dev/null || true
    rate0=$(calc "round(${RP_RATE_M[0]})") rate1=$(calc "round(${RP_RATE_M[1]})")
    r=$(calc "round($rate1 / max($rate0, 1), 2)")
    res replicas_ack0_msgs_per_sec "$rate0"
    res replicas_ack1_msgs_per_sec "$rate1"
    res replicas_ack_ratio "$r"
    res replicas_ack0_primary_us_per_msg "${RP_PRIM_M[0]}"
    res replicas_ack1_primary_us_per_msg "${RP_PRIM_M[1]}"
    res replicas_ack1_replica_us_per_msg "${RP_REPL_M[1]}"
    row "replicas" "replicas_ack = 1 / = 0, a replica attached (msgs/s, mean of 2 runs each)" \
        "$rate1 / $rate0 msgs/s" "ratio $r" "-"
    row "replicas" "Redis CPU per delivered message, replicas_ack = 0 / = 1: primary; replica" \
        "${RP_PRIM_M[0]} / ${RP_PRIM_M[1]} us; ${RP_REPL_M[0]} / ${RP_REPL_M[1]} us" "-" "-"
fi

# ---------------------------------------------------------------- report
echo
echo "## volley bench ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $( [ "$QUICK" = 1 ] && echo quick || echo full) mode)"
echo
echo "| section | measure | measured | target | verdict |"
echo "|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
printf '%s\n' "${RESULTS[@]}"
exit "$FAILED"

