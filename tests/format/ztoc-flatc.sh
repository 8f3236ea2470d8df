#!/bin/bash
# soci-nbd tests: differential check of our ztoc reader against an
# independent one, flatc (FlatBuffers' own compiler) with tests/helpers/ztoc.fbs and
# tests/helpers/zinfo.fbs.  For every reference ztoc both print JSON; after
# normalisation by python3 the two must be equal.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/helpers/lib.sh"

DUMP="$top_builddir/tests/helpers/ztoc-dump"
if ! command -v flatc >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1
then
    echo "Bail out! flatc or python3 missing: run scripts/install-deps.sh"
    exit 1
fi

flatc_json() { # SCHEMA BINARY: writes $TMP/<basename of BINARY>.json
    flatc --json --raw-binary --strict-json --defaults-json -o "$TMP" \
        "$top_srcdir/tests/helpers/$1" -- "$2"
}

# same_json A B: equal as JSON values; otherwise print the first difference.
same_json() {
    python3 - "$1" "$2" <<'EOF'
import json, sys

def diff(a, b, path):
    if type(a) != type(b):
        return "%s: %r vs %r" % (path, a, b)
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return "%s.%s: only on one side" % (path, k)
            d = diff(a[k], b[k], path + "." + k)
            if d:
                return d
    elif isinstance(a, list):
        if len(a) != len(b):
            return "%s: %d vs %d elements" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff(x, y, "%s[%d]" % (path, i))
            if d:
                return d
    elif a != b:
        return "%s: %r vs %r" % (path, a, b)
    return None

with open(sys.argv[1]) as f:
    a = json.load(f)
with open(sys.argv[2]) as f:
    b = json.load(f)
d = diff(a, b, "$")
if d:
    print("flatc vs ours differ at " + d)
    sys.exit(1)
EOF
}

for v in A.ztoc A4096.ztoc A_la.ztoc Atar.ztoc B.ztoc testwrite.ztoc; do
    base=${v%.ztoc}
    check "$v: flatc decodes it" flatc_json ztoc.fbs "$DATA/$v"
    check "$v: ztoc-dump decodes it" \
        bash -c "'$DUMP' '$DATA/$v' > '$TMP/$base.ours.json'"
    check "$v: same JSON from flatc and sn_ztoc_decode" \
        same_json "$TMP/$base.json" "$TMP/$base.ours.json"
done

# Atar.ztoc's checkpoints are a nested TarZinfo FlatBuffer: take the bytes
# from flatc's output and decode them with both readers.
check "Atar.ztoc: extract checkpoints from flatc's JSON" \
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
open(sys.argv[2], "wb").write(bytes(d["compression_info"]["checkpoints"]))
' "$TMP/Atar.json" "$TMP/Atar-tarzinfo.bin"
check "  they are tests/data/tarzinfo.bin" \
    cmp "$TMP/Atar-tarzinfo.bin" "$DATA/tarzinfo.bin"
check "  flatc decodes them with zinfo.fbs" \
    flatc_json zinfo.fbs "$TMP/Atar-tarzinfo.bin"
check "  ztoc-dump -t decodes them" \
    bash -c "'$DUMP' -t '$TMP/Atar-tarzinfo.bin' > '$TMP/tz.ours.json'"
check "  same TarZinfo from flatc and sn_tarzinfo_decode" \
    same_json "$TMP/Atar-tarzinfo.json" "$TMP/tz.ours.json"
check "  it is {version 2, span_size 4096, size 10240}" \
    python3 -c '
import json, sys
assert json.load(open(sys.argv[1])) == {"version": 2, "span_size": 4096, "size": 10240}
' "$TMP/Atar-tarzinfo.json"
finish
