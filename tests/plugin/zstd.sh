#!/bin/bash
# soci-nbd tests: zstd layers (`…tar+zstd`), served whole: downloaded,
# checked against their digest, decompressed as they stream in, and
# indexed in memory like an uncompressed tar layer.
#  1. an image made zstd by skopeo (--dest-compress-format zstd) serves
#     the same flat and per-layer exports as its gzip twin, byte for byte;
#     the stats count the zstd blobs as fetched whole;
#  2. with cache-dir the compressed blob is kept and, at the next start,
#     re-hashed and decompressed again instead of fetched; same bytes;
#  3. a layer of two zstd frames (what `zstd` on concatenated input or
#     chunked writers make) is one stream;
#  4. a layer that ends inside a frame, and one that would expand more
#     than 256 times, are refused in one line naming the layer;
#  5. an image built and pushed zstd by buildah is served with the files
#     of the tree copied in.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
TREE="python3 $top_srcdir/tests/helpers/mkfs-tree.py"
IMGPY="python3 $top_srcdir/tests/helpers/plugin-image.py"

nbdkit_asan_wrapper "$PLUGIN"
require_tools nbdkit nbdcopy skopeo zstd buildah sqfs2tar
[ -f "$PLUGIN" ] || { echo "Bail out! $PLUGIN not built"; exit 1; }
NBDKIT_PIDS=""
trap 'for p in $NBDKIT_PIDS; do kill "$p" 2>/dev/null; done; srv_cleanup' EXIT

reg_start R || { echo "Bail out! registry did not start"; exit 1; }
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$TMP/policy.json"

mkdir -p "$TMP/layers"
$TREE gen "$TMP/layers" > /dev/null
L1=$TMP/layers/L1.tar L2=$TMP/layers/L2.tar
$IMGPY layout "$TMP/lay" img "$L1" "$L2" > /dev/null || { echo "Bail out! layout"; exit 1; }
push() {  # TAG FORMAT (each to a repository of its own: skopeo reuses a
          # blob it finds in the repository, whatever its compression)
    skopeo --policy "$TMP/policy.json" copy -q --dest-tls-verify=false \
        --dest-compress-format "$2" "oci:$TMP/lay:img" "docker://$R_HOST/test/$1:v1"
}
check "skopeo pushes the image zstd-compressed" push zs zstd
check "skopeo pushes it gzip-compressed" push gz gzip
python3 - "$R_URL" > "$TMP/zman.json" <<'PY'
import sys, urllib.request
rq = urllib.request.Request(sys.argv[1] + '/v2/test/zs/manifests/v1',
                            headers={'Accept': 'application/vnd.oci.image.manifest.v1+json'})
sys.stdout.buffer.write(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(rq).read())
PY
check "the zstd image's layers are tar+zstd" stats_ok "$TMP/zman.json" \
    "[l['mediaType'].endswith('tar+zstd') for l in s['layers']] == [True, True]"
ZSIZE=$(python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(open(sys.argv[1]))["layers"]))' "$TMP/zman.json")

copy_all() {  # IMAGE DIR [KEY=VALUE...]: the flat and per-layer exports
    local img=$1 dir=$2 e; shift 2
    mkdir -p "$dir"
    for e in "" layer/0 layer/1; do
        nbdkit -U - -r "$PLUGIN" "$img" "$@" \
            --run "nbdcopy \"nbd+unix:///$e?socket=\$unixsocket\" '$dir/${e//\//-}.img'" ||
            return 1
    done
}
same_exports() { for f in "$1"/*.img; do cmp "$f" "$2/${f##*/}" || return 1; done; }

# ---- 1. served like its gzip twin ---------------------------------------------
check "the gzip image's exports" copy_all "$R_HOST/test/gz:v1" "$TMP/gz"
check "the zstd image's exports" copy_all "$R_HOST/test/zs:v1" "$TMP/zs" \
    stats-file="$TMP/st.json"
check "byte-identical, flat and per layer" same_exports "$TMP/gz" "$TMP/zs"
check "stats: both layers fetched whole ($ZSIZE bytes), nothing lazily" stats_ok "$TMP/st.json" \
    "s['whole_layer_bytes_fetched'] == $ZSIZE and s['bytes_fetched'] == 0"

check "inspect --serving: both layers served whole" bash -c "
    '$SOCI_NBD' inspect --serving '$R_HOST/test/zs:v1' > '$TMP/insp' &&
    [ \$(grep -c '^served sha256:[0-9a-f]* whole\$' '$TMP/insp') = 2 ]"

# ---- 2. the cache keeps the compressed blob -------------------------------------
check "cache-dir: first start" copy_all "$R_HOST/test/zs:v1" "$TMP/c1" cache-dir="$TMP/cache"
check "... the compressed blobs are kept, named by their digest" bash -c "
    for f in '$TMP'/cache/blobs/sha256/*; do
        [ \"sha256:\$(sha256sum < \"\$f\" | cut -d' ' -f1)\" = \"sha256:\${f##*/}\" ] || exit 1
    done; [ \$(ls '$TMP/cache/blobs/sha256' | wc -l) = 2 ]"
check "cache-dir: second start, nothing fetched whole" copy_all "$R_HOST/test/zs:v1" "$TMP/c2" \
    cache-dir="$TMP/cache" stats-file="$TMP/st2.json"
check "... same bytes" same_exports "$TMP/gz" "$TMP/c2"
check "... (stats)" stats_ok "$TMP/st2.json" "s['whole_layer_bytes_fetched'] == 0"

# ---- 3. several frames ------------------------------------------------------------
head -c 100000 "$L1" | zstd -q -c > "$TMP/two.tar.zst"
tail -c +100001 "$L1" | zstd -q -c >> "$TMP/two.tar.zst"
$IMGPY layout "$TMP/lay2" img "$TMP/two.tar.zst" "$L2" > /dev/null
check "a layer of two zstd frames" copy_all "oci-layout:$TMP/lay2:img" "$TMP/two"
check "... the same image" same_exports "$TMP/gz" "$TMP/two"

# ---- 4. refused -------------------------------------------------------------------
zstd -q -c "$L1" > "$TMP/full.zst"
head -c $(( $(stat -c %s "$TMP/full.zst") - 7 )) "$TMP/full.zst" > "$TMP/cut.tar.zst"
$IMGPY layout "$TMP/lay3" img "$TMP/cut.tar.zst" > /dev/null
check_fails "a layer that ends inside a frame" \
    "layer 0 (sha256:[0-9a-f]*): zstd: the layer ends inside a frame" \
    nbdkit -U - -r "$PLUGIN" "oci-layout:$TMP/lay3:img" --run true
head -c $((1 << 30)) /dev/zero | zstd -q -19 -c > "$TMP/bomb.tar.zst"
$IMGPY layout "$TMP/lay4" img "$TMP/bomb.tar.zst" > /dev/null
check_fails "a layer that expands more than 256 times ($(stat -c %s "$TMP/bomb.tar.zst") bytes to 1 GiB)" \
    "layer 0 (sha256:[0-9a-f]*): zstd layer expands past [0-9]* bytes: refused" \
    nbdkit -U - -r "$PLUGIN" "oci-layout:$TMP/lay4:img" --run true

# ---- 5. an image built and pushed zstd by buildah ---------------------------------
mkdir -p "$TMP/broot"
tar -C "$TMP/broot" -xf "$L1"
find "$TMP/broot" -name '.wh.*' -exec rm -rf {} +   # whiteouts in a layer mean something else
check "buildah: build an image of a tree and push it zstd" buildah_push "$TMP/broot" zstd "$TMP/blay"
check "its layer is tar+zstd" python3 - "$TMP/blay" <<'PY'
import json, os, sys
d = sys.argv[1]
i = json.load(open(os.path.join(d, "index.json")))
m = json.load(open(os.path.join(d, "blobs/sha256", i["manifests"][0]["digest"][7:])))
assert [l["mediaType"].endswith("tar+zstd") for l in m["layers"]] == [True], m
PY
check "served (whole, decompressed)" export_trees "oci-layout:$TMP/blay:img" "$TMP/bz" flat
check "... the files of the tree copied in (bytes, modes, links)" \
    tree_has_files "$TMP/broot" "$TMP/bz/t.json"

finish
