#!/bin/bash
# NAME
#   sink-vs-smtp-sink.sh - accept rate of volley-sink against Postfix's smtp-sink
# SYNOPSIS
#   bench/sink-vs-smtp-sink.sh            (from the repo root, after make build/volley-sink)
#   MSGS=100000 SESSIONS=50 LEN=2048 PROCS="1 4" ROUNDS=3 THREADS=0 bench/sink-vs-smtp-sink.sh
# DESCRIPTION
#   Drives both sinks with the same Postfix smtp-source load, in the same run,
#   alternating sinks round by round so drift on the machine hits both alike:
#     smtp-source -d -s SESSIONS/P -m MSGS/P -l LEN -f a@x.test -t b@y.test 127.0.0.1:PORT
#   once with P=1 (one smtp-source, the classic command) and once with P
#   smtp-source processes in parallel (same total sessions and messages), since
#   one smtp-source process can itself be the bottleneck. The rate is messages
#   over wall time from the first smtp-source start to the last one's exit; the
#   median of ROUNDS rounds is reported. Every smtp-source must exit 0 and
#   volley-sink's own count must equal MSGS, else the script fails.
#
#   smtp-sink runs as `smtp-sink -m 1000 127.0.0.1:PORT 1000` (-m: up to 1000
#   concurrent sessions instead of 256, backlog 1000; no -c counter, no dumps,
#   no delays: it accepts everything as fast as it can; -u nobody when root).
#   volley-sink runs with no rules and THREADS threads (0 = one per core).
#   Both listen on 127.0.0.1 only.
#
#   The last lines are machine-readable:
#     smtp_sink_msgs_per_sec_pN=  volley_sink_msgs_per_sec_pN=  ratio_pN=   (each P)
#     smtp_sink_msgs_per_sec=     volley_sink_msgs_per_sec=     ratio=      (the largest P)
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${VOLLEY_BUILD:-build}
SINK_BIN=$BUILD/volley-sink
MSGS=${MSGS:-100000}
SESSIONS=${SESSIONS:-50}
LEN=${LEN:-2048}
PROCS=${PROCS:-"1 4"}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-0}
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
PY=/usr/bin/python3

for f in "$SINK_BIN" "$SMTP_SOURCE" "$SMTP_SINK"; do
    [ -x "$f" ] || { echo "sink-vs-smtp-sink: $f missing (make build/volley-sink; apt-get install postfix)" >&2; exit 2; }
done

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# free_port - a currently free loopback port (smtp-sink cannot be told to pick one)
free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT - until something accepts on 127.0.0.1:PORT
wait_port() {
    for _ in $(seq 100); do
        "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1).close()" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "sink-vs-smtp-sink: nothing listens on port $1" >&2
    exit 1
}

# start smtp-sink
sp=$(free_port)
user=()
[ "$(id -u)" -eq 0 ] && user=(-u nobody)
"$SMTP_SINK" "${user[@]}" -m 1000 "127.0.0.1:$sp" 1000 >"$work/smtp-sink.out" 2>&1 &
spid=$!
pids+=($spid)
wait_port "$sp"

# start volley-sink on a port it picks itself; it prints "listening 127.0.0.1:PORT"
targs=()
[ "$THREADS" -gt 0 ] && targs=(--threads "$THREADS")
"$SINK_BIN" --listen 127.0.0.1:0 "${targs[@]}" --stats-file "$work/stats.json" >"$work/volley-sink.out" 2>&1 &
vpid=$!
pids+=($vpid)
for _ in $(seq 100); do
    grep -q '^listening ' "$work/volley-sink.out" 2>/dev/null && break
    sleep 0.05
done
vp=$(sed -n 's/^listening 127.0.0.1:\([0-9]*\)$/\1/p' "$work/volley-sink.out" | head -1)
[ -n "$vp" ] || { echo "sink-vs-smtp-sink: volley-sink did not start" >&2; cat "$work/volley-sink.out" >&2; exit 1; }

# vs_messages - volley-sink's accepted-message count from its stats file
vs_messages() {
    "$PY" -c "import json; print(json.load(open('$work/stats.json'))['messages'])"
}

# cpu_ticks PID - user+system CPU ticks the process has used so far (all its threads)
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# drive PORT P - run P smtp-source processes against PORT; prints msgs/s
drive() {
    local port=$1 p=$2 i t0 t1 rc=0 spids=()
    local m=$((MSGS / p)) s=$((SESSIONS / p))
    [ "$s" -ge 1 ] || s=1
    t0=$(date +%s%N)
    for i in $(seq "$p"); do
        "$SMTP_SOURCE" -d -s "$s" -m "$m" -l "$LEN" -f a@x.test -t b@y.test "127.0.0.1:$port" \
            >"$work/src.$i.out" 2>&1 &
        spids+=($!)
    done
    for i in "${spids[@]}"; do wait "$i" || rc=$?; done
    t1=$(date +%s%N)
    if [ "$rc" -ne 0 ]; then
        echo "sink-vs-smtp-sink: smtp-source failed against port $port:" >&2
        cat "$work"/src.*.out >&2
        exit 1
    fi
    "$PY" -c "print(round($m * $p / (($t1 - $t0) / 1e9)))"
}

# median - of the numbers given
median() {
    printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

echo "# smtp-source -d, $MSGS messages of $LEN bytes, $SESSIONS sessions in total, $ROUNDS rounds;" \
    "$(nproc) cores; volley-sink threads: ${THREADS/#0/one per core}"
printf '%-10s %-6s %12s %12s %7s\n' procs round smtp-sink volley-sink ratio
last_p=""
stk=0 vtk=0 nmsg=0
for p in $PROCS; do
    ss=() vs=()
    for r in $(seq "$ROUNDS"); do
        before=$(vs_messages)
        c0=$(cpu_ticks "$spid")
        a=$(drive "$sp" "$p")
        c1=$(cpu_ticks "$spid")
        c2=$(cpu_ticks "$vpid")
        b=$(drive "$vp" "$p")
        c3=$(cpu_ticks "$vpid")
        stk=$((stk + c1 - c0))
        vtk=$((vtk + c3 - c2))
        nmsg=$((nmsg + MSGS / p * p))
        sleep 0.3 # the stats file is rewritten every 200 ms
        got=$(($(vs_messages) - before))
        want=$((MSGS / p * p))
        if [ "$got" -ne "$want" ]; then
            echo "sink-vs-smtp-sink: volley-sink counted $got messages, expected $want" >&2
            exit 1
        fi
        ss+=("$a")
        vs+=("$b")
        printf '%-10s %-6s %12s %12s %7s\n' "$p" "$r" "$a" "$b" "$("$PY" -c "print('%.2f' % ($b / $a))")"
    done
    sm=$(median "${ss[@]}")
    vm=$(median "${vs[@]}")
    eval "res_s_$p=$sm res_v_$p=$vm"
    last_p=$p
done

# CPU the sink process itself burnt per accepted message, over all rounds: the
# efficiency view, independent of whether smtp-source or the sink was the bottleneck
hz=$(getconf CLK_TCK)
echo "# CPU per message: smtp-sink $((stk * 1000000 / hz / nmsg)) us, volley-sink $((vtk * 1000000 / hz / nmsg)) us" \
    "(volley-sink over $(nproc) cores with its threads)"
echo "smtp_sink_cpu_us_per_msg=$((stk * 1000000 / hz / nmsg))"
echo "volley_sink_cpu_us_per_msg=$((vtk * 1000000 / hz / nmsg))"
for p in $PROCS; do
    eval "sm=\$res_s_$p vm=\$res_v_$p"
    echo "smtp_sink_msgs_per_sec_p$p=$sm"
    echo "volley_sink_msgs_per_sec_p$p=$vm"
    echo "ratio_p$p=$("$PY" -c "print('%.2f' % ($vm / $sm))")"
done
eval "sm=\$res_s_$last_p vm=\$res_v_$last_p"
echo "smtp_sink_msgs_per_sec=$sm"
echo "volley_sink_msgs_per_sec=$vm"
echo "ratio=$("$PY" -c "print('%.2f' % ($vm / $sm))")"
