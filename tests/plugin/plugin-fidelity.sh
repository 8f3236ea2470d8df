#!/bin/bash
# soci-nbd tests: what the plugin serves, read by independent readers and
# the host kernel, against `umoci unpack` of the same image.  Root only
# (umoci, loop and overlay mounts, FUSE).
#  1. a generated 4-layer image (tests/helpers/mkfs-tree.py gen: every file type,
#     xattrs, whiteouts, opaque dirs, hard links), pushed to a local
#     registry and SOCI-converted, served lazily:
#     - squashfs-tools-ng on nbdcopy of each export: sqfs2tar and
#       rdsquashfs -u of the flat export, unsquashfs too, = umoci's tree;
#       each layer export's sqfs2tar tree = its kernel mount's tree;
#     - the kernel on the live exports (nbdfuse + loop, no copy): the flat
#       export mounted = umoci's tree; an overlayfs stack of the layer
#       exports = umoci's tree of those layers;
#  2. a realistic image: a debootstrap minbase Debian 12 rootfs
#     (bench/mklayer.sh, built once and cached) + a small layer, converted
#     with 1M spans: the flat export through nbdfuse + loop, unsquashfs
#     and sqfs2tar of its copy = umoci's tree (every file's bytes, type,
#     mode, owner, mtime, link target, device numbers, xattrs).
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
TREE="python3 $top_srcdir/tests/helpers/mkfs-tree.py"
OCIPY="python3 $top_srcdir/tests/helpers/oci-layout.py"

if [ "$(id -u)" -ne 0 ]; then
    echo "Bail out! tests/plugin/plugin-fidelity.sh must run as root (umoci, mounts)"
    exit 1
fi
if [ ! -c /dev/fuse ] || [ ! -e /dev/loop-control ]; then
    echo "1..0 # SKIP no /dev/fuse or no loop devices on this machine"
    exit 0
fi
nbdkit_asan_wrapper "$PLUGIN"
require_tools nbdkit nbdcopy nbdfuse skopeo umoci unsquashfs rdsquashfs sqfs2tar losetup
[ -f "$PLUGIN" ] || { echo "Bail out! $PLUGIN not built"; exit 1; }

MOUNTS="" PIDS="" NBDKIT_PIDS="" START_WAIT=60
fid_cleanup() {
    local m p
    for m in $MOUNTS; do umount "$m" 2>/dev/null; done
    for p in $PIDS $NBDKIT_PIDS; do kill "$p" 2>/dev/null; done
    for p in $PIDS $NBDKIT_PIDS; do _reg_wait_for 10 bash -c "! kill -0 $p" 2>/dev/null; done
}
trap 'fid_cleanup; srv_cleanup' EXIT
# fid_stop: unmount, check that the server on $SOCK stops, clean up.
fid_stop() {
    local m
    for m in $MOUNTS; do umount "$m" 2>/dev/null; done
    MOUNTS=""
    plugin_stop "$SOCK"
    fid_cleanup; PIDS="" NBDKIT_PIDS=""
}
now_ms() { date +%s%3N; }

# tree_of KIND SRC OUT.json: scan (dir) or tar, normalized like umoci's.
tree_of() {
    $TREE "$1" "$2" > "$3.raw" && $OCIPY umoci-norm "$3.raw" "$3" && rm -f "$3.raw"
}
push_convert() {   # LAYOUT REPO SPAN
    skopeo --policy "$TMP/policy.json" copy -q --dest-tls-verify=false \
        "oci:$1:img" "docker://$R_HOST/$2:v1" &&
    "$SN" convert -q --min-layer-size 0 -s "$3" "$R_HOST/$2:v1" "$R_HOST/$2:soci" > /dev/null
}

reg_start R || { echo "Bail out! registry did not start"; exit 1; }
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$TMP/policy.json"

# ---- 1. generated image ----------------------------------------------------------
mkdir -p "$TMP/gen"
$TREE gen "$TMP/gen"
for l in L1 L2 L3 L4; do $OCIPY strip "$TMP/gen/$l.tar" "$TMP/$l.tar"; done
gzip -n "$TMP/L1.tar" "$TMP/L3.tar"
G="$TMP/L1.tar.gz $TMP/L2.tar $TMP/L3.tar.gz $TMP/L4.tar"
$OCIPY layout "$TMP/lay4" img $G
$OCIPY layout "$TMP/lay3" img $TMP/L1.tar.gz $TMP/L2.tar $TMP/L3.tar.gz
check "umoci unpack of the 4-layer image" umoci_tree "$TMP/lay4" "$TMP/u4.json"
check "umoci unpack of its first 3 layers" umoci_tree "$TMP/lay3" "$TMP/u3.json"
check "push and SOCI-convert (64K spans)" push_convert "$TMP/lay4" test/gen 64K
SOCK=$TMP/s.sock
check "server (lazy, through the SOCI index)" plugin_start "$SOCK" \
    "$R_HOST/test/gen:soci" stats-file="$TMP/st.json"
uri() { echo "nbd+unix:///$1?socket=$SOCK"; }

# squashfs-tools-ng (and squashfs-tools) on copies of the exports.
check "nbdcopy of the flat export" nbdcopy "$(uri "")" "$TMP/flat.sqfs"
check "flat: sqfs2tar converts it" bash -c "sqfs2tar '$TMP/flat.sqfs' > '$TMP/flat.tar'"
tree_of tar "$TMP/flat.tar" "$TMP/s2t.json"
check "flat: sqfs2tar tree = umoci (bytes, types, modes, owners, mtimes, links, devices, xattrs)" \
    $TREE cmp "$TMP/u4.json" "$TMP/s2t.json"
# rdsquashfs -u restores modes, owners, times, xattrs only when asked (-C -O -T -X).
check "flat: rdsquashfs -u -C -O -T -X tree = umoci" bash -c "
    rm -rf '$TMP/rd' && rdsquashfs -q -u / -p '$TMP/rd' -C -O -T -X '$TMP/flat.sqfs' &&
    $TREE scan '$TMP/rd' > '$TMP/rd.raw' && $OCIPY umoci-norm '$TMP/rd.raw' '$TMP/rd.json' &&
    $TREE cmp '$TMP/u4.json' '$TMP/rd.json'"
rm -rf "$TMP/rd"
check "flat: unsquashfs tree = umoci (xattrs and symlink mtimes aside)" bash -c "
    unsquashfs -q -n -no-xattrs -d '$TMP/unsq' '$TMP/flat.sqfs' > /dev/null &&
    $TREE scan '$TMP/unsq' > '$TMP/unsq.raw' && $OCIPY umoci-norm '$TMP/unsq.raw' '$TMP/unsq.json' &&
    $TREE cmp '$TMP/u4.json' '$TMP/unsq.json' --no-xattrs --no-link-mtime"
rm -rf "$TMP/unsq" "$TMP/flat.tar"

# The kernel on the live exports.
check "nbdfuse: the flat export as a file" fuse_export "$(uri "")" "$TMP/ff"
check "kernel: loop-mount it (squashfs)" mnt squashfs "$TMP/ff/img" "$TMP/mflat" loop,ro
tree_of scan "$TMP/mflat" "$TMP/kflat.json"
check "kernel: flat export tree = umoci" $TREE cmp "$TMP/u4.json" "$TMP/kflat.json"
for i in 0 1 2; do
    check "nbdfuse + loop: layer/$i" bash -c "
        $(declare -f fuse_export mnt); PIDS=; MOUNTS=
        fuse_export '$(uri layer/$i)' '$TMP/fl$i' && mnt squashfs '$TMP/fl$i/img' '$TMP/m$i' loop,ro"
    MOUNTS="$TMP/m$i $TMP/fl$i $MOUNTS"
    check "layer/$i: sqfs2tar of its copy = its kernel mount (two readers agree)" bash -c "
        nbdcopy '$(uri layer/$i)' '$TMP/l$i.sqfs' && sqfs2tar '$TMP/l$i.sqfs' > '$TMP/l$i.tar' &&
        $TREE tar '$TMP/l$i.tar' > '$TMP/l$i-t.json' && $TREE scan '$TMP/m$i' > '$TMP/l$i-k.json' &&
        $TREE cmp '$TMP/l$i-t.json' '$TMP/l$i-k.json'"
    rm -f "$TMP/l$i.sqfs" "$TMP/l$i.tar"
done
check "kernel: overlay lowerdir=layer/2:layer/1:layer/0" \
    mnt overlay overlay "$TMP/merged" "lowerdir=$TMP/m2:$TMP/m1:$TMP/m0"
tree_of scan "$TMP/merged" "$TMP/merged.json"
check "overlay of the live layer exports = umoci of those 3 layers" \
    $TREE cmp "$TMP/u3.json" "$TMP/merged.json"
fid_stop
check "stats: lazy, every fetched span verified, none failed" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert all(l["lazy"] for l in s["layers"]) and s["spans_failed"] == 0
assert s["spans_fetched"] == s["spans_verified"] > 0, s' "$TMP/st.json"

# ---- 2. a realistic image: debootstrap minbase ---------------------------------------
t0=$(now_ms)
MB=$("$top_srcdir/bench/mklayer.sh") || { echo "Bail out! bench/mklayer.sh failed"; exit 1; }
echo "# minbase layer: $MB, $(stat -c %s "$MB") bytes ($(( $(now_ms) - t0 )) ms to make or find)"
mkdir -p "$TMP/app/opt/app"
printf 'print("hello")\n' > "$TMP/app/opt/app/hello.py"
ln -s ../opt/app/hello.py "$TMP/app/opt/hello"
tar -C "$TMP/app" --numeric-owner -czf "$TMP/app.tar.gz" opt
cp "$MB" "$TMP/minbase.tar.gz"
t0=$(now_ms)
$OCIPY layout "$TMP/laymb" img "$TMP/minbase.tar.gz" "$TMP/app.tar.gz"
check "umoci unpack of the minbase image" umoci_tree "$TMP/laymb" "$TMP/umb.json"
check "the reference is a real rootfs (> 5000 entries, /usr/bin/dpkg)" python3 -c '
import json, sys
t = json.load(open(sys.argv[1])); assert len(t) > 5000 and "usr/bin/dpkg" in t, len(t)' "$TMP/umb.json"
check "push and SOCI-convert (1M spans)" push_convert "$TMP/laymb" test/minbase 1M
check "server for it" plugin_start "$SOCK" "$R_HOST/test/minbase:soci" stats-file="$TMP/st.json"
check "nbdfuse + loop mount of the flat export" bash -c "
    $(declare -f fuse_export mnt); PIDS=; MOUNTS=
    fuse_export '$(uri "")' '$TMP/fmb' && mnt squashfs '$TMP/fmb/img' '$TMP/mmb' loop,ro"
MOUNTS="$TMP/mmb $TMP/fmb $MOUNTS"
tree_of scan "$TMP/mmb" "$TMP/kmb.json"
check "kernel: minbase flat export = umoci (every file's bytes and metadata)" \
    $TREE cmp "$TMP/umb.json" "$TMP/kmb.json"
check "nbdcopy of the flat export" nbdcopy "$(uri "")" "$TMP/mb.sqfs"
check "sqfs2tar tree = umoci" bash -c "
    sqfs2tar '$TMP/mb.sqfs' > '$TMP/mb.tar' && $TREE tar '$TMP/mb.tar' > '$TMP/mbt.raw' &&
    $OCIPY umoci-norm '$TMP/mbt.raw' '$TMP/mbt.json' && $TREE cmp '$TMP/umb.json' '$TMP/mbt.json'"
rm -f "$TMP/mb.tar"
check "unsquashfs tree = umoci (xattrs and symlink mtimes aside)" bash -c "
    unsquashfs -q -n -no-xattrs -d '$TMP/mbu' '$TMP/mb.sqfs' > /dev/null &&
    $TREE scan '$TMP/mbu' > '$TMP/mbu.raw' && $OCIPY umoci-norm '$TMP/mbu.raw' '$TMP/mbu.json' &&
    $TREE cmp '$TMP/umb.json' '$TMP/mbu.json' --no-xattrs --no-link-mtime"
fid_stop
# The copy streamed: the spans it had read whole left the memory cache
# behind it (docs/dense-index.md, "Streaming"), instead of filling it with
# bytes already read.  Stats as written when the server stopped.
check "the copy's spans left the cache once read whole (spans_released)" \
    stats_ok "$TMP/st.json" \
    "print('# %d of %d sub-spans released' % (s['spans_released'], s['spans_total'])) or 2 * s['spans_released'] >= s['spans_total']"
rm -rf "$TMP/mbu" "$TMP/mb.sqfs"
echo "# minbase part: $(( $(now_ms) - t0 )) ms"

finish
