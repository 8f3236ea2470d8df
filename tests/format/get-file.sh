#!/bin/bash
# soci-nbd tests: `ztoc get-file` returns exactly what `tar -xO` returns for
# every regular file of generated layers (PAX, GNU and ustar formats, long
# names, hard links, multi-member gzip, full-flush streams, uncompressed),
# reading and verifying only the spans the file needs.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/helpers/lib.sh"

SN=$SOCI_NBD
SRC=$TMP/src
mkdir -p "$SRC/deep"
# Content: compressible text, incompressible noise, empty files, a file
# spanning many spans, names of 100+ bytes, a hard link, a symlink.
python3 - "$SRC" <<'PY'
import os, random, sys
root = sys.argv[1]; r = random.Random(42)
def text(n): return "".join(r.choice("abcdefgh \n") for _ in range(n)).encode()
open(os.path.join(root, "small.txt"), "wb").write(b"hello, soci\n")
open(os.path.join(root, "empty"), "wb").close()
open(os.path.join(root, "noise.bin"), "wb").write(r.randbytes(300000))
open(os.path.join(root, "big.txt"), "wb").write(text(2000000))
long = "d" * 60 + "/" + "e" * 70
os.makedirs(os.path.join(root, long))
open(os.path.join(root, long, "f" * 120 + ".txt"), "wb").write(text(70000))
for i in range(40):
    open(os.path.join(root, "deep", "f%02d" % i), "wb").write(text(r.randint(0, 9000)))
os.link(os.path.join(root, "small.txt"), os.path.join(root, "zlink"))
os.symlink("small.txt", os.path.join(root, "symlink"))
PY

mk() { tar -C "$SRC" --sort=name --owner=0 --group=0 --mtime=@1700000000 "$@" -cf - .; }
mk --format=pax   > "$TMP/pax.tar"
mk --format=gnu   > "$TMP/gnu.tar"
gzip -9n < "$TMP/pax.tar" > "$TMP/pax.tar.gz"
gzip -1n < "$TMP/gnu.tar" > "$TMP/gnu.tar.gz"
# Multi-member: the tar cut into pieces, each gzipped, concatenated.
split -b 400000 "$TMP/pax.tar" "$TMP/piece."
for p in "$TMP"/piece.*; do gzip -n < "$p"; done > "$TMP/multi.tar.gz"
# pigz --independent: full flushes between 128K blocks, byte-aligned restarts.
pigz -i -b 128 -p 2 -c "$TMP/gnu.tar" > "$TMP/indep.tar.gz"
# Partial and full flushes every few KiB (non-byte-aligned boundaries too).
python3 - "$TMP/pax.tar" "$TMP/flush.tar.gz" <<'PY'
import sys, zlib
data = open(sys.argv[1], "rb").read()
c = zlib.compressobj(6, zlib.DEFLATED, 31)
out = []
for i in range(0, len(data), 7000):
    out.append(c.compress(data[i:i+7000]))
    out.append(c.flush(zlib.Z_FULL_FLUSH if (i // 7000) % 2 else zlib.Z_PARTIAL_FLUSH))
out.append(c.flush())
open(sys.argv[2], "wb").write(b"".join(out))
PY

for layer in pax.tar.gz gnu.tar.gz multi.tar.gz indep.tar.gz flush.tar.gz pax.tar; do
    L=$TMP/$layer
    check "$layer: ztoc create (span 64K)" \
        "$SN" ztoc create -q -s 64K -o "$L.ztoc" "$L"
    nspans=$("$SN" ztoc info "$L.ztoc" | python3 -c 'import json,sys; print(json.load(sys.stdin)["num_spans"])')
    check "$layer: several spans ($nspans)" test "$nspans" -gt 4
    # Every regular file, compared with tar -xO.
    python3 -c '
import sys, tarfile
for m in tarfile.open(sys.argv[1]):
    if m.isreg(): print(m.name)' "$L" > "$L.files"
    bad=0 n=0
    while IFS= read -r f; do
        n=$((n + 1))
        tar -xOf "$L" "$f" > "$TMP/want" 2>/dev/null
        if ! "$SN" ztoc get-file -o "$TMP/got" "$L" "$L.ztoc" "$f" ||
           ! cmp -s "$TMP/want" "$TMP/got"; then
            echo "# $layer: $f differs"; bad=$((bad + 1))
        fi
    done < "$L.files"
    check "$layer: all $n regular files equal tar -xO" test "$bad" -eq 0 -a "$n" -ge 44
    check "$layer: hard link resolves to its target's bytes" \
        bash -c "'$SN' ztoc get-file '$L' '$L.ztoc' ./zlink | cmp -s - '$SRC/small.txt'"
done

# Laziness: a small file needs one or two spans, not the layer.
L=$TMP/pax.tar.gz
"$SN" ztoc get-file -v -o "$TMP/s" "$L" "$L.ztoc" ./small.txt 2> "$TMP/trace"
check "small file reads few spans" test "$(grep -c '^soci-nbd: span ' "$TMP/trace")" -le 2
"$SN" ztoc get-file -v -o "$TMP/s" "$L" "$L.ztoc" ./big.txt 2> "$TMP/trace"
check "each span is read at most once for a big file" \
    test "$(grep '^soci-nbd: span ' "$TMP/trace" | sort | uniq -d | wc -l)" -eq 0

# Integrity: a flipped byte inside a span the file needs → clear error, no output.
cp "$L" "$TMP/corrupt.tar.gz"
size=$(stat -c %s "$L")
printf '\xff' | dd of="$TMP/corrupt.tar.gz" bs=1 seek=$((size / 2)) conv=notrunc status=none
check_fails "corrupted span is refused" "digest mismatch" \
    "$SN" ztoc get-file -o "$TMP/c" "$TMP/corrupt.tar.gz" "$L.ztoc" ./big.txt
check "no output left behind" test ! -e "$TMP/c"
finish
