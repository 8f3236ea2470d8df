#!/bin/bash
# soci-nbd tests: a file past 4 GiB through the dense index
# (docs/dense-index.md).  A layer holding a 4 GiB + 1 MiB file (zeros, with
# random 64 KiB marks at 0, 2 GiB, just before and just after 4 GiB, and at
# its end) and a small file after it is converted; the plugin serves the
# marks' bytes right through the dense index and through the SOCI index
# (dense=false), and no sub-span inflates past the reader's limit.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
NBDREAD=$top_builddir/tests/helpers/nbd-read
IMGPY="python3 $top_srcdir/tests/helpers/plugin-image.py"

nbdkit_asan_wrapper "$PLUGIN"
require_tools nbdkit pigz
for f in "$PLUGIN" "$NBDREAD"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "Bail out! $f not built"; exit 1; }
done
avail=$(df -P --block-size=1M "$TMP" | awk 'NR==2 {print $4}')
[ "${avail:-0}" -gt 200 ] || { echo "Bail out! $TMP has ${avail} MiB free, 200 needed"; exit 1; }

# The layer, streamed into pigz: the marks are deterministic random bytes.
SIZE=$(( (4 << 30) + (1 << 20) ))
MARKS="0 $((2 << 30)) $(( (4 << 30) - 65536 )) $(( (4 << 30) + 4096 )) $((SIZE - 65536))"
python3 - "$SIZE" $MARKS <<'PY' | pigz -1 -n -c > "$TMP/big.tar.gz" || { echo "Bail out! layer"; exit 1; }
import random, sys, tarfile
size, marks = int(sys.argv[1]), [int(m) for m in sys.argv[2:]]
out = sys.stdout.buffer
def mark(i):
    return random.Random(i).randbytes(65536)
ti = tarfile.TarInfo("big"); ti.size = size; ti.mtime = 1700000000
out.write(ti.tobuf(tarfile.GNU_FORMAT))
zero = bytes(1 << 20)
pos = 0
for i, m in enumerate(sorted(marks) + [size]):
    while pos < m:
        n = min(len(zero), m - pos); out.write(zero[:n]); pos += n
    if m < size:
        out.write(mark(i)); pos += 65536
out.write(bytes((512 - size % 512) % 512))
ti = tarfile.TarInfo("after"); ti.size = 5; ti.mtime = 1700000000
out.write(ti.tobuf(tarfile.GNU_FORMAT)); out.write(b"after" + bytes(507))
out.write(bytes(1024))
PY
$IMGPY layout "$TMP/lay" img "$TMP/big.tar.gz" > /dev/null || { echo "Bail out! layout"; exit 1; }

check "convert (dense index) of a layer with a 4 GiB + 1 MiB file" \
    "$SN" convert -q --min-layer-size 0 "oci-layout:$TMP/lay:img" "oci-layout:$TMP/lay:soci"
DENSE=$("$SN" index list "oci-layout:$TMP/lay:soci" | awk '$2 == "dense" {print $1}')
check "it has a dense index" test -n "$DENSE"
TABLE=$(python3 -c "import json; print(json.load(open('$TMP/lay/blobs/sha256/${DENSE#sha256:}'))['layers'][0]['digest'][7:])")
check "its table: the file's offset and size past 4 GiB, sub-spans of at most 4 MiB of output" bash -c "
    '$SN' ztoc info '$TMP/lay/blobs/sha256/$TABLE' > '$TMP/t.json' && python3 -c '
import json; z = json.load(open(\"$TMP/t.json\"))
f = [f for f in z[\"files\"] if f[\"name\"] == \"big\"][0]
assert f[\"size\"] == $SIZE, f
assert max(s[\"uncompressed_end\"] - s[\"uncompressed_start\"] for s in z[\"spans\"]) <= 4 << 20
print(f[\"offset\"])' > '$TMP/off'"
OFF=$(cat "$TMP/off")

# layer/0's squashfs holds the tar verbatim from 1 MiB (docs/squashfs-layout.md §1).
read_marks() {   # KEY=VALUE...: every mark's bytes right, and the file after
    local i=0 m
    nbdkit -U - -r "$PLUGIN" "oci-layout:$TMP/lay:soci" "$@" --run '
        i=0
        for m in '"$MARKS"'; do
            "'"$NBDREAD"'" "nbd+unix:///layer/0?socket=$unixsocket" \
                $(( (1 << 20) + '"$OFF"' + m )) 65536 > "'"$TMP"'/got.$i" || exit 1
            i=$((i + 1))
        done' || return 1
    for m in $MARKS; do
        python3 -c "
import random, sys
sys.exit(0 if open('$TMP/got.$i', 'rb').read() == random.Random($i).randbytes(65536) else 1)" ||
            { echo "# mark $i (at $m) differs" >&2; return 1; }
        i=$((i + 1))
    done
}
check "the marks past 4 GiB, through the dense index" read_marks stats-file="$TMP/st.json"
check "it was the dense index" python3 -c "
import json; s = json.load(open('$TMP/st.json')); assert s['dense_index'] == '$DENSE', s['dense_index']"
check "the same bytes through the SOCI index (dense=false)" read_marks dense=false

finish
