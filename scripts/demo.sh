#!/bin/bash
# demo.sh - send the sample campaign end to end, on loopback only.
#
# Starts a throwaway redis-server and volley-sink on free 127.0.0.1 ports in a
# temporary directory, writes a volley.conf that routes every domain to the
# sink, pushes config/sample-campaign.ini to config/sample-recipients.csv,
# runs `volley worker --exit-when-idle`, then prints the campaign counters,
# the throughput of the worker run and what the sink received. Everything it
# started is stopped and the directory removed on exit (trap).
#
# Env: BUILD (default build), PYTHON (default /usr/bin/python3),
#      KEEP=1 keeps the temporary directory (maildir, logs) for a look.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
VOLLEY=$BUILD/volley
SINK=$BUILD/volley-sink

for b in "$VOLLEY" "$SINK"; do
    [ -x "$b" ] || { echo "demo: $b not built (run make)" >&2; exit 1; }
done
command -v redis-server >/dev/null || { echo "demo: redis-server not installed (run make deps)" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/volley-demo.XXXXXX")
REDIS_PID=""
SINK_PID=""
cleanup() {
    # stop only what this script started, by pid
    [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null
    [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
    if [ "${KEEP:-0}" = 1 ]; then
        echo "demo: kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for CMD... - retry a check for up to 10 s
wait_for() {
    for _ in $(seq 100); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$TMP" \
    --logfile "$TMP/redis.log" --daemonize no --protected-mode no &
REDIS_PID=$!
wait_for redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping || { echo "demo: redis-server did not start" >&2; exit 1; }

SINK_PORT=$(free_port)
"$SINK" --listen "127.0.0.1:$SINK_PORT" --maildir "$TMP/maildir" --stats-file "$TMP/sink-stats.json" \
    >"$TMP/sink.out" 2>"$TMP/sink.err" &
SINK_PID=$!
wait_for grep -q '^listening' "$TMP/sink.out" || {
    echo "demo: volley-sink did not start: $(tail -n 3 "$TMP/sink.err")" >&2
    exit 1
}

cat >"$TMP/volley.conf" <<EOF
[redis]
url = redis://127.0.0.1:$REDIS_PORT
prefix = volley

[worker]
threads = 2
hostname = volley.test
name = demo

[smtp]
connections = 4
messages_per_connection = 100
timeout_ms = 10000

[route]
* = 127.0.0.1:$SINK_PORT

[tls]
mode = off

[log]
level = warn
EOF

echo "== redis 127.0.0.1:$REDIS_PORT, volley-sink 127.0.0.1:$SINK_PORT, work dir $TMP"
RECIPIENTS=config/sample-recipients.csv
NRCPT=$(($(wc -l <"$RECIPIENTS") - 1))
CID=$("$VOLLEY" push -c "$TMP/volley.conf" --campaign config/sample-campaign.ini --recipients "$RECIPIENTS")
echo "== pushed campaign '$CID' to $NRCPT recipients"

T0=$(date +%s.%N)
set +e
timeout 120 "$VOLLEY" worker -c "$TMP/volley.conf" --exit-when-idle 2>"$TMP/worker.log"
RC=$?
set -e
T1=$(date +%s.%N)
if [ $RC -ne 0 ]; then
    echo "demo: volley worker exited with status $RC; last log lines:" >&2
    tail -n 20 "$TMP/worker.log" >&2
    exit 1
fi

echo "== volley status $CID"
"$VOLLEY" status -c "$TMP/volley.conf" "$CID"

RECEIVED=$(find "$TMP/maildir/new" -type f 2>/dev/null | wc -l)
echo "== report"
awk -v n="$RECEIVED" -v t0="$T0" -v t1="$T1" 'BEGIN {
    s = t1 - t0; if (s <= 0) s = 0.000001
    printf "worker run: %.3f s, %.0f msgs/s\n", s, n / s
}'
echo "sink received: $RECEIVED of $NRCPT messages"

FIRST=$(find "$TMP/maildir/new" -type f 2>/dev/null | sort | head -n 1)
if [ -n "$FIRST" ]; then
    echo "== one received message (headers)"
    "$PYTHON" - "$FIRST" <<'EOF'
import email, email.policy, sys
m = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=email.policy.default)
for h in ("From", "To", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post", "Message-ID"):
    if m[h] is not None:
        print(f"{h}: {m[h]}")
print("parts:", ", ".join(p.get_content_type() for p in m.walk() if not p.is_multipart()))
EOF
fi

[ "$RECEIVED" -eq "$NRCPT" ] || { echo "demo: expected $NRCPT messages at the sink" >&2; exit 1; }
