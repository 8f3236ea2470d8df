#!/bin/bash
# soci-nbd tests: hostile and broken input at the command line — truncated
# and garbage ztocs, corrupt gzip streams, bad tar headers, refused tar
# features — each gives one clear error line and a normal exit status
# (never a crash; the sanitizer CI pass runs this too).
. "${top_srcdir:-$(dirname "$0")/../..}/tests/helpers/lib.sh"

SN=$SOCI_NBD
"$SN" ztoc create -q -s 4096 -o "$TMP/B.ztoc" "$DATA/B.tar.gz"
size=$(stat -c %s "$TMP/B.ztoc")

# Truncated ztocs: every cut must be refused cleanly.
bad=0
for cut in 0 1 4 8 16 24 40 64 100 200 1000 5000 100000 $((size - 100)) $((size - 1)); do
    head -c "$cut" "$TMP/B.ztoc" > "$TMP/cut.ztoc"
    "$SN" ztoc info "$TMP/cut.ztoc" > /dev/null 2> "$TMP/err"; st=$?
    if [ $st -ne 1 ] || [ "$(wc -l < "$TMP/err")" -ne 1 ]; then
        echo "# cut at $cut: status $st"; cat "$TMP/err" | sed 's/^/# /'; bad=$((bad + 1))
    fi
done
check "truncated ztocs refused with one line each" test $bad -eq 0

# Random byte flips: refused or accepted, never a crash (status < 128).
bad=0
for i in $(seq 1 60); do
    cp "$TMP/B.ztoc" "$TMP/flip.ztoc"
    off=$(( (i * 7919) % 1500 ))
    printf "\\x$(printf %02x $(( (i * 37) % 256 )))" |
        dd of="$TMP/flip.ztoc" bs=1 seek=$off conv=notrunc status=none
    "$SN" ztoc info "$TMP/flip.ztoc" > /dev/null 2>&1; st=$?
    [ $st -ge 128 ] && { echo "# flip $i at $off crashed ($st)"; bad=$((bad + 1)); }
    "$SN" ztoc get-file "$DATA/B.tar.gz" "$TMP/flip.ztoc" dir/b.txt > "$TMP/o" 2>&1; st=$?
    [ $st -ge 128 ] && { echo "# get-file flip $i crashed ($st)"; bad=$((bad + 1)); }
    if [ $st -eq 0 ] && ! tar -xOzf "$DATA/B.tar.gz" dir/b.txt | cmp -s - "$TMP/o"; then
        echo "# flip $i at $off served wrong bytes"; bad=$((bad + 1))
    fi
done
check "corrupted ztocs never crash and never serve wrong bytes" test $bad -eq 0

head -c 4096 /dev/urandom > "$TMP/random.ztoc"
check_fails "random bytes as a ztoc" "random.ztoc" "$SN" ztoc ls "$TMP/random.ztoc"

# A ztoc used with the wrong layer: span digests do not match.
"$SN" ztoc create -q -s 4096 -o "$TMP/A.ztoc" "$DATA/A.tar.gz"
check_fails "ztoc of another layer" "digest mismatch\|shorter than" \
    "$SN" ztoc get-file "$DATA/B.tar.gz" "$TMP/A.ztoc" etc/hello.txt

# Corrupt gzip streams.
head -c 300 "$DATA/B.tar.gz" > "$TMP/trunc.tar.gz"
check_fails "truncated gzip" "trunc.tar.gz: .*truncated" \
    "$SN" ztoc create -o "$TMP/t.ztoc" "$TMP/trunc.tar.gz"
check "no ztoc written on failure" test ! -e "$TMP/t.ztoc"
cp "$DATA/B.tar.gz" "$TMP/bad.tar.gz"
printf '\xff\xff\xff\xff' | dd of="$TMP/bad.tar.gz" bs=1 seek=100 conv=notrunc status=none
check_fails "corrupt deflate data" "bad.tar.gz: " \
    "$SN" ztoc create -o "$TMP/b.ztoc" "$TMP/bad.tar.gz"
{ cat "$DATA/B.tar.gz"; printf 'trailing garbage'; } > "$TMP/trail.tar.gz"
check_fails "garbage after the gzip member" "trail.tar.gz: " \
    "$SN" ztoc create -o "$TMP/g.ztoc" "$TMP/trail.tar.gz"
printf '\x28\xb5\x2f\xfd rest of a zstd frame' > "$TMP/z.tar.zst"
check_fails "zstd layer" "zstd.*not supported" \
    "$SN" ztoc create -o "$TMP/z.ztoc" "$TMP/z.tar.zst"

# Broken tar headers.
cp "$DATA/A.tar" "$TMP/cksum.tar"
printf 'X' | dd of="$TMP/cksum.tar" bs=1 seek=0 conv=notrunc status=none
check_fails "bad header checksum" "cksum.tar: .*checksum" \
    "$SN" ztoc create -o "$TMP/c.ztoc" "$TMP/cksum.tar"
python3 - "$TMP" <<'PY'
import io, os, sys, tarfile
d = sys.argv[1]
# A global PAX header ('g'): the reference refuses the layer.
with tarfile.open(os.path.join(d, "global.tar"), "w", format=tarfile.PAX_FORMAT,
                  pax_headers={"comment": "global"}) as t:
    ti = tarfile.TarInfo("f"); ti.size = 3; t.addfile(ti, io.BytesIO(b"abc"))
# A header whose size runs far past the end of the stream.
with tarfile.open(os.path.join(d, "huge.tar"), "w", format=tarfile.USTAR_FORMAT) as t:
    ti = tarfile.TarInfo("f"); ti.size = 3; t.addfile(ti, io.BytesIO(b"abc"))
b = bytearray(open(os.path.join(d, "huge.tar"), "rb").read())
b[124:136] = b"77777777777\0"
b[148:156] = b"        "
b[148:156] = ("%06o\0 " % sum(b[:512])).encode()
open(os.path.join(d, "huge.tar"), "wb").write(bytes(b))
PY
gzip -c "$TMP/global.tar" > "$TMP/global.tar.gz"
check_fails "global PAX header refused like the reference" "global" \
    "$SN" ztoc create -o "$TMP/x.ztoc" "$TMP/global.tar.gz"
check_fails "entry larger than the archive" "huge.tar: .*truncated\|huge.tar: .*end" \
    "$SN" ztoc create -o "$TMP/x.ztoc" "$TMP/huge.tar"
truncate -s 1M "$TMP/sparse"; printf 'x' >> "$TMP/sparse"
tar -C "$TMP" --format=gnu -S -cf "$TMP/sparse.tar" sparse
check_fails "GNU sparse member refused" "sparse" \
    "$SN" ztoc create -o "$TMP/x.ztoc" "$TMP/sparse.tar"
check_fails "empty file" "empty.tar" \
    bash -c ": > '$TMP/empty.tar'; exec '$SN' ztoc create -o '$TMP/x.ztoc' '$TMP/empty.tar'"
# Hostile tree shapes (squashfs synthesis): a 400,000-level PAX path used
# to exhaust the stack of the recursive directory walks (SIGSEGV in mkfs and
# in the plugin); now paths over 4096 bytes or 1024 levels are refused in
# one line, and the walks are iterative.
python3 - "$TMP" <<'PY'
import io, os, sys, tarfile
d = sys.argv[1]
def tar(name, paths):
    with tarfile.open(os.path.join(d, name), "w", format=tarfile.PAX_FORMAT) as t:
        for p in paths:
            ti = tarfile.TarInfo(p); ti.size = 3; t.addfile(ti, io.BytesIO(b"hi\n"))
tar("deep.tar", ["a/" * 399999 + "f"])
tar("deep1024.tar", ["a/" * 1023 + "f"])
tar("deep1025.tar", ["b/" * 1024 + "f"])
PY
gzip -kn "$TMP/deep.tar"
for mode in "" --layer; do
    check_fails "400,000-level path: mkfs${mode:+ $mode} refuses it in one line" \
        "path is 799999 bytes long (the limit is 4096)" \
        "$SN" mkfs -o "$TMP/deep.sqfs" $mode "$TMP/deep.tar.gz"
done
check_fails "1025-level path refused" "more than 1024 directories deep" \
    "$SN" mkfs -o "$TMP/deep.sqfs" "$TMP/deep1025.tar"
check "1024-level path accepted, read back by unsquashfs" bash -c "
    '$SN' mkfs -o '$TMP/d1024.sqfs' '$TMP/deep1024.tar' &&
    unsquashfs -no-progress -d '$TMP/d1024' '$TMP/d1024.sqfs' > /dev/null &&
    cmp <(printf 'hi\n') '$TMP/d1024/$(printf 'a/%.0s' $(seq 1023))f'"
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
nbdkit_asan_wrapper "$PLUGIN"
python3 "$top_srcdir/tests/helpers/plugin-image.py" layout "$TMP/deeplay" img "$TMP/deep.tar.gz" > /dev/null
check_fails "400,000-level path: the plugin refuses the image in one line" \
    "path is 799999 bytes long" \
    nbdkit -U - -r "$PLUGIN" "oci-layout:$TMP/deeplay:img" --run true
# A gzip bomb: 300 MiB of zeros compress to 1.3 MB; with checkpoints
# 128 MiB of output apart (as any index may place them) one span inflates
# to 128 MiB from a few hundred KB.  The CLI refuses to decode such a span
# (it would be one buffer); the plugin serves the layer whole instead, and
# the bytes are right.
python3 - "$TMP" <<'PY'
import io, os, sys, tarfile
d = sys.argv[1]
class Zeros(io.RawIOBase):
    def __init__(self, n): self.n = n
    def readable(self): return True
    def readinto(self, b):
        k = min(len(b), self.n); b[:k] = bytes(k); self.n -= k; return k
with tarfile.open(os.path.join(d, "bomb.tar"), "w", format=tarfile.PAX_FORMAT) as t:
    ti = tarfile.TarInfo("small"); ti.size = 6; t.addfile(ti, io.BytesIO(b"small\n"))
    ti = tarfile.TarInfo("zeros"); ti.size = 300 << 20; t.addfile(ti, io.BufferedReader(Zeros(ti.size)))
PY
gzip -1n "$TMP/bomb.tar"
"$SN" ztoc create -q -s 128M -o "$TMP/bomb.ztoc" "$TMP/bomb.tar.gz" ||
    { echo "Bail out! ztoc create of the bomb"; exit 1; }
check_fails "gzip bomb: get-file refuses the span in one line" \
    "span [0-9]* inflates to [0-9]* bytes (the limit is 64 MiB)" \
    "$SN" ztoc get-file "$TMP/bomb.tar.gz" "$TMP/bomb.ztoc" small
python3 "$top_srcdir/tests/helpers/plugin-image.py" layout "$TMP/bomblay" img "$TMP/bomb.tar.gz" > /dev/null
check "gzip bomb: convert indexes it (an OCI layout)" \
    "$SN" convert -q --min-layer-size 0 -s 128M "oci-layout:$TMP/bomblay:img" "oci-layout:$TMP/bombsoci:img"
check "gzip bomb: the plugin serves that layer whole (SOCI index), the right bytes" bash -c "
    nbdkit -U - -r '$PLUGIN' 'oci-layout:$TMP/bombsoci:img' dense=false stats-file='$TMP/bomb.json' \
        --run 'nbdcopy \"\$uri\" \"$TMP/bomb.sqfs\"' &&
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); l=s[\"layers\"][0]; sys.exit(not (s[\"index\"] and not l[\"lazy\"] and l[\"ztoc\"] is None))' '$TMP/bomb.json' &&
    '$SN' mkfs -q -o '$TMP/bomb-ref.sqfs' '$TMP/bomb.tar.gz' && cmp '$TMP/bomb.sqfs' '$TMP/bomb-ref.sqfs'"
# The dense index caps sub-spans at 4 MiB of output: the same layer lazily.
check "gzip bomb: through its dense index, lazily, the right bytes" bash -c "
    nbdkit -U - -r '$PLUGIN' 'oci-layout:$TMP/bombsoci:img' stats-file='$TMP/bomb2.json' \
        --run 'nbdcopy \"\$uri\" \"$TMP/bomb2.sqfs\"' &&
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); l=s[\"layers\"][0]; sys.exit(not (s[\"dense_index\"] and l[\"lazy\"]))' '$TMP/bomb2.json' &&
    cmp '$TMP/bomb2.sqfs' '$TMP/bomb-ref.sqfs'"
finish
