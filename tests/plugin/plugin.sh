#!/bin/bash
# soci-nbd tests: nbdkit-soci-plugin end to end.
#  1. an oci-layout: image without index: every export read with nbdcopy
#     equals `soci-nbd mkfs` of the same layer files byte for byte, and
#     its tree equals the OCI-apply reference (tests/helpers/mkfs-tree.py); as
#     root, the kernel mounts the flat image and an overlay of the layers;
#  2. a real registry with SOCI indexes pushed by the test (v1 through the
#     referrers fallback tag, v2 through the manifest annotation, explicit
#     index=): same bytes, and lazy — metadata costs no span, one small
#     file a few spans (stats-file);
#  3. integrity: corrupted range responses (fault proxy) → EIO for the
#     files of that layer only;
#  4. startup errors are one clear line and a non-zero exit.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
NBDREAD=$top_builddir/tests/helpers/nbd-read
TREE="python3 $top_srcdir/tests/helpers/mkfs-tree.py"
IMGPY="python3 $top_srcdir/tests/helpers/plugin-image.py"

nbdkit_asan_wrapper "$PLUGIN"

require_tools nbdkit nbdcopy nbdinfo unsquashfs rdsquashfs
[ -f "$PLUGIN" ] || { echo "Bail out! $PLUGIN not built"; exit 1; }

MOUNTS=""
NBDKIT_PIDS=""
plugin_cleanup() {
    local m p
    for m in $MOUNTS; do umount "$m" 2>/dev/null; done
    for p in $NBDKIT_PIDS; do kill "$p" 2>/dev/null; done
}
trap 'plugin_cleanup; srv_cleanup' EXIT

# soci ARGS... --run CMD: nbdkit captive on a private socket.
soci() { nbdkit -U - -r "$PLUGIN" "$@"; }

# export_copy OUT NAME ARGS...: copy export NAME to OUT.
export_copy() {
    local out=$1 name=$2; shift 2
    soci -e "$name" "$@" --run "nbdcopy \"\$uri\" '$out'"
}

# json_get FILE KEY: a top-level value of a JSON file.
json_get() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
export -f json_get

# ---- 1. oci-layout: without an index -------------------------------------
mkdir -p "$TMP/layers"
$TREE gen "$TMP/layers"
gzip -n "$TMP/layers/L1.tar"
gzip -n "$TMP/layers/L3.tar"
L1=$TMP/layers/L1.tar.gz L2=$TMP/layers/L2.tar L3=$TMP/layers/L3.tar.gz
L4=$TMP/layers/L4.tar
LAY=$TMP/layout
$IMGPY layout "$LAY" img "$L1" "$L2" "$L3" "$L4" > "$TMP/layout.digest"
IMG="oci-layout:$LAY:img"

check "mkfs reference images" bash -c "
    '$SN' mkfs -q -o '$TMP/ref-flat.sqfs' '$L1' '$L2' '$L3' '$L4' &&
    '$SN' mkfs -q --layer -o '$TMP/ref-l0.sqfs' '$L1' &&
    '$SN' mkfs -q --layer -o '$TMP/ref-l1.sqfs' '$L2' &&
    '$SN' mkfs -q --layer -o '$TMP/ref-l2.sqfs' '$L3'"
$TREE ref "$L1" "$L2" "$L3" "$L4" > "$TMP/ref4.json"
$TREE ref "$L1" "$L2" "$L3" > "$TMP/ref3.json"

check "list exports" bash -c "
    nbdkit -U - -r '$PLUGIN' '$IMG' index=none --run 'nbdinfo --list --json \"\$uri\"' > '$TMP/list.json'"
check "exports: \"\", flat, layer/0..2 and digests; layer/3 (hard link into a lower layer) is not offered" \
    python3 - "$TMP/list.json" <<'PY'
import json, sys
names = [e["export-name"] for e in json.load(open(sys.argv[1]))["exports"]]
assert names[:5] == ["", "flat", "layer/0", "layer/1", "layer/2"], names
assert len(names) == 8 and all(n.startswith("sha256:") for n in names[5:]), names
PY
check "flat export via nbdcopy" export_copy "$TMP/flat.sqfs" "" "$IMG" index=none \
    stats-file="$TMP/stats-layout.json"
check "flat export = soci-nbd mkfs, byte for byte" cmp "$TMP/flat.sqfs" "$TMP/ref-flat.sqfs"
for n in 0 1 2; do
    check "layer/$n = soci-nbd mkfs --layer" bash -c "
        nbdkit -U - -r '$PLUGIN' image='$IMG' index=none -e layer/$n \
            --run 'nbdcopy \"\$uri\" \"$TMP/l$n.sqfs\"' &&
        cmp '$TMP/l$n.sqfs' '$TMP/ref-l$n.sqfs'"
done
D1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][1]["digest"])' \
     "$LAY/blobs/sha256/$(cut -d: -f2 "$TMP/layout.digest")")
check "the layer digest export = layer/1" bash -c "
    nbdkit -U - -r '$PLUGIN' '$IMG' index=none -e '$D1' \
        --run 'nbdcopy \"\$uri\" -' | cmp - '$TMP/l1.sqfs'"
# open_fails NAME PATTERN: opening export NAME fails, the server says why.
open_fails() {
    ! nbdkit -U - -r "$PLUGIN" "$IMG" index=none -e "$1" --run 'nbdinfo "$uri"' \
        > /dev/null 2> "$TMP/open.err" &&
    grep -q "soci.*error: $2" "$TMP/open.err"
}
check "layer/3: open fails naming the hard link into a lower layer" \
    open_fails layer/3 "export 'layer/3' is not available: .*hard link 'l4/tool-link'"
check "unknown export: open fails" open_fails nope "no export 'nope'"
check "stats-file: no index, layers fetched whole" bash -c "
    test \"\$(json_get '$TMP/stats-layout.json' index_source)\" = none &&
    test \"\$(json_get '$TMP/stats-layout.json' whole_layer_bytes_fetched)\" = \
         $(( $(stat -c %s "$L1") + $(stat -c %s "$L2") + $(stat -c %s "$L3") + $(stat -c %s "$L4") ))"

rm -rf "$TMP/out"
check "unsquashfs extracts the flat export" \
    unsquashfs -q -n -no-xattrs -d "$TMP/out" "$TMP/flat.sqfs"
$TREE scan "$TMP/out" > "$TMP/unsq.json"
check "flat export tree = OCI-apply reference" \
    $TREE cmp "$TMP/ref4.json" "$TMP/unsq.json" --no-xattrs --no-link-mtime
rm -rf "$TMP/out"

mnt() {
    mkdir -p "$3"
    mount -t "$1" -o "$4" "$2" "$3" && MOUNTS="$3 $MOUNTS"
}
if [ "$(id -u)" -eq 0 ] && command -v losetup > /dev/null; then
    check "kernel: mount the flat export" mnt squashfs "$TMP/flat.sqfs" "$TMP/mflat" loop,ro
    $TREE scan "$TMP/mflat" > "$TMP/kflat.json"
    check "kernel flat tree = reference (with xattrs)" \
        $TREE cmp "$TMP/ref4.json" "$TMP/kflat.json"
    for n in 0 1 2; do
        mnt squashfs "$TMP/l$n.sqfs" "$TMP/m$n" loop,ro
    done
    check "kernel: overlay lowerdir=layer/2:layer/1:layer/0" \
        mnt overlay overlay "$TMP/merged" "lowerdir=$TMP/m2:$TMP/m1:$TMP/m0"
    $TREE scan "$TMP/merged" > "$TMP/merged.json"
    check "overlay of layer exports = reference of 3 layers (with xattrs)" \
        $TREE cmp "$TMP/ref3.json" "$TMP/merged.json"
else
    echo "# not root: kernel mounts skipped"
fi

# ---- 2. a registry with SOCI indexes -------------------------------------
reg_start R || { echo "Bail out! registry did not start"; exit 1; }
for l in "$L1" "$L2" "$L3"; do
    "$SN" ztoc create -q -s 64K -o "$l.ztoc" "$l" ||
        { echo "Bail out! ztoc create $l"; exit 1; }
done
eval "$($IMGPY push "$R_URL" test/img "$L1" "$L2" "$L3" "$L4" \
        --ztoc "$L1=$L1.ztoc" --ztoc "$L2=$L2.ztoc" --ztoc "$L3=$L3.ztoc")" ||
    { echo "Bail out! push failed"; exit 1; }
REF=$R_HOST/test/img

# stats_ok FILE PYTHON-EXPR: the expression holds for the stats JSON (s).

for v in "v1 $REF:v1 v1 $IDX1" "v2 $REF:v2 v2 $IDX2" \
         "explicit $REF:v1 explicit $IDX2" "digest $REF@$MAN v1 $IDX1"; do
    set -- $v
    extra=""
    [ "$1" = explicit ] && extra="index=$4"
    [ "$3" = v1 ] && extra="soci-v1=true"
    check "$1: flat export over the registry" \
        export_copy "$TMP/r-$1.sqfs" "" "$2" $extra stats-file="$TMP/st-$1.json"
    check "$1: same bytes as from the layout" cmp "$TMP/r-$1.sqfs" "$TMP/flat.sqfs"
    check "$1: index $4 found ($3); layers 0-2 lazy, layer 3 fetched whole" \
        stats_ok "$TMP/st-$1.json" "s['index_source'] == '$3' and s['index'] == '$4' and \
            [l['lazy'] for l in s['layers']] == [True, True, True, False] and \
            s['whole_layer_bytes_fetched'] == $(stat -c %s "$L4") and \
            s['spans_fetched'] == s['spans_total'] == s['spans_verified'] and s['spans_failed'] == 0"
done
# Index trust (lib/soci/index-find.h): v1 discovery is opt-in; a v1 index must
# name the manifest as its subject; referrers never come from a mirror.
check "v1 index not used without soci-v1=true, and the stats say why" bash -c "
    nbdkit -U - -r '$PLUGIN' '$REF:v1' stats-file='$TMP/st-nov1.json' --run true &&
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(not (s[\"index\"] is None and s[\"index_source\"] == \"none\" and \"not enabled\" in s[\"index_reason\"]))' '$TMP/st-nov1.json'"
check "v2: the stats say the annotation chose the index" stats_ok "$TMP/st-v2.json" \
    "'annotation' in s['index_reason']"
# forge REPO TAG-OF-MANIFEST KIND: push a v1 index for the manifest that
# has no subject (nosubject) or another manifest's (othersubject), and
# point the referrers fallback tag at it alone.
forge() {
    python3 - "$R_URL" "$1" "$2" "$3" "$top_srcdir/tests/helpers" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[5])
pi = __import__("plugin-image")
url, repo, tag, kind = sys.argv[1:5]
mdig = pi.digest(pi.get_manifest(url, repo, tag))
subject = None if kind == "nosubject" else {
    "mediaType": pi.OCI_M, "digest": "sha256:" + "0" * 64, "size": 1}
idx = pi.soci_index(pi.V1, [], subject)
d = pi.push_manifest(url, repo, pi.digest(idx), idx, pi.OCI_M)
refs = {"schemaVersion": 2, "mediaType": pi.OCI_I, "manifests": [
    {"mediaType": pi.OCI_M, "digest": d, "size": len(idx), "artifactType": pi.V1}]}
pi.push_manifest(url, repo, "sha256-" + mdig[7:], pi.jdump(refs), pi.OCI_I)
PY
}
for kind in nosubject othersubject; do
    $IMGPY push "$R_URL" test/$kind "$L1" "$L2" "$L3" "$L4" \
        --ztoc "$L1=$L1.ztoc" > /dev/null && forge test/$kind v1 $kind ||
        { echo "Bail out! forged index push failed"; exit 1; }
done
check_fails "a v1 referrer without a subject is refused" \
    "(v1) has no subject: it is not bound to image manifest" \
    nbdkit -U - -r "$PLUGIN" "$R_HOST/test/nosubject:v1" soci-v1=true --run true
check_fails "a v1 referrer whose subject is another manifest is refused" \
    "belongs to manifest sha256:0000" \
    nbdkit -U - -r "$PLUGIN" "$R_HOST/test/othersubject:v1" soci-v1=true --run true
# A mirror that offers a referrer the registry does not have: not used.
reg_start MI || { echo "Bail out! mirror registry did not start"; exit 1; }
$IMGPY push "$MI_URL" test/mirrored "$L1" "$L2" "$L3" "$L4" --ztoc "$L1=$L1.ztoc" > /dev/null &&
$IMGPY push "$R_URL" test/mirrored "$L1" "$L2" "$L3" "$L4" --ztoc "$L1=$L1.ztoc" > /dev/null &&
python3 - "$R_URL" "$top_srcdir/tests/helpers" <<'PY' || { echo "Bail out! mirror setup failed"; exit 1; }
import sys
sys.path.insert(0, sys.argv[2])
pi = __import__("plugin-image")
url = sys.argv[1]
mdig = pi.digest(pi.get_manifest(url, "test/mirrored", "v1"))
empty = {"schemaVersion": 2, "mediaType": pi.OCI_I, "manifests": []}
pi.push_manifest(url, "test/mirrored", "sha256-" + mdig[7:], pi.jdump(empty), pi.OCI_I)
PY
check "referrers are never taken from a mirror" bash -c "
    nbdkit -U - -r '$PLUGIN' '$R_HOST/test/mirrored:v1' soci-v1=true mirror='$MI_URL' \
        stats-file='$TMP/st-mir.json' --run true &&
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(not (s[\"index\"] is None and \"no v1 index\" in s[\"index_reason\"]))' '$TMP/st-mir.json'"
check "the mirror did serve the image's blobs (it was used)" \
    grep -q "GET /v2/test/mirrored/blobs/" "$MI_LOG"
never_asked_referrers() { ! grep -E '"(GET|HEAD) [^"]*(manifests/sha256-|/referrers/)' "$1"; }
check "and was never asked for referrers" never_asked_referrers "$MI_LOG"
check "index=none: no index, every layer whole" bash -c "
    nbdkit -U - -r '$PLUGIN' '$REF:v2' index=none stats-file='$TMP/st-none.json' \
        --run 'nbdcopy \"\$uri\" -' | cmp - '$TMP/flat.sqfs'"
check "index=none: stats" stats_ok "$TMP/st-none.json" \
    "s['index'] is None and s['spans_total'] == 0 and s['whole_layer_bytes_fetched'] > 0"
# stats-file never writes through a symlink: not at its path (replaced by
# a new file), not at a temporary name next to it (the old FILE.tmp).
echo victim > "$TMP/victim"
echo victim2 > "$TMP/victim2"
ln -s "$TMP/victim" "$TMP/st-link.json"
ln -s "$TMP/victim2" "$TMP/st-link.json.tmp"
check "stats-file at a symlink: the server runs" bash -c "
    nbdkit -U - -r '$PLUGIN' '$REF:v2' stats-file='$TMP/st-link.json' \
        --run 'nbdinfo \"\$uri\" > /dev/null'"
check "... the files the symlinks point at are untouched" bash -c "
    [ \"\$(cat '$TMP/victim')\" = victim ] && [ \"\$(cat '$TMP/victim2')\" = victim2 ]"
check "... stats-file is now a regular file with the stats, no temporary left" bash -c "
    [ -f '$TMP/st-link.json' ] && [ ! -L '$TMP/st-link.json' ] &&
    python3 -c 'import json,sys; json.load(open(sys.argv[1]))' '$TMP/st-link.json' &&
    [ -z \"\$(ls '$TMP' | grep '^st-link.json.' | grep -v '^st-link.json.tmp\$')\" ]"
check "platform=linux/arm64 from an index" bash -c "
    nbdkit -U - -r '$PLUGIN' '$REF:multi' platform=linux/arm64 \
        --run 'nbdcopy \"\$uri\" -' | cmp - '$TMP/flat.sqfs'"
check "every layer export over the registry = mkfs --layer" bash -c "
    for n in 0 1 2; do
        nbdkit -U - -r '$PLUGIN' '$REF:v2' -e layer/\$n \
            --run 'nbdcopy \"\$uri\" -' | cmp - '$TMP/ref-l'\$n'.sqfs' || exit 1
    done"

# Laziness, through a long-running server: metadata costs no span; one
# small file costs a few spans of its layer.
SOCK=$TMP/lazy.sock
ST=$TMP/st-lazy.json
check "server with the v2 image" plugin_start "$SOCK" "$REF:v2" stats-file="$ST"
URI="nbd+unix:///?socket=$SOCK"
# Superblock: bytes_used at 40, inode_table_start at 64 (little endian).
"$NBDREAD" "$URI" 0 96 > "$TMP/sb"
META=$(python3 -c 'import struct,sys; b=open(sys.argv[1],"rb").read(); print(struct.unpack_from("<Q",b,64)[0], struct.unpack_from("<Q",b,40)[0])' "$TMP/sb")
set -- $META
check "read superblock and all metadata ($(( $2 - $1 )) bytes)" bash -c "
    cp '$TMP/sb' '$TMP/meta.sqfs' && truncate -s \$(stat -c %s '$TMP/flat.sqfs') '$TMP/meta.sqfs' &&
    '$NBDREAD' '$URI' $1 $(( $2 - $1 )) |
        dd of='$TMP/meta.sqfs' bs=1M seek=$1 oflag=seek_bytes conv=notrunc status=none"
check "listing the tree from metadata alone (unsquashfs -lls) matches" bash -c "
    diff <(unsquashfs -lls '$TMP/meta.sqfs') <(unsquashfs -lls '$TMP/flat.sqfs')"
plugin_stop "$SOCK"
check "metadata read fetched zero spans" stats_ok "$ST" \
    "s['spans_fetched'] == 0 and s['bytes_fetched'] == 0"
check "server again" plugin_start "$SOCK" "$REF:v2" stats-file="$ST"
F=/data/size-4097
set -- $(rdsquashfs -s "$F" "$TMP/meta.sqfs" | sed -n 's/^Blocks start: //p;s/^File size: //p')
check "read one small file ($F) through the export" bash -c "
    '$NBDREAD' '$URI' $2 $1 | cmp - <(rdsquashfs -c '$F' '$TMP/flat.sqfs')"
plugin_stop "$SOCK"
check "one small file: a few spans of one layer, far from all" stats_ok "$ST" \
    "1 <= s['spans_fetched'] <= 3 and s['spans_total'] >= 20 and \
     s['layers'][0]['spans_fetched'] == s['spans_fetched'] and s['headers_checked'] >= 1"
check "server again" plugin_start "$SOCK" "$REF:v2" stats-file="$ST"
F2=/data/size-300000
set -- $(rdsquashfs -s "$F2" "$TMP/meta.sqfs" | sed -n 's/^Blocks start: //p;s/^File size: //p')
check "stats-file follows a client that stays connected (within ~1 s)" bash -c "
    n=\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"spans_fetched\"])' '$ST')
    NBD_READ_HOLD=4 '$NBDREAD' '$URI' $2 $1 > '$TMP/held' & p=\$!
    sleep 2.5
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s[\"spans_fetched\"] > int(sys.argv[2]) else 1)' '$ST' \$n
    r=\$?; kill \$p 2>/dev/null; wait \$p; exit \$r"
plugin_stop "$SOCK"

# NBD_CMD_CACHE prefetches the spans; the read then fetches nothing more.
check "server again, -D soci.verbose=1" plugin_start "$SOCK" -v -D soci.verbose=1 \
    "$REF:v2" stats-file="$ST"
F=/data/size-131073
set -- $(rdsquashfs -s "$F" "$TMP/meta.sqfs" | sed -n 's/^Blocks start: //p;s/^File size: //p')
check "NBD_CMD_CACHE of one file" "$NBDREAD" --cache "$URI" "$2" "$1"
check "cache: its spans were fetched" stats_ok "$ST" "s['spans_fetched'] >= 2"
cp "$ST" "$TMP/st-cached.json"
check "then reading it matches" bash -c "
    '$NBDREAD' '$URI' $2 $1 | cmp - <(rdsquashfs -c '$F' '$TMP/flat.sqfs')"
plugin_stop "$SOCK"
N=$(json_get "$TMP/st-cached.json" spans_fetched)
check "the read after the cache fetched no span" stats_ok "$ST" "s['spans_fetched'] == $N"
check "soci.verbose logs span fetches" grep -q 'soci: layer 0: span [0-9]* fetched' "$SOCK.log"

# cache-dir: the layer without a ztoc is downloaded once and reused.
check "cache-dir: first run" bash -c "
    nbdkit -U - -r '$PLUGIN' '$REF:v2' cache-dir='$TMP/cache' stats-file='$TMP/st-c1.json' \
        --run 'nbdcopy \"\$uri\" -' | cmp - '$TMP/flat.sqfs'"
check "cache-dir: the whole layer is stored under its digest" \
    cmp "$TMP/cache/blobs/sha256/$(sha "$L4")" "$L4"
check "cache-dir: second run" bash -c "
    nbdkit -U - -r '$PLUGIN' '$REF:v2' cache-dir='$TMP/cache' stats-file='$TMP/st-c2.json' \
        --run 'nbdcopy \"\$uri\" -' | cmp - '$TMP/flat.sqfs'"
check "cache-dir: second run downloads no whole layer" stats_ok "$TMP/st-c2.json" \
    "s['whole_layer_bytes_fetched'] == 0"
echo garbage > "$TMP/cache/blobs/sha256/$(sha "$L4")"
check "cache-dir: a damaged copy is fetched again" bash -c "
    nbdkit -U - -r '$PLUGIN' '$REF:v2' cache-dir='$TMP/cache' stats-file='$TMP/st-c3.json' \
        --run 'nbdcopy \"\$uri\" -' | cmp - '$TMP/flat.sqfs' &&
    cmp '$TMP/cache/blobs/sha256/$(sha "$L4")' '$L4'"

# ---- 3. integrity: corrupted spans ----------------------------------------
fault_start F "$R_URL" || { echo "Bail out! fault proxy did not start"; exit 1; }
D3=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][2]["digest"])' \
     "$LAY/blobs/sha256/$(cut -d: -f2 "$TMP/layout.digest")")
fault_set F "{\"rules\":[{\"match\":{\"method\":\"GET\",\"path\":\"$D3\",\"range\":true},\"action\":\"corrupt\"}]}"
check "server through the fault proxy" plugin_start "$SOCK" "$F_HOST/test/img:v2" \
    stats-file="$ST"
set -- $(rdsquashfs -s /d/gone "$TMP/meta.sqfs" | sed -n 's/^Blocks start: //p;s/^File size: //p')
check_fails "a file of the corrupted layer (3): EIO" "Input/output error\|errno 5" \
    "$NBDREAD" "$URI" "$2" "$1"
set -- $(rdsquashfs -s "$F" "$TMP/meta.sqfs" | sed -n 's/^Blocks start: //p;s/^File size: //p')
check "a file of another layer reads fine" bash -c "
    '$NBDREAD' '$URI' $2 $1 | cmp - <(rdsquashfs -c '$F' '$TMP/flat.sqfs')"
plugin_stop "$SOCK"
check "the server logged the span digest mismatch" grep -qi 'digest\|mismatch\|verif' "$SOCK.log"
check "stats: failed spans counted" stats_ok "$ST" "s['spans_failed'] >= 1"
check "the proxy corrupted range responses" grep -q '"action": "corrupt"' "$F_LOG"

# ---- 4. startup errors ----------------------------------------------------
# nbdkit prints the plugin's error line; check_fails wants it and at most
# one more line.
check_fails "unknown image tag" "no-such-tag" \
    nbdkit -U - -r "$PLUGIN" "$REF:no-such-tag" --run true
check_fails "unknown repository" "test/nope" \
    nbdkit -U - -r "$PLUGIN" "$R_HOST/test/nope:v1" --run true
check_fails "unknown platform lists the available ones" "linux/s390x.*linux/amd64" \
    nbdkit -U - -r "$PLUGIN" "$REF:multi" platform=linux/s390x --run true
check_fails "explicit index that is not a SOCI index" "is not a SOCI index" \
    nbdkit -U - -r "$PLUGIN" "$REF:v1" "index=$MAN" --run true
check_fails "bad index= value" "index=bogus" \
    nbdkit -U - -r "$PLUGIN" "$REF:v1" index=bogus --run true
check_fails "missing image" "image parameter" nbdkit -U - -r "$PLUGIN" --run true
mkdir -p "$TMP/zlayout"
printf 'not really zstd' > "$TMP/layers/Z.tar.zst"
$IMGPY layout "$TMP/zlayout" img "$L1" "$TMP/layers/Z.tar.zst" > /dev/null
check_fails "a zstd layer that is not zstd: named, refused" \
    "layer 1 (sha256:[0-9a-f]*): zstd: " \
    nbdkit -U - -r "$PLUGIN" "oci-layout:$TMP/zlayout:img" --run true
reg_start A --htpasswd alice s3cret || { echo "Bail out! registry did not start"; exit 1; }
echo wrong > "$TMP/pw"
check_fails "bad credentials" "authentication failed" \
    nbdkit -U - -r "$PLUGIN" "$A_HOST/test/img:v1" username=alice "password=+$TMP/pw" --run true
check "--help documents every key" bash -c "
    nbdkit '$PLUGIN' --help > '$TMP/help.txt' &&
    for k in image platform index cache-dir cache-size username password auth-file \
             tls-verify cacert mirror plain-http stats-file; do
        grep -q \"^\$k=\" '$TMP/help.txt' || { echo \"missing \$k\"; exit 1; }
    done"
check "--dump-plugin prints soci_version" bash -c \
    "nbdkit --dump-plugin '$PLUGIN' | grep -q '^soci_version='"

finish
