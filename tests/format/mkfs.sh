#!/bin/bash
# soci-nbd tests: `soci-nbd mkfs` images checked by independent readers —
# unsquashfs (squashfs-tools), rdsquashfs and sqfs2tar (squashfs-tools-ng),
# the kernel's squashfs, and an overlayfs stack of per-layer images — each
# against a reference tree that tests/helpers/mkfs-tree.py builds from the layer
# tars with OCI apply semantics.  Needs root (loop and overlay mounts).
. "${top_srcdir:-$(dirname "$0")/../..}/tests/helpers/lib.sh"

SN=$SOCI_NBD
PY="python3 $top_srcdir/tests/helpers/mkfs-tree.py"

if [ "$(id -u)" -ne 0 ]; then
    echo "Bail out! tests/format/mkfs.sh must run as root (loop and overlay mounts)"
    exit 1
fi
require_tools unsquashfs rdsquashfs sqfs2tar losetup

MOUNTS=""
cleanup() {
    for m in $MOUNTS; do umount "$m" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
# mnt TYPE SOURCE DIR OPTIONS: mount and remember it (innermost last).
mnt() {
    mkdir -p "$3"
    mount -t "$1" -o "$4" "$2" "$3" && MOUNTS="$3 $MOUNTS"
}

$PY gen "$TMP"
gzip -n "$TMP/L1.tar"                           # L1 gzip, L2 plain, L3 gzip
gzip -n "$TMP/L3.tar"
L1=$TMP/L1.tar.gz L2=$TMP/L2.tar L3=$TMP/L3.tar.gz L4=$TMP/L4.tar

# ---- the flattened image --------------------------------------------------
check "mkfs: FLAT image of 4 layers" \
    "$SN" mkfs -o "$TMP/flat.sqfs" "$L1" "$L2" "$L3" "$L4"
"$SN" mkfs -q -o "$TMP/flat2.sqfs" "$L1" "$L2" "$L3" "$L4"
check "deterministic: same bytes twice" cmp "$TMP/flat.sqfs" "$TMP/flat2.sqfs"
check "size is a multiple of 4096" \
    test $(( $(stat -c %s "$TMP/flat.sqfs") % 4096 )) -eq 0
$PY ref "$L1" "$L2" "$L3" "$L4" > "$TMP/ref4.json"
$PY ref "$L1" "$L2" "$L3" > "$TMP/ref3.json"
check "reference tree has the 3000-file directory" \
    test "$(grep -c '"many/f' "$TMP/ref4.json")" -eq 2999

check "unsquashfs -s: superblock" bash -c \
    "unsquashfs -s '$TMP/flat.sqfs' > '$TMP/s.txt' &&
     grep -q 'Data is uncompressed' '$TMP/s.txt' &&
     grep -q 'Fragments are not stored' '$TMP/s.txt' &&
     grep -q 'Block size 131072' '$TMP/s.txt'"
n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$TMP/ref4.json")
check "unsquashfs -lln lists every entry ($n)" bash -c \
    "test \$(unsquashfs -lln '$TMP/flat.sqfs' | grep -c squashfs-root/) -eq $n"
check "rdsquashfs -l / lists the root" bash -c \
    "rdsquashfs -l / '$TMP/flat.sqfs' | grep -q ' many$'"
check "rdsquashfs -x: xattrs of x/attrs" bash -c \
    "rdsquashfs -x /x/attrs '$TMP/flat.sqfs' > '$TMP/x.txt' &&
     grep -q '^user.foo=bar' '$TMP/x.txt' &&
     grep -q '^trusted.t=tv' '$TMP/x.txt' &&
     ! grep -q 'overlay' '$TMP/x.txt' && ! grep -q 'system' '$TMP/x.txt'"
check "rdsquashfs -c reads a file across blocks" bash -c \
    "rdsquashfs -c /data/size-1048583 '$TMP/flat.sqfs' | sha256sum | grep -q \
     \$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"data/size-1048583\"][\"sha\"])' '$TMP/ref4.json')"

rm -rf "$TMP/out"
check "unsquashfs -d extracts" unsquashfs -q -n -no-xattrs -d "$TMP/out" "$TMP/flat.sqfs"
$PY scan "$TMP/out" > "$TMP/unsq.json"
check "unsquashfs tree = reference (data, types, modes, ids, mtimes, links, devices)" \
    $PY cmp "$TMP/ref4.json" "$TMP/unsq.json" --no-xattrs --no-link-mtime
rm -rf "$TMP/out"

check "sqfs2tar converts" bash -c "sqfs2tar '$TMP/flat.sqfs' > '$TMP/s2t.tar'"
$PY tar "$TMP/s2t.tar" > "$TMP/s2t.json"
check "sqfs2tar tree = reference (with xattrs)" \
    $PY cmp "$TMP/ref4.json" "$TMP/s2t.json"
rm -f "$TMP/s2t.tar"

check "kernel: mount -t squashfs FLAT" \
    mnt squashfs "$TMP/flat.sqfs" "$TMP/mflat" loop,ro
$PY scan "$TMP/mflat" > "$TMP/kflat.json"
check "kernel FLAT tree = reference (with xattrs)" \
    $PY cmp "$TMP/ref4.json" "$TMP/kflat.json"
check "kernel: hard links share an inode" bash -c \
    "test \$(stat -c %i '$TMP/mflat/data/hard') = \$(stat -c %i '$TMP/mflat/data/size-513') &&
     test \$(stat -c %h '$TMP/mflat/data/hard') = 3 &&
     test \$(stat -c %i '$TMP/mflat/l4/tool-link') = \$(stat -c %i '$TMP/mflat/usr/bin/tool')"

# ---- per-layer images stacked with overlayfs ------------------------------
for i in 1 2 3; do
    eval "L=\$L$i"
    check "mkfs --layer L$i" "$SN" mkfs -q --layer -o "$TMP/l$i.sqfs" "$L"
    check "kernel: mount L$i" mnt squashfs "$TMP/l$i.sqfs" "$TMP/m$i" loop,ro
done
check "L2: whiteout is a 0/0 char device" bash -c \
    "test \"\$(stat -c '%F %t:%T' '$TMP/m2/d/gone')\" = 'character special file 0:0'"
check "L2: opaque dir carries trusted.overlay.opaque=y" python3 -c \
    "import os, sys; sys.exit(os.getxattr('$TMP/m2/opq', 'trusted.overlay.opaque') != b'y')"
check "L2: aufs metadata dropped" test ! -e "$TMP/m2/.wh..wh.plnk"
check "kernel: overlay lowerdir=L3:L2:L1" \
    mnt overlay overlay "$TMP/merged" "lowerdir=$TMP/m3:$TMP/m2:$TMP/m1"
$PY scan "$TMP/merged" > "$TMP/merged.json"
check "overlay of per-layer images = reference of 3 layers (with xattrs)" \
    $PY cmp "$TMP/ref3.json" "$TMP/merged.json"

# ---- refusals ------------------------------------------------------------
check_fails "--layer: hard link into a lower layer refused" \
    "hard link 'l4/tool-link': target 'usr/bin/tool' is not in this layer" \
    "$SN" mkfs -o "$TMP/bad.sqfs" --layer "$L4"
check_fails "a 257-byte name is refused" "is 257 bytes long" \
    "$SN" mkfs -o "$TMP/bad.sqfs" "$TMP/longname.tar"
check_fails "--layer takes one layer" "exactly one LAYER" \
    "$SN" mkfs -o "$TMP/bad.sqfs" --layer "$L1" "$L2"
check "no output left behind" test ! -e "$TMP/bad.sqfs"
finish
