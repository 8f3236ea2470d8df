#!/bin/bash
# Run the whole soci-nbd test suite on a fresh Debian 12 machine, as CI does:
#   1. install the build/test dependencies (scripts/install-deps.sh)
#   2. build with -Werror and run `make check`
#   3. build again with AddressSanitizer + UBSan and run `make check`
#   4. build the libFuzzer targets with clang and run each for a bounded time
# Prints "N passed, N failed" at the end; exits non-zero on any failure.
# FUZZ_SECONDS (default 45: 16 targets, about 12 min of fuzzing) bounds each
# fuzzer; SKIP_ASAN=1 / SKIP_FUZZ=1 for quick local runs (CI sets neither).
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

./scripts/install-deps.sh || { echo "install-deps failed" >&2; exit 1; }
[ -x configure ] && [ configure -nt configure.ac ] && [ -e build-aux/tap-driver.sh ] ||
    ./autogen.sh > /dev/null || exit 1

passed=0 failed=0 status=0
failures=$top/_build/failures   # every failure, named again at the end
mkdir -p "$top/_build"; : > "$failures"

count() { # BUILDDIR: add up the TAP results of one make check
    local p f
    p=$(find "$1/tests" -name '*.trs' -exec cat {} + 2>/dev/null | grep -c '^:test-result: PASS')
    f=$(find "$1/tests" -name '*.trs' -exec cat {} + 2>/dev/null | grep -Ec '^:test-result: (FAIL|ERROR|XPASS)')
    passed=$((passed + p)); failed=$((failed + f))
    # Named again at the very end, where a log cut to its tail still shows them.
    # With the diagnostics that follow each (up to 3 lines).
    find "$1/tests" -name '*.log' ! -name test-suite.log \
        -exec grep -hE -A3 '^(FAIL|ERROR|XPASS):' {} + 2>/dev/null |
        grep -E '^(FAIL|ERROR|XPASS):|^#' | cut -c1-300 |
        sed "s|^|$(basename "$1"): |" >> "$failures"
}

run_pass() { # NAME CONFIGURE-ARGS...
    local name=$1; shift
    local dir=$top/_build/$name
    echo "=== $name: configure $*"
    rm -rf "$dir"; mkdir -p "$dir"
    if ! (cd "$dir" && "$top/configure" --enable-werror "$@" > configure.out 2>&1); then
        tail -20 "$dir/configure.out"; failed=$((failed + 1)); status=1
        echo "$name: configure failed" >> "$failures"; return
    fi
    if ! make -C "$dir" -j"$jobs" > "$dir/build.out" 2>&1; then
        tail -40 "$dir/build.out"; failed=$((failed + 1)); status=1
        echo "$name: build failed" >> "$failures"; return
    fi
    echo "=== $name: make check"
    if ! make -C "$dir" -j"$jobs" check; then
        status=1
        find "$dir/tests" -name '*.log' ! -name test-suite.log | while read -r log; do
            grep -qE '^(FAIL|ERROR)' "$log" && { echo "--- $log"; cat "$log"; }
        done
    fi
    count "$dir"
}

run_pass gcc
[ "${SKIP_ASAN:-0}" = 1 ] || ASAN_OPTIONS=detect_leaks=1 run_pass asan --enable-sanitizers

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
    dir=$top/_build/fuzz
    secs=${FUZZ_SECONDS:-45}
    targets="ztoc zinfo inflate tar manifest auth ref nbd-handshake sqfs http-headers token window-use dense record stargz toml deps"
    echo "=== fuzz: clang libFuzzer targets, ${secs}s each"
    rm -rf "$dir"; mkdir -p "$dir"
    if (cd "$dir" && "$top/configure" CC=clang --enable-fuzzers > configure.out 2>&1) &&
       make -C "$dir" -j"$jobs" $(printf 'fuzz/fuzz-%s ' $targets) > "$dir/build.out" 2>&1; then
        for t in $targets; do
            mkdir -p "$dir/corpus-$t"
            case $t in                  # binary formats / documents and strings
                ztoc|zinfo|tar|sqfs|dense|stargz) maxlen=300000 ;;
                deps) maxlen=65536 ;;
                inflate|window-use) maxlen=65536 ;;
                *) maxlen=16384 ;;
            esac
            if "$dir/fuzz/fuzz-$t" -max_total_time="$secs" -max_len=$maxlen \
                   -rss_limit_mb=2048 "$dir/corpus-$t" "$top/fuzz/corpus/$t" \
                   > "$dir/fuzz-$t.out" 2>&1; then
                echo "PASS: fuzz-$t ($(grep -o 'Done [0-9]* runs' "$dir/fuzz-$t.out"))"
                passed=$((passed + 1))
            else
                echo "FAIL: fuzz-$t"; tail -40 "$dir/fuzz-$t.out"
                echo "fuzz: FAIL: fuzz-$t" >> "$failures"
                failed=$((failed + 1)); status=1
            fi
        done
    else
        tail -30 "$dir/configure.out" "$dir/build.out"; failed=$((failed + 1)); status=1
    fi
fi

echo
if [ -s "$failures" ]; then
    echo "=== what failed"
    head -50 "$failures"
fi
echo "$passed passed, $failed failed"
[ $status -eq 0 ] && [ $failed -eq 0 ]
