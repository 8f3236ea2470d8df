# soci-nbd tests: helpers for TAP shell tests.  Source it; then call
# plan N (optional), ok/not_ok via check, and finish.
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
: "${SOCI_NBD:=$top_builddir/soci-nbd}"
DATA="$top_srcdir/tests/data"
TAP_N=0
TAP_FAILED=0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/soci-nbd-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# check DESCRIPTION COMMAND...: run the command, ok if it exits 0.
check() {
    desc=$1; shift
    TAP_N=$((TAP_N + 1))
    if "$@" >"$TMP/.out" 2>&1; then
        echo "ok $TAP_N - $desc"
    else
        echo "not ok $TAP_N - $desc"
        sed 's/^/# /' "$TMP/.out" | head -20
        TAP_FAILED=$((TAP_FAILED + 1))
    fi
}

# check_fails DESCRIPTION PATTERN COMMAND...: ok if the command fails with
# a non-zero status (not a signal) and its stderr matches PATTERN on a
# single line.
check_fails() {
    desc=$1; pat=$2; shift 2
    TAP_N=$((TAP_N + 1))
    "$@" >"$TMP/.out" 2>"$TMP/.err"
    st=$?
    if [ $st -ne 0 ] && [ $st -lt 128 ] && grep -q -- "$pat" "$TMP/.err" &&
       [ "$(wc -l <"$TMP/.err")" -le 2 ]; then
        echo "ok $TAP_N - $desc"
    else
        echo "not ok $TAP_N - $desc (status $st)"
        sed 's/^/# /' "$TMP/.err" | head -10
        TAP_FAILED=$((TAP_FAILED + 1))
    fi
}

finish() {
    echo "1..$TAP_N"
    [ $TAP_FAILED -eq 0 ]
}

# stats_ok FILE EXPR: the stats file (the plugin's stats-file=) makes the
# Python expression EXPR (on s, the parsed JSON) true; else it is shown as
# TAP comments.
stats_ok() {
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2" ||
        { sed 's/^/# /' "$1" | grep -v '"layers"\|{"index"' >&2; return 1; }
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# nbdkit_asan_wrapper PLUGIN.so: a plugin built with AddressSanitizer (the
# CI's second pass) can only be loaded by a process whose first library is
# the ASan runtime.  If PLUGIN links it, put a wrapper named nbdkit first on
# PATH that preloads it.  Leak checking is off in that process tree
# (nbdkit's --run children, python among them, are not leak-clean); the
# library's own leaks are caught by the C unit tests.
nbdkit_asan_wrapper() {
    ldd "$1" 2>/dev/null | grep -q libasan || return 0
    mkdir -p "$TMP/asan-bin"
    cat > "$TMP/asan-bin/nbdkit" <<EOF2
#!/bin/sh
LD_PRELOAD="$(ldd "$1" | awk '/libasan/ {print $3}')" \\
ASAN_OPTIONS="\${ASAN_OPTIONS:-}:detect_leaks=0" exec $(command -v nbdkit) "\$@"
EOF2
    chmod +x "$TMP/asan-bin/nbdkit"
    PATH=$TMP/asan-bin:$PATH
}

# guest_wait T0: wait for the tests/kernel/qemu/run.sh started in the background
# as $RPID (stderr in $TMP/run.err); sets st to its exit status, clears
# RPID, prints the time since T0 (date +%s) and run.sh's messages.
guest_wait() {
    st=0
    wait "$RPID" || st=$?
    RPID=
    echo "# boot took $(( $(date +%s) - $1 )) s"
    sed 's/^/# /' "$TMP/run.err"
}

# guest_results FILE: the QEMU guest's "ok DESC" / "not ok DESC" lines
# (tests/kernel/qemu/run.sh's output) as TAP results "guest: DESC"; other lines
# pass through.  Sets GUEST_N to the number of results.
guest_results() {
    local l
    GUEST_N=0
    while IFS= read -r l; do
        case $l in
        "ok "*)
            TAP_N=$((TAP_N + 1)) GUEST_N=$((GUEST_N + 1))
            echo "ok $TAP_N - guest: ${l#ok }" ;;
        "not ok "*)
            TAP_N=$((TAP_N + 1)) GUEST_N=$((GUEST_N + 1))
            TAP_FAILED=$((TAP_FAILED + 1))
            echo "not ok $TAP_N - guest: ${l#not ok }" ;;
        *) echo "$l" ;;
        esac
    done < "$1"
}

# guest_nbdkit_asan PLUGIN.so: when the plugin is an ASan build, a wrapper
# for the guest that preloads the ASan runtime into nbdkit (as
# nbdkit_asan_wrapper does on the host): appends it to BINS (run.sh -f) and
# sets NBDKIT_OPT="--nbdkit /usr/local/bin/nbdkit-asan" for soci-nbd mount.
guest_nbdkit_asan() {
    local asan
    NBDKIT_OPT=
    ldd "$1" 2>/dev/null | grep -q libasan || return 0
    asan=$(ldd "$1" | awk '/libasan/ {print $3}')
    printf '#!/bin/sh\nLD_PRELOAD=%s ASAN_OPTIONS=detect_leaks=0 exec /usr/bin/nbdkit "$@"\n' \
        "$asan" > "$TMP/nbdkit-asan"
    chmod +x "$TMP/nbdkit-asan"
    BINS+=(-f "$TMP/nbdkit-asan=/usr/local/bin/nbdkit-asan")
    NBDKIT_OPT="--nbdkit /usr/local/bin/nbdkit-asan"
}

# require_tools TOOL...: bail out (a failure, not a skip) if one is missing;
# scripts/install-deps.sh installs them all.
require_tools() {
    for tool in "$@"; do
        command -v "$tool" > /dev/null ||
            { echo "Bail out! $tool is not installed (run scripts/install-deps.sh)"; exit 1; }
    done
}
