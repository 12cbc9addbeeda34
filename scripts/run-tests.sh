#!/bin/bash
# run-tests.sh [unit|integration] - run the cmocka unit binaries, then the
# pytest integration suite (real redis-server, aiosmtpd, volley-sink, postfix,
# dnsmasq on loopback), and print one closing line "N passed, N failed".
# The unit part includes the fuzz corpus replays (build/tests/fuzz/test_fuzz_*).
# PYTEST_PATHS (default "tests") narrows the pytest part, e.g. to
# "tests/integration/test_engine_*.py tests/integration/test_fleet_*.py".
set -u
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
what=${1:-all}
PYTEST_PATHS=${PYTEST_PATHS:-tests}
passed=0
failed=0
failures=""

if [ "$what" = all ] || [ "$what" = unit ]; then
    for t in $(find "$BUILD/tests" -type f -name 'test_*' -perm -u+x 2>/dev/null | sort); do
        echo "== $t"
        out=$("$t" 2>&1)
        rc=$?
        echo "$out" | tail -n 40
        p=$(echo "$out" | sed -n 's/.*\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
        f=$(echo "$out" | sed -n 's/.*\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
        passed=$((passed + ${p:-0}))
        if [ $rc -ne 0 ]; then
            failed=$((failed + ${f:-1}))
            failures="$failures $t"
        fi
    done
fi

if [ "$what" = all ] || [ "$what" = integration ]; then
    if [ -d tests/integration ] && ls tests/*/test_*.py >/dev/null 2>&1; then
        echo "== pytest"
        log=$(mktemp)
        # shellcheck disable=SC2086 # PYTEST_PATHS holds several paths or globs
        VOLLEY_BUILD=$BUILD "$PYTHON" -m pytest -q -p no:cacheprovider $PYTEST_PATHS 2>&1 | tee "$log"
        # only pytest's closing line counts ("1 failed, 471 passed, 39 skipped in 447.99s"): a test's own output
        # may say "bounced=31 failed=0"
        closing=$(grep -E '[0-9]+ (passed|failed|errors?|skipped)(, [0-9]+ [a-z]+)* in [0-9.]+s' "$log" | tail -1)
        p=$(echo "$closing" | grep -Eo '[0-9]+ passed' | grep -Eo '[0-9]+')
        f=$(echo "$closing" | grep -Eo '[0-9]+ (failed|errors?)' | awk '{s+=$1} END {print s+0}')
        passed=$((passed + ${p:-0}))
        failed=$((failed + ${f:-0}))
        [ -n "$closing" ] || { failed=$((failed + 1)); failures="$failures pytest"; }
        rm -f "$log"
    fi
fi

[ -n "$failures" ] && echo "failing:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
