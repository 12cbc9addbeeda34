#!/bin/bash
# fuzz.sh BUILD NAME... - run each libFuzzer binary BUILD/fuzz/fuzz_NAME for
# FUZZ_SECONDS (default 60) on its seed corpus tests/fuzz/corpus/NAME.
# New interesting inputs go to BUILD/fuzz-corpus/NAME (scratch, never the
# repository); a crash leaves its input in BUILD/fuzz-crashes/NAME/ and the
# libFuzzer log in BUILD/fuzz-logs/NAME.log. Prints one line per target and
# exits 1 when any target crashed (docs/testing.md: turning a crash into a
# corpus file).
set -u
build=$1
shift
secs=${FUZZ_SECONDS:-60}
crashed=""
for name in "$@"; do
    bin=$build/fuzz/fuzz_$name
    seeds=tests/fuzz/corpus/$name
    scratch=$build/fuzz-corpus/$name
    crashes=$build/fuzz-crashes/$name
    log=$build/fuzz-logs/$name.log
    mkdir -p "$scratch" "$crashes" "$(dirname "$log")"
    # -timeout: an input taking over 25 s is a hang; the rss limit catches unbounded growth;
    # stdin is /dev/null so an input naming /dev/stdin (campaign_ini's KEY_file) cannot wait on a terminal
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$bin" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$scratch" "$seeds" </dev/null >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        echo "fuzz_$name: ok, ${execs:-?} runs in ${secs}s, ${cov:-cov: ?}"
    else
        crashed="$crashed $name"
        echo "fuzz_$name: CRASH (exit $rc) after ${execs:-?} runs; input: $(ls -t "$crashes" | head -1); log: $log"
        grep -E 'ERROR: |invariant broken|SUMMARY' "$log" | head -3 | sed 's/^/    /'
    fi
done
if [ -n "$crashed" ]; then
    echo "fuzz: crashes in:$crashed"
    exit 1
fi
echo "fuzz: no crash in $# targets"
