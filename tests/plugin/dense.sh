#!/bin/bash
# soci-nbd tests: the dense index (docs/dense-index.md), end to end against
# a real registry (distribution on 127.0.0.1) and a fault-injecting proxy.
#  1. "soci-nbd convert" writes it by default beside the SOCI index v2
#     (--no-dense: not): the image manifest names it, the image index lists
#     it, "index list" and "ztoc info" show it; the SOCI documents are
#     unchanged;
#  2. layers written by zlib levels 1/6/9, multi-member, full-flush, pigz
#     and Go's gzip (skopeo) serve byte-identical flat and per-layer
#     exports with and without it (dense=false), the ztocs are never
#     fetched with it, and a read in the middle of a layer fetches its
#     sparse window;
#  3. every byte is verified: a flipped bit in a sub-span or a window gives
#     EIO, in the table or the dense-index manifest a refused start.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
NBDREAD=$top_builddir/tests/helpers/nbd-read
IMGPY="python3 $top_srcdir/tests/helpers/plugin-image.py"

nbdkit_asan_wrapper "$PLUGIN"
require_tools nbdkit nbdcopy skopeo pigz
for f in "$PLUGIN" "$NBDREAD"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "Bail out! $f not built"; exit 1; }
done

NBDKIT_PIDS=""
trap 'for p in $NBDKIT_PIDS; do kill "$p" 2>/dev/null; done; srv_cleanup' EXIT


reg_start R || { echo "Bail out! registry did not start"; exit 1; }
fault_start F "$R_URL" || { echo "Bail out! fault proxy did not start"; exit 1; }
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$TMP/policy.json"

python3 "$top_srcdir/tests/helpers/dense-layers.py" "$TMP/layers" ||
    { echo "Bail out! layers"; exit 1; }
NAMES="z1 z6 z9 multi flush pigz go"
LAYERS=""
for n in $NAMES; do
    f=$TMP/layers/$n.tar.gz; [ -f "$f" ] || f=$TMP/layers/$n.tar
    LAYERS="$LAYERS $f"
done
# shellcheck disable=SC2086
$IMGPY layout "$TMP/lay" img $LAYERS > /dev/null &&
    skopeo --policy "$TMP/policy.json" copy -q --dest-tls-verify=false \
        --dest-compress-format gzip \
        "oci:$TMP/lay:img" "docker://$R_HOST/test/dense:v1" ||
    { echo "Bail out! push failed"; exit 1; }

# get manifest|blob REPO REF: straight from the registry.
get() {
    python3 - "$R_URL" "$@" <<'PY'
import sys, urllib.request
base, what, repo, ref = sys.argv[1:5]
kind = "manifests" if what == "manifest" else "blobs"
req = urllib.request.Request("%s/v2/%s/%s/%s" % (base, repo, kind, ref))
req.add_header("Accept", "application/vnd.oci.image.index.v1+json,"
               "application/vnd.oci.image.manifest.v1+json")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
sys.stdout.buffer.write(opener.open(req, timeout=10).read())
PY
}

# ---- 1. convert ---------------------------------------------------------------
check "convert (dense index by default)" bash -o pipefail -c \
    "'$SN' convert -q --min-layer-size 0 '$R_HOST/test/dense:v1' '$R_HOST/test/dense:soci' > '$TMP/x1'"
check "convert --no-dense" bash -o pipefail -c \
    "'$SN' convert -q --no-dense --min-layer-size 0 '$R_HOST/test/dense:v1' '$R_HOST/test/dense:plain' > '$TMP/x2'"
get manifest test/dense soci > "$TMP/idx.json"
get manifest test/dense plain > "$TMP/idx-plain.json"
# The image manifest, the SOCI index and the dense index of each.
docs() {
    python3 - "$1" <<'PY'
import json, sys
x = json.load(open(sys.argv[1]))
img = [m for m in x["manifests"] if "artifactType" not in m]
soci = [m for m in x["manifests"] if m.get("artifactType") == "application/vnd.amazon.soci.index.v2+json"]
dense = [m for m in x["manifests"] if m.get("artifactType") == "application/vnd.soci-nbd.dense-index.v1"]
print(img[0]["digest"], soci[0]["digest"] if soci else "-", dense[0]["digest"] if dense else "-")
PY
}
read -r IMG SOCI DENSE < <(docs "$TMP/idx.json")
read -r IMGP SOCIP DENSEP < <(docs "$TMP/idx-plain.json")
check "the image index lists the dense index (and --no-dense none)" \
    bash -c "[ '${DENSE:--}' != - ] && [ '${DENSEP:--}' = - ]"
check "the image manifest names it (io.soci-nbd.dense-index.digest)" bash -c "
    get() { python3 -c 'import sys,urllib.request as u; r=u.Request(sys.argv[1], headers={\"Accept\":\"application/vnd.oci.image.manifest.v1+json\"}); sys.stdout.buffer.write(u.build_opener(u.ProxyHandler({})).open(r).read())' \"\$1\"; }
    get '$R_URL/v2/test/dense/manifests/$IMG' | python3 -c '
import json, sys; m = json.load(sys.stdin); a = m[\"annotations\"]
assert a[\"io.soci-nbd.dense-index.digest\"] == \"$DENSE\", a
assert a[\"com.amazon.soci.index-digest\"] == \"$SOCI\", a'"
check "the SOCI index is the same with and without the dense index" \
    test "$SOCI" = "$SOCIP"
# What AWS soci reads of the image besides the SOCI index: the image index
# and the image manifest.  The dense index adds an annotation and an entry.
check "AWS soci downloads under 1 KiB more per image (manifest + index)" bash -c "
    get() { python3 -c 'import sys,urllib.request as u; r=u.Request(sys.argv[1], headers={\"Accept\":\"application/vnd.oci.image.manifest.v1+json\"}); sys.stdout.buffer.write(u.build_opener(u.ProxyHandler({})).open(r).read())' \"\$1\"; }
    a=\$(( \$(get '$R_URL/v2/test/dense/manifests/$IMG' | wc -c) + \$(wc -c < '$TMP/idx.json') ))
    b=\$(( \$(get '$R_URL/v2/test/dense/manifests/$IMGP' | wc -c) + \$(wc -c < '$TMP/idx-plain.json') ))
    echo \"# \$a bytes with the dense index, \$b without\"
    [ \$((a - b)) -gt 0 ] && [ \$((a - b)) -lt 1024 ]"
get manifest test/dense "$DENSE" > "$TMP/dense.json"
check "the dense index: a table and a windows blob per gzip layer" python3 -c "
import json; m = json.load(open('$TMP/dense.json'))
assert m['artifactType'] == 'application/vnd.soci-nbd.dense-index.v1'
t = [l for l in m['layers'] if l['mediaType'].endswith('table.v1+zstd')]
w = [l for l in m['layers'] if l['mediaType'].endswith('windows.v1')]
assert len(t) == len(w) == 7, (len(t), len(w))"
check "index list shows it" bash -o pipefail -c \
    "'$SN' index list '$R_HOST/test/dense:soci' | grep -q '^$DENSE dense '"
TABLE=$(python3 -c "import json; print(json.load(open('$TMP/dense.json'))['layers'][0]['digest'])")
get blob test/dense "$TABLE" > "$TMP/table"
check "ztoc info reads a dense table: many more sub-spans than SOCI spans" bash -c "
    '$SN' ztoc info '$TMP/table' > '$TMP/table.json' &&
    python3 -c '
import json; z = json.load(open(\"$TMP/table.json\"))
assert z[\"index\"] == \"dense\" and z[\"num_spans\"] >= 20, z[\"num_spans\"]
assert any(s.get(\"window_length\", 0) > 0 for s in z[\"spans\"])'"

check "inspect --serving: every layer lazy through the dense index" bash -c "
    '$SN' inspect --serving '$R_HOST/test/dense:soci' > '$TMP/insp1' &&
    [ \$(grep -c '^served sha256:[0-9a-f]* lazy-dense\$' '$TMP/insp1') = 7 ]"
check "... through SOCI ztocs without it" bash -c "
    '$SN' inspect --serving '$R_HOST/test/dense:plain' > '$TMP/insp2' &&
    [ \$(grep -c '^served sha256:[0-9a-f]* lazy-soci\$' '$TMP/insp2') = 7 ]"

# ---- 2. the same bytes, no ztoc fetched, windows fetched ----------------------
copy_all() {   # IMAGE DIR [KEY=VALUE...]: every export of IMAGE into DIR
    local img=$1 dir=$2 e; shift 2
    mkdir -p "$dir"
    for e in "" layer/0 layer/1 layer/2 layer/3 layer/4 layer/5 layer/6; do
        nbdkit -U - -r "$PLUGIN" "$img" "$@" \
            --run "nbdcopy \"nbd+unix:///$e?socket=\$unixsocket\" '$dir/${e//\//-}.img'" ||
            return 1
    done
}
check "every export, SOCI only (dense=false)" \
    copy_all "$R_HOST/test/dense:soci" "$TMP/soci" dense=false
check "every export, through the dense index" \
    copy_all "$F_HOST/test/dense:soci" "$TMP/dense" stats-file="$TMP/st-copy.json"
check "flat and per-layer exports byte-identical" bash -c "
    for f in '$TMP/soci'/*.img; do cmp \"\$f\" '$TMP/dense'/\"\${f##*/}\" || exit 1; done"
# A copy of the whole device streams: the stretch ahead is fetched in runs,
# each decoded in order from the one window of its first sub-span, and the
# reads of a run wait for it (docs/dense-index.md, "Streaming").  Before,
# every sub-span of a streaming run had its own window fetched.  And the
# copy's first reads, all under way at once, are seen as a stream: when
# each of them fetched its own sub-spans, this copy made 215 range requests
# (now 77, for 456 sub-spans).
P0=$(wc -l < "$F_LOG")
check "a copy of the flat export: each sub-span fetched once, windows for few of them, few range requests" bash -c "
    nbdkit -U - -r '$PLUGIN' '$F_HOST/test/dense:soci' stats-file='$TMP/st-flat.json' \
        --run 'nbdcopy \"nbd+unix:///?socket=\$unixsocket\" null:' &&
    python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
ls = [l for l in s[\"layers\"] if l[\"spans_total\"] > 1]
spans = sum(l[\"spans_total\"] for l in ls)
wins = sum(l[\"windows_fetched\"] for l in ls)
ranges = sum(1 for line in open(sys.argv[2]).readlines()[int(sys.argv[3]):]
             if \"\\\"Range\\\"\" in line)
print(\"# %d sub-spans, %d windows fetched, %d range requests\" % (spans, wins, ranges))
sys.exit(0 if all(l[\"spans_fetched\"] == l[\"spans_total\"] for l in ls) and 4 * wins <= spans
         and 4 * ranges <= spans else 1)
' '$TMP/st-flat.json' '$F_LOG' $P0"
check "the dense index was used (stats)" stats_ok "$TMP/st-copy.json" \
    "s['dense_index'] == '$DENSE' and all(l.get('dense_windows') for l in s['layers'])"
ZTOCS=$(get manifest test/dense "$SOCI" | python3 -c '
import json, sys; print("|".join(l["digest"] for l in json.load(sys.stdin)["layers"]))')
check "no ztoc was fetched through the dense index" \
    test "$(reg_log_count F "$ZTOCS")" = 0

SOCK=$TMP/s.sock ST=$TMP/st.json
# Listing the tree (what `find` over a mount reads) fetches no blob byte:
# the superblock and the metadata tables come from the table alone.
check "server on the dense index, metadata only" plugin_start "$SOCK" \
    "$F_HOST/test/dense:soci" stats-file="$ST"
FURI="nbd+unix:///?socket=$SOCK"
P0=$(wc -l < "$F_LOG")
check "superblock and all metadata read; unsquashfs lists every layer's files" bash -c "
    '$NBDREAD' '$FURI' 0 96 > '$TMP/sb' &&
    set -- \$(python3 -c 'import struct,sys; b=open(sys.argv[1],\"rb\").read(); print(struct.unpack_from(\"<Q\",b,64)[0], struct.unpack_from(\"<Q\",b,40)[0])' '$TMP/sb') &&
    cp '$TMP/sb' '$TMP/meta.sqfs' && truncate -s \$(stat -c %s '$TMP/soci/.img') '$TMP/meta.sqfs' &&
    '$NBDREAD' '$FURI' \$1 \$(( \$2 - \$1 )) |
        dd of='$TMP/meta.sqfs' bs=1M seek=\$1 oflag=seek_bytes conv=notrunc status=none &&
    unsquashfs -lls '$TMP/meta.sqfs' > '$TMP/ls' &&
    for n in $NAMES; do grep -q \" squashfs-root/\$n/share/big.txt\$\" '$TMP/ls' || exit 1; done"
plugin_stop "$SOCK"
check "metadata: no blob byte fetched (stats), no layer range GET (proxy log)" bash -c "
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(not (s[\"bytes_fetched\"] == 0 and s[\"spans_fetched\"] == 0))' '$ST' &&
    ! tail -n +\$(( $P0 + 1 )) '$F_LOG' | grep -q '\"Range\"'"
URI2="nbd+unix:///layer/1?socket=$SOCK"
SIZE2=$(stat -c %s "$TMP/soci/layer-1.img")
OFFS="$((SIZE2 / 3)) $((SIZE2 / 2)) $((SIZE2 * 2 / 3))"
mid_reads() {  # the three reads equal the SOCI export's bytes
    local o
    for o in $OFFS; do
        "$NBDREAD" "$URI2" "$o" 4096 > "$TMP/got" || return 1
        tail -c +1 "$TMP/soci/layer-1.img" | head -c $((o + 4096)) | tail -c 4096 > "$TMP/want"
        cmp "$TMP/got" "$TMP/want" || return 1
    done
}
check "server on the dense index" plugin_start "$SOCK" "$F_HOST/test/dense:soci" \
    stats-file="$ST"
check "reads in the middle of a layer: right bytes" mid_reads
plugin_stop "$SOCK"
check "they fetched sparse windows and little else" stats_ok "$ST" \
    "s['windows_fetched'] >= 1 and s['bytes_fetched'] < 0.5 * sum(l['bytes_fetched'] for l in json.load(open('$TMP/st-copy.json'))['layers'])"

# ---- 3. every byte verified ---------------------------------------------------
WIN=$(python3 -c "import json; print(json.load(open('$TMP/dense.json'))['layers'][3]['digest'])")
LAYER1=$(python3 -c "import json; print(json.load(open('$TMP/dense.json'))['layers'][2]['annotations']['io.soci-nbd.dense-index.layer'])")
corrupt() { fault_set F "{\"rules\": [{\"match\": {\"path\": \"$1\"}, \"action\": \"corrupt\"}]}"; }

corrupt "/blobs/$WIN"
check "a flipped bit in every window: the mid-layer reads fail (EIO)" bash -c "
    nbdkit -U - -r '$PLUGIN' '$F_HOST/test/dense:soci' --run '
        for o in $OFFS; do \"$NBDREAD\" \"nbd+unix:///layer/1?socket=\$unixsocket\" \$o 4096 >/dev/null 2>&1 || exit 0; done; exit 1'"
corrupt "/blobs/$LAYER1"
check "a flipped bit in every sub-span of the layer: reads fail (EIO)" bash -c "
    nbdkit -U - -r '$PLUGIN' '$F_HOST/test/dense:soci' --run '
        ! \"$NBDREAD\" \"nbd+unix:///layer/1?socket=\$unixsocket\" $((SIZE2 / 2)) 4096 >/dev/null 2>&1'"
corrupt "/blobs/$TABLE"
check "a flipped bit in a table: the server refuses to start" bash -c "
    ! nbdkit -U - -r '$PLUGIN' '$F_HOST/test/dense:soci' --run true 2> '$TMP/e1' &&
    grep -q 'dense table' '$TMP/e1' || { sed 's/^/# /' '$TMP/e1' >&2; exit 1; }"
corrupt "/manifests/$DENSE"
check "a flipped bit in the dense-index manifest: refused start" bash -c "
    ! nbdkit -U - -r '$PLUGIN' '$F_HOST/test/dense:soci' --run true 2> '$TMP/e2' &&
    grep -q 'dense index' '$TMP/e2' || { sed 's/^/# /' '$TMP/e2' >&2; exit 1; }"
fault_set F '{"rules": []}'
check "with the faults gone the dense index serves again" bash -c "
    nbdkit -U - -r '$PLUGIN' '$F_HOST/test/dense:soci' --run '
        \"$NBDREAD\" \"nbd+unix:///layer/1?socket=\$unixsocket\" $((SIZE2 / 2)) 4096 >/dev/null'"

finish
