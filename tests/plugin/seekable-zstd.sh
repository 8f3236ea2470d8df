#!/bin/bash
# soci-nbd tests: zstd layers of several frames served lazily through the
# dense index (docs/dense-index.md, "zstd layers"), against a real registry
# and a fault-injecting proxy.
#  1. image A's first layer is written by pzstd (the zstd package's
#     parallel compressor: one frame per ~2 MiB of input); image B's by the
#     zstd CLI, one frame per 32 KiB, with the seek table of the zstd
#     seekable format after them (tests/helpers/oci-layout.py seekable),
#     and a second zstd layer of one frame.  Converted from OCI layouts to
#     the registry (skopeo would not push pzstd's layer as it is: it takes
#     a layer starting with a skippable frame for uncompressed and
#     compresses it again):
#     the multi-frame layers get a dense table of their own (no SOCI ztoc,
#     no windows blob), the one-frame layer none, and convert says why;
#  2. inspect --serving says lazy-seekable-zstd for them, whole for the
#     one-frame layer; the flat export's tree = `umoci unpack` of the same
#     image gzip-compressed; every export is the same with dense=false
#     (the zstd layers fetched whole);
#  3. through nbdfuse: describing the tree fetches nothing; a 1 MiB file
#     read at its place in the export fetches only the frames that hold it
#     (give or take a sub-span at each end), nothing of the other layers;
#  4. every byte verified: a flipped bit in the layer is EIO, in its dense
#     table a refused start; prefetch=background loads every sub-span and
#     the whole-layer check (the layer rebuilt from them: digest, file
#     table) passes.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
NBDREAD=$top_builddir/tests/helpers/nbd-read
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
TREE="python3 $top_srcdir/tests/helpers/mkfs-tree.py"
OCIPY="python3 $top_srcdir/tests/helpers/oci-layout.py"

if [ "$(id -u)" -ne 0 ]; then
    echo "Bail out! tests/plugin/seekable-zstd.sh must run as root (umoci)"
    exit 1
fi
if [ ! -c /dev/fuse ]; then
    echo "1..0 # SKIP no /dev/fuse on this machine"
    exit 0
fi
nbdkit_asan_wrapper "$PLUGIN"
require_tools nbdkit nbdcopy nbdfuse umoci sqfs2tar rdsquashfs zstd pzstd
[ -f "$PLUGIN" ] || { echo "Bail out! $PLUGIN not built"; exit 1; }
MOUNTS="" PIDS="" NBDKIT_PIDS=""
trap 'mounts_cleanup; srv_cleanup' EXIT

reg_start R || { echo "Bail out! registry did not start"; exit 1; }
fault_start F "$R_URL" || { echo "Bail out! fault proxy did not start"; exit 1; }

# ---- the images ------------------------------------------------------------------
mkdir -p "$TMP/gen" "$TMP/a" "$TMP/b" "$TMP/g"
$TREE gen "$TMP/gen" > /dev/null
for l in L1 L2 L3 L4; do $OCIPY strip "$TMP/gen/$l.tar" "$TMP/$l.tar"; done
pzstd -q -1 -p 2 -c "$TMP/L1.tar" > "$TMP/a/L1.tar.zst"
gzip -n -c "$TMP/L2.tar" > "$TMP/a/L2.tar.gz"
$OCIPY seekable "$TMP/L1.tar" "$TMP/b/L1.tar.zst" 32768 > "$TMP/frames.jsonl"
zstd -q -c "$TMP/L2.tar" > "$TMP/b/L2.tar.zst"
gzip -n -c "$TMP/L1.tar" > "$TMP/g/L1.tar.gz"
$OCIPY layout "$TMP/alay" img "$TMP/a/L1.tar.zst" "$TMP/a/L2.tar.gz" "$TMP/L3.tar" "$TMP/L4.tar"
$OCIPY layout "$TMP/blay" img "$TMP/b/L1.tar.zst" "$TMP/b/L2.tar.zst" "$TMP/L3.tar" "$TMP/L4.tar"
$OCIPY layout "$TMP/glay" img "$TMP/g/L1.tar.gz" "$TMP/a/L2.tar.gz" "$TMP/L3.tar" "$TMP/L4.tar"
check "umoci unpack of the image gzip-compressed" umoci_tree "$TMP/glay" "$TMP/u.json"
check "pzstd wrote several frames (with its skippable frames)" python3 - "$TMP/a/L1.tar.zst" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
i = n = 0
while i < len(d):
    assert struct.unpack("<I", d[i:i + 4])[0] == 0x184D2A50, i   # pzstd's size frame
    i += 12 + struct.unpack("<I", d[i + 8:i + 12])[0]
    n += 1
assert n >= 3, n
PY
LD() {  # LAYOUT N: the digest of layer N
    python3 -c 'import json,sys,os
i = json.load(open(os.path.join(sys.argv[1], "index.json")))["manifests"][0]["digest"][7:]
print(json.load(open(os.path.join(sys.argv[1], "blobs/sha256", i)))["layers"][int(sys.argv[2])]["digest"])' "$1" "$2"
}
A0=$(LD "$TMP/alay" 0) B0=$(LD "$TMP/blay" 0) B1=$(LD "$TMP/blay" 1)

# ---- 1. convert ------------------------------------------------------------------
check "convert image A" bash -c "
    '$SN' convert --min-layer-size 0 'oci-layout:$TMP/alay:img' '$R_HOST/test/a:soci' > '$TMP/ca' 2>&1 &&
    grep -q '^dense index sha256:' '$TMP/ca' || { cat '$TMP/ca' >&2; exit 1; }"
check "convert image B: its one-frame zstd layer gets no dense index, and it says why" bash -c "
    '$SN' convert --min-layer-size 0 'oci-layout:$TMP/blay:img' '$R_HOST/test/b:soci' > '$TMP/cb' 2>&1 &&
    grep -q 'layer 1 ($B1): no dense index (the zstd layer is served whole): .*one restart point' '$TMP/cb' ||
        { cat '$TMP/cb' >&2; exit 1; }"
check "index list: the SOCI index and the dense index; index info of the dense one" bash -c "
    '$SN' index list '$R_HOST/test/a:soci' > '$TMP/il' 2>&1 &&
    d=\$(awk '\$2 == \"dense\" {print \$1}' '$TMP/il') && [ -n \"\$d\" ] &&
    '$SN' index info '$R_HOST/test/a:soci' \"\$d\" > '$TMP/ii' 2>&1 ||
        { cat '$TMP/il' '$TMP/ii' >&2; exit 1; }"
check "... (the image manifest's indexes, read back)" python3 - "$R_URL" "$A0" <<'PY'
import json, sys, urllib.request
base, a0 = sys.argv[1:3]
o = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def get(kind, ref):
    rq = urllib.request.Request("%s/v2/test/a/%s/%s" % (base, kind, ref), headers={
        "Accept": "application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json"})
    return json.loads(o.open(rq, timeout=10).read())
idx = get("manifests", "soci")
img = [m for m in idx["manifests"] if not m.get("artifactType")][0]
man = get("manifests", img["digest"])
dense = get("manifests", man["annotations"]["io.soci-nbd.dense-index.digest"])
soci = get("manifests", man["annotations"]["com.amazon.soci.index-digest"])
mine = [l["mediaType"].rsplit(".", 2)[-2] for l in dense["layers"]
        if l["annotations"]["io.soci-nbd.dense-index.layer"] == a0]
assert mine == ["table"], dense
assert a0 not in [l["annotations"].get("com.amazon.soci.image-layer-digest") for l in soci["layers"]], soci
PY

IMGA=$F_HOST/test/a:soci IMGB=$F_HOST/test/b:soci
EXPORTS="flat layer/0 layer/1 layer/2"   # (layer 3 hard-links into 2: no export)

# ---- 2. served lazily, the same tree -----------------------------------------------
serving() {  # IMAGE WANT...: inspect --serving, layer by layer
    local img=$1; shift
    "$SN" inspect --serving "$img" | sed -n 's/^served sha256:[0-9a-f]* //p' > "$TMP/insp" &&
        [ "$(echo $(cat "$TMP/insp"))" = "$*" ] || { cat "$TMP/insp" >&2; return 1; }
}
check "inspect --serving, image A: lazy-seekable-zstd, lazy-dense, lazy-soci x2" \
    serving "$IMGA" lazy-seekable-zstd lazy-dense lazy-soci lazy-soci
check "inspect --serving, image B: lazy-seekable-zstd, whole (one frame), lazy-soci x2" \
    serving "$IMGB" lazy-seekable-zstd whole lazy-soci lazy-soci
for x in A B; do
    img=IMG$x
    check "image $x: every export, lazily" export_trees "${!img}" "$TMP/l$x" "$EXPORTS"
    check "image $x: every export with dense=false (its zstd layers fetched whole)" \
        export_trees "${!img}" "$TMP/w$x" "$EXPORTS" dense=false
    check "image $x: the same trees either way" bash -c "
        for f in '$TMP/l$x'/t*.json; do $TREE cmp \"\$f\" '$TMP/w$x/'\${f##*/} || exit 1; done"
    $OCIPY umoci-norm "$TMP/l$x/t.json" "$TMP/l$x/flat.json"
    check "image $x: the flat export's tree = umoci unpack (bytes, types, modes, owners, mtimes, links, xattrs)" \
        $TREE cmp "$TMP/u.json" "$TMP/l$x/flat.json"
done
check "stats, image A: layer 0 lazy from its dense table, every sub-span verified, nothing fetched whole" \
    stats_ok "$TMP/lA/st.json" "(
s['layers'][0]['served'] == 'lazy-seekable-zstd' and s['layers'][0]['lazy'] and
s['layers'][0]['spans_fetched'] == s['layers'][0]['spans_verified'] > 0 and
s['spans_failed'] == 0 and s['whole_layer_bytes_fetched'] == 0)"
check "stats, image B: the one-frame layer fetched whole, and only it" stats_ok "$TMP/lB/st.json" "(
s['layers'][0]['served'] == 'lazy-seekable-zstd' and s['layers'][1]['served'] == 'whole' and
s['whole_layer_bytes_fetched'] == $(stat -c %s "$TMP/b/L2.tar.zst"))"

# ---- 3. only what is read ------------------------------------------------------------
SOCK=$TMP/s.sock
lazy_reads_checks "$SOCK" "$IMGB" "$F_LOG" data/size-1048583 1048583 "$TMP/L1.tar"
START=$PATH_START
# The frames of the seekable layer holding the file: what the read must
# fetch; dense sub-spans (runs of frames, at most 64 KiB apart unless one
# frame is larger) may add at most one at each end.
check "... fetched the frames of that file (and at most a sub-span either side), nothing of the other layers" \
    python3 - "$SOCK.json" "$TMP/frames.jsonl" "$TMP/L1.tar" <<'PY'
import json, sys, tarfile
st, frames, tarf = sys.argv[1:4]
s = json.load(open(st))
f = [json.loads(l) for l in open(frames)]
m = tarfile.open(tarf).getmember("data/size-1048583")
lo, hi = m.offset_data, m.offset_data + m.size
need = sum(c for _, c, u, n in f if u < hi and u + n > lo)
slack = 2 * (64 * 1024 + max(c for _, c, _, _ in f))
got = s["layers"][0]["bytes_fetched"]
assert need <= got <= need + slack, (need, got, slack)
assert s["bytes_fetched"] == got and s["spans_failed"] == 0, s
print("# needed %d, fetched %d" % (need, got))
PY

# ---- 4. every byte verified --------------------------------------------------------
check "server on image B" plugin_start "$SOCK" "$IMGB" stats-file="$TMP/st4.json"
fault_corrupt F "$B0"
check "a flipped bit in every response for the layer: reading the file is EIO" bash -c "
    ! '$NBDREAD' 'nbd+unix:///?socket=$SOCK' '$START' 1048583 > '$TMP/big4' 2> '$TMP/e4' &&
    grep -q 'Input/output error' '$TMP/e4' || { cat '$TMP/e4' >&2; exit 1; }"
fault_set F '{"rules": []}'
plugin_stop "$SOCK"
check "... counted as failed sub-spans" stats_ok "$TMP/st4.json" \
    "s['layers'][0]['spans_failed'] > 0"
TABLE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["ztoc"])' "$TMP/lB/st.json")
fault_corrupt F "$TABLE"
check_fails "a flipped bit in the layer's dense table: refused start" \
    "layer 0: .*$TABLE" nbdkit -U - -r "$PLUGIN" "$IMGB" --run true
fault_set F '{"rules": []}'
check "server on image A, prefetch=background" plugin_start "$SOCK" "$IMGA" \
    stats-file="$TMP/st5.json" prefetch=background
check "... every sub-span loaded, every layer checked whole and found right" \
    wait_stats "$TMP/st5.json" "s['prefetch_done'] and s['spans_fetched'] == s['spans_total'] and \
        s['spans_failed'] == 0 and s['layers_verified'] == 4 and s['layers_verify_failed'] == 0 and \
        s['layers'][0]['verify'] == 'ok'"
plugin_stop "$SOCK"

finish
