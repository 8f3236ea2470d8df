#!/bin/bash
# soci-nbd tests: zstd:chunked layers served lazily from their own manifest
# (docs/zstd-chunked.md).  The image is made by skopeo
# (--dest-compress-format zstd:chunked, containers/storage's writer), as
# podman and buildah push it.
#  1. a 4-layer image (tests/helpers/mkfs-tree.py gen: every file type,
#     xattrs, whiteouts, hard links, long names) pushed zstd:chunked to a
#     local registry: every layer served from its manifest (stats, inspect
#     --serving); the flat export's tree = `umoci unpack` of the same image
#     gzip-compressed; every export has the same tree as with
#     zstd-chunked=false (the layers fetched whole and decompressed);
#  2. through nbdfuse: describing the whole tree fetches no chunk; reading
#     a 1 MiB file at its place in the export fetches exactly its chunks;
#  3. every byte verified: a flipped bit in a chunk is EIO; in the
#     manifest, or a manifest checksum annotation that does not match, the
#     server refuses to start in one line;
#  4. an image built and pushed zstd:chunked by buildah: served lazily, the
#     same tree as served whole, the files of the tree copied in.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
NBDREAD=$top_builddir/tests/helpers/nbd-read
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
TREE="python3 $top_srcdir/tests/helpers/mkfs-tree.py"
OCIPY="python3 $top_srcdir/tests/helpers/oci-layout.py"

if [ "$(id -u)" -ne 0 ]; then
    echo "Bail out! tests/plugin/zstd-chunked.sh must run as root (umoci)"
    exit 1
fi
if [ ! -c /dev/fuse ]; then
    echo "1..0 # SKIP no /dev/fuse on this machine"
    exit 0
fi
nbdkit_asan_wrapper "$PLUGIN"
require_tools nbdkit nbdcopy nbdfuse skopeo umoci sqfs2tar rdsquashfs zstd buildah
[ -f "$PLUGIN" ] || { echo "Bail out! $PLUGIN not built"; exit 1; }
MOUNTS="" PIDS="" NBDKIT_PIDS=""
trap 'mounts_cleanup; srv_cleanup' EXIT

reg_start R || { echo "Bail out! registry did not start"; exit 1; }
fault_start F "$R_URL" || { echo "Bail out! fault proxy did not start"; exit 1; }
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$TMP/policy.json"

# ---- the image ----------------------------------------------------------------
mkdir -p "$TMP/gen"
$TREE gen "$TMP/gen" > /dev/null
for l in L1 L2 L3 L4; do $OCIPY strip "$TMP/gen/$l.tar" "$TMP/$l.tar"; done
gzip -n "$TMP/L1.tar" "$TMP/L3.tar"
$OCIPY layout "$TMP/lay" img "$TMP/L1.tar.gz" "$TMP/L2.tar" "$TMP/L3.tar.gz" "$TMP/L4.tar"
check "umoci unpack of the image (gzip and plain layers)" umoci_tree "$TMP/lay" "$TMP/u.json"
# skopeo 1.9 hangs on a layer whose tar has no end-of-archive blocks;
# python's tarfile writes them, and the timeout makes a hang a failure.
check "skopeo pushes it zstd:chunked" timeout 300 \
    skopeo --policy "$TMP/policy.json" copy -q --dest-tls-verify=false \
        --dest-compress-format zstd:chunked "oci:$TMP/lay:img" "docker://$R_HOST/test/zc:v1"
check "... and into an OCI layout" timeout 300 \
    skopeo --policy "$TMP/policy.json" copy -q \
        --dest-compress-format zstd:chunked "oci:$TMP/lay:img" "oci:$TMP/zlay:img"
MAN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"][7:])' "$TMP/zlay/index.json")
check "its layers are tar+zstd with the manifest annotations" python3 - "$TMP/zlay/blobs/sha256/$MAN" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
assert len(m["layers"]) == 4
for l in m["layers"]:
    assert l["mediaType"].endswith("tar+zstd"), l
    a = l.get("annotations", {})
    assert "io.containers.zstd-chunked.manifest-checksum" in a, l
    assert "io.containers.zstd-chunked.manifest-position" in a, l
PY
IMG=$F_HOST/test/zc:v1
EXPORTS="flat layer/0 layer/1 layer/2"   # (layer 3 hard-links into 2: no export)

# ---- 1. served from the manifest, the same tree ---------------------------------
check "every export, lazily" export_trees "$IMG" "$TMP/lazy" "$EXPORTS"
check "stats: every layer lazy from its zstd:chunked manifest, every chunk verified" \
    stats_ok "$TMP/lazy/st.json" "(
all(l['lazy'] and l.get('zstd_chunked_manifest') for l in s['layers']) and
s['spans_failed'] == 0 and s['spans_fetched'] == s['spans_verified'] > 0 and
s['whole_layer_bytes_fetched'] == 0)"
check "inspect --serving: lazy-zstd-chunked, 4 times" bash -c "
    '$SN' inspect --serving '$IMG' > '$TMP/insp' &&
    [ \$(grep -c '^served sha256:[0-9a-f]* lazy-zstd-chunked\$' '$TMP/insp') = 4 ] ||
        { cat '$TMP/insp' >&2; exit 1; }"
$OCIPY umoci-norm "$TMP/lazy/t.json" "$TMP/lazy/flat.json"
check "the flat export's tree = umoci unpack (bytes, types, modes, owners, mtimes, links, devices, xattrs)" \
    $TREE cmp "$TMP/u.json" "$TMP/lazy/flat.json"
check "every export, with zstd-chunked=false (layers fetched whole)" \
    export_trees "$IMG" "$TMP/whole" "$EXPORTS" zstd-chunked=false
check "... was served whole" stats_ok "$TMP/whole/st.json" \
    "not any(l['lazy'] for l in s['layers']) and s['whole_layer_bytes_fetched'] > 0"
# containers/storage's manifest leaves out xattrs whose value is empty
# (docs/zstd-chunked.md): compared without them (umoci-norm drops them).
check "the flat and every layer export: the same tree either way (empty xattr values aside)" bash -c "
    for f in '$TMP'/lazy/t*.json; do
        $OCIPY umoci-norm \"\$f\" '$TMP/a.json' && $OCIPY umoci-norm '$TMP/whole/'\${f##*/} '$TMP/b.json' &&
        $TREE cmp '$TMP/a.json' '$TMP/b.json' || exit 1
    done"

# ---- 2. only what is read ---------------------------------------------------------
SOCK=$TMP/s.sock
lazy_reads_checks "$SOCK" "$IMG" "$F_LOG" data/size-1048583 1048583 "$TMP/L1.tar.gz"
START=$PATH_START
L1D=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"])' "$TMP/zlay/blobs/sha256/$MAN")
# The chunks of that file, from L1's manifest (zstd -d): what the read may
# fetch.
NCH=$(python3 - "$TMP/zlay/blobs/sha256/$MAN" "$TMP/zlay/blobs/sha256/${L1D#sha256:}" <<'PY'
import json, subprocess, sys
l = json.load(open(sys.argv[1]))["layers"][0]
off, clen, _, _ = map(int, l["annotations"]["io.containers.zstd-chunked.manifest-position"].split(":"))
b = open(sys.argv[2], "rb").read()
toc = json.loads(subprocess.run(["zstd", "-dc"], input=b[off:off + clen], capture_output=True,
                                check=True).stdout)
print(len([e for e in toc["entries"] if e["name"].endswith("data/size-1048583") and e.get("offset")]))
PY
)
check "... fetched exactly its $NCH chunks of L1, nothing of the other layers" stats_ok "$SOCK.json" "(
s['layers'][0]['spans_fetched'] == $NCH and s['spans_fetched'] == $NCH and
s['spans_failed'] == 0 and $NCH > 1)"

# ---- 3. every byte verified --------------------------------------------------------
check "server on the image" plugin_start "$SOCK" "$IMG" stats-file="$TMP/st3.json"
fault_corrupt F "$L1D"
check "a flipped bit in every chunk of L1: reading the file is EIO" bash -c "
    ! '$NBDREAD' 'nbd+unix:///?socket=$SOCK' '$START' 1048583 > '$TMP/big3' 2> '$TMP/e3' &&
    grep -q 'Input/output error' '$TMP/e3' || { cat '$TMP/e3' >&2; exit 1; }"
fault_set F '{"rules": []}'
plugin_stop "$SOCK"
check "... counted as failed chunks, the reason logged" bash -c "
    grep -q 'of $L1D: chunk [0-9]*: corrupt zstd frame\|chunk [0-9]* of $L1D: .*hash' '$SOCK.log' &&
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(not s[\"layers\"][0][\"spans_failed\"] > 0)' '$TMP/st3.json'"
fault_corrupt F "$L1D"
check_fails "a flipped bit in L1's manifest: refused start" \
    "layer 0 (sha256:[0-9a-f]*): zstd:chunked manifest: its checksum is sha256:[0-9a-f]*, the image manifest says .*(zstd-chunked=false serves the layer without its TOC)" \
    nbdkit -U - -r "$PLUGIN" "$IMG" --run true
fault_set F '{"rules": []}'
# The OCI layout with L1's checksum annotation changed (and the manifest's
# digest in index.json with it).
python3 - "$TMP/zlay" "$MAN" <<'PY'
import hashlib, json, os, sys
d, man = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(d, "blobs/sha256", man)))
m["layers"][0]["annotations"]["io.containers.zstd-chunked.manifest-checksum"] = "sha256:" + "0" * 64
b = json.dumps(m).encode()
h = hashlib.sha256(b).hexdigest()
open(os.path.join(d, "blobs/sha256", h), "wb").write(b)
i = json.load(open(os.path.join(d, "index.json")))
i["manifests"][0].update(digest="sha256:" + h, size=len(b))
json.dump(i, open(os.path.join(d, "index.json"), "w"))
PY
check_fails "a manifest checksum annotation that does not match: refused start" \
    "layer 0 (sha256:[0-9a-f]*): zstd:chunked manifest: its checksum is sha256:[0-9a-f]*, the image manifest says sha256:0000" \
    nbdkit -U - -r "$PLUGIN" "oci-layout:$TMP/zlay:img" --run true

# ---- 4. an image built and pushed by buildah ------------------------------------
mkdir -p "$TMP/broot"
tar -C "$TMP/broot" -xzf "$TMP/L1.tar.gz"
find "$TMP/broot" -name '.wh.*' -exec rm -rf {} +   # whiteouts in a layer mean something else
check "buildah: build an image of a tree and push it zstd:chunked" \
    buildah_push "$TMP/broot" zstd:chunked "$TMP/blay"
check "its layer served lazily from its manifest" export_trees "oci-layout:$TMP/blay:img" \
    "$TMP/blazy" flat
check "... (stats: lazy-zstd-chunked, chunks verified)" stats_ok "$TMP/blazy/st.json" \
    "s['layers'][0].get('zstd_chunked_manifest') and s['spans_failed'] == 0 and s['spans_verified'] > 0"
check "... the same tree as served whole (zstd-chunked=false)" bash -c "
    $(declare -f export_trees); PLUGIN='$PLUGIN' top_srcdir='$top_srcdir'
    export_trees 'oci-layout:$TMP/blay:img' '$TMP/bwhole' flat zstd-chunked=false &&
    $OCIPY umoci-norm '$TMP/blazy/t.json' '$TMP/a.json' &&
    $OCIPY umoci-norm '$TMP/bwhole/t.json' '$TMP/b.json' && $TREE cmp '$TMP/a.json' '$TMP/b.json'"
check "... and the files of the tree copied in (bytes, modes, links)" \
    tree_has_files "$TMP/broot" "$TMP/a.json"

finish
