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
        p=$(grep -Eo '[0-9]+ passed' "$log" | tail -1 | grep -Eo '[0-9]+')
        f=$(grep -Eo '[0-9]+ (failed|error)' "$log" | awk '{s+=$1} END {print s+0}')
        passed=$((passed + ${p:-0}))
        failed=$((failed + ${f:-0}))
        grep -qE '[0-9]+ (passed|failed)' "$log" || { failed=$((failed + 1)); failures="$failures pytest"; }
        rm -f "$log"
    fi
fi

[ -n "$failures" ] && echo "failing:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
