#!/bin/bash
# soci-nbd tests: what "soci-nbd convert" and "create" make, end to end
# against a real registry (distribution on 127.0.0.1):
#  1. the nbdkit plugin finds and serves their indexes (v2 through the
#     annotation, v1 through the referrers fallback tag): lazy layers, and
#     the same bytes as "soci-nbd mkfs" of the layer files;
#  2. --prefetch-file → a prefetch artifact in the index;
#  3. progress: plain lines off a terminal, a live display on one,
#     --quiet, the summary line;
#  4. a convert killed mid-push leaves no tag on anything half-pushed, and
#     the rerun gives the digest of an uninterrupted run; a registry that
#     rejects a manifest gives a message naming it;
#  5. "ztoc ls|info|get-file IMAGE" through the image's SOCI index;
#  6. a layer with a global PAX header fails the build, naming the layer.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
TREE="python3 $top_srcdir/tests/helpers/mkfs-tree.py"
IMGPY="python3 $top_srcdir/tests/helpers/plugin-image.py"

nbdkit_asan_wrapper "$PLUGIN"
for tool in nbdkit nbdcopy skopeo script; do
    command -v $tool > /dev/null || { echo "Bail out! $tool is not installed"; exit 1; }
done
[ -f "$PLUGIN" ] || { echo "Bail out! $PLUGIN not built"; exit 1; }

reg_start R || { echo "Bail out! registry did not start"; exit 1; }

# Layers (tests/helpers/mkfs-tree.py gen) pushed as a plain image, no index.
mkdir -p "$TMP/layers"
$TREE gen "$TMP/layers"
gzip -n "$TMP/layers/L1.tar"
gzip -n "$TMP/layers/L3.tar"
L1=$TMP/layers/L1.tar.gz L2=$TMP/layers/L2.tar L3=$TMP/layers/L3.tar.gz
L4=$TMP/layers/L4.tar
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$TMP/policy.json"
# push_layout DIR REF LAYER...: an image of these layers at REF.
push_layout() {
    local dir=$1 ref=$2; shift 2
    $IMGPY layout "$dir" img "$@" > "$dir.digest" &&
    skopeo --policy "$TMP/policy.json" copy -q --dest-tls-verify=false \
        "oci:$dir:img" "docker://$ref"
}
push_layout "$TMP/lay" "$R_HOST/test/img:v1" "$L1" "$L2" "$L3" "$L4" ||
    { echo "Bail out! push failed"; exit 1; }
REF=$R_HOST/test/img

# A small registry client: manifest REPO REF | blob REPO DIGEST (to stdout);
# exits 4 on 404.
cat > "$TMP/reg.py" <<'PY'
import sys, urllib.error, urllib.request
base, what, repo, ref = sys.argv[1:5]
kind = "manifests" if what == "manifest" else "blobs"
req = urllib.request.Request("%s/v2/%s/%s/%s" % (base, repo, kind, ref))
req.add_header("Accept", ",".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json"]))
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    sys.stdout.buffer.write(opener.open(req, timeout=10).read())
except urllib.error.HTTPError as e:
    sys.exit(4 if e.code == 404 else 1)
PY
get() { python3 "$TMP/reg.py" "$R_URL" "$@"; }

# stats_ok FILE PYTHON-EXPR: the expression holds for the stats JSON (s).
# serve IMAGE OUT STATS: the flat export of IMAGE copied to OUT.
serve() { # IMAGE OUT STATS [KEY=VALUE...]
    local img=$1 out=$2 st=$3; shift 3
    nbdkit -U - -r "$PLUGIN" "$img" stats-file="$st" "$@" --run "nbdcopy \"\$uri\" '$out'"
}

check "mkfs reference image of the layer files" \
    "$SN" mkfs -q -o "$TMP/ref.sqfs" "$L1" "$L2" "$L3" "$L4"

# ---- 1. the plugin serves what convert (v2) and create (v1) made ---------
BUILD=(--min-layer-size 0 -s 64K)
check "convert (v2) with a prefetch file" bash -o pipefail -c \
    "'$SN' convert ${BUILD[*]@Q} --prefetch-file /data/size-131073 \
        '$REF:v1' '$REF:soci' > '$TMP/conv.digest' 2> '$TMP/conv.err'"
CONV=$(cat "$TMP/conv.digest")
check "plugin serves the converted image" serve "$REF:soci" "$TMP/v2.sqfs" "$TMP/st-v2.json"
check "converted: = soci-nbd mkfs of the layer files" cmp "$TMP/v2.sqfs" "$TMP/ref.sqfs"
check "converted: v2 index found, every layer lazy, nothing fetched whole" \
    stats_ok "$TMP/st-v2.json" "s['index_source'] == 'v2' and \
        [l['lazy'] for l in s['layers']] == [True] * 4 and \
        s['whole_layer_bytes_fetched'] == 0 and s['spans_fetched'] > 0 and \
        s['spans_failed'] == 0"

check "create (v1)" bash -o pipefail -c \
    "'$SN' create -q ${BUILD[*]@Q} '$REF:v1' > '$TMP/create.digest'"
check "plugin serves the image through the v1 index (soci-v1=true)" \
    serve "$REF:v1" "$TMP/v1.sqfs" "$TMP/st-v1.json" soci-v1=true
check "v1: = soci-nbd mkfs of the layer files" cmp "$TMP/v1.sqfs" "$TMP/ref.sqfs"
check "v1: the created index is used, every layer lazy" \
    stats_ok "$TMP/st-v1.json" "s['index_source'] == 'v1' and \
        s['index'] == '$(cat "$TMP/create.digest")' and \
        all(l['lazy'] for l in s['layers']) and \
        s['whole_layer_bytes_fetched'] == 0 and s['spans_fetched'] > 0"

# ---- 2. prefetch artifact ------------------------------------------------
check "prefetch: artifact JSON and its descriptor in the index" bash -c "
    get() { python3 '$TMP/reg.py' '$R_URL' \"\$@\"; }
    get manifest test/img '$CONV' > '$TMP/oci.json' &&
    idx=\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"manifests\"][1][\"digest\"])' '$TMP/oci.json') &&
    get manifest test/img \$idx > '$TMP/idx.json' &&
    get manifest test/img v1 > '$TMP/man.json' &&
    pf=\$(python3 - '$TMP/idx.json' '$TMP/man.json' <<'PY'
import json, sys
idx, man = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
layers = [l['digest'] for l in man['layers']]
pf = [l for l in idx['layers'] if l['mediaType'] == 'application/vnd.amazon.soci.prefetch.v1+json']
zt = [l for l in idx['layers'] if l['mediaType'] == 'application/octet-stream']
assert len(pf) == 1 and len(zt) == 4, idx
assert idx['layers'][-1] == pf[0], 'prefetch artifacts come after the ztocs'
assert list(pf[0]) == ['mediaType', 'digest', 'size', 'annotations'], pf[0]
assert list(pf[0]['annotations']) == ['com.amazon.soci.image-layer-digest']
assert pf[0]['annotations']['com.amazon.soci.image-layer-digest'] in layers
print(pf[0]['digest'], pf[0]['size'])
PY
) && set -- \$pf &&
    get blob test/img \$1 > '$TMP/pf.json' &&
    [ \$(stat -c %s '$TMP/pf.json') = \$2 ] &&
    python3 -c '
import json, sys
b = open(sys.argv[1], \"rb\").read(); p = json.loads(b)
assert list(p) == [\"version\", \"prefetch_spans\"] and p[\"version\"] == \"1.0\", p
assert len(p[\"prefetch_spans\"]) == 1
s = p[\"prefetch_spans\"][0]
assert 0 <= s[\"start_span\"] <= s[\"end_span\"], s
assert b\" \" not in b' '$TMP/pf.json'"

# ---- 3. progress -----------------------------------------------------------
check "not a terminal: a line per layer started and indexed, and a summary" bash -c "
    [ \$(grep -c '^indexing layer [0-9] sha256:' '$TMP/conv.err') = 4 ] &&
    [ \$(grep -c '^layer sha256:[0-9a-f]* -> ztoc sha256:[0-9a-f]* (' '$TMP/conv.err') = 4 ] &&
    grep -q '^indexed 4 layers, skipped 0; ztocs .* ([0-9.]*% of the image.s .*) in [0-9.]* s\$' '$TMP/conv.err' &&
    ! grep -q \$'\\033' '$TMP/conv.err'"
check "--min-layer-size: skipped layers counted in the summary" bash -c "
    '$SN' create -s 64K --min-layer-size 20K '$REF:v1' > /dev/null 2> '$TMP/c2.err' &&
    n=\$(grep -c '^ztoc skipped' '$TMP/c2.err') && [ \$n -ge 1 ] &&
    grep -q \"^indexed \$((4 - n)) layers\\?, skipped \$n;\" '$TMP/c2.err'"
check "--quiet: nothing on stderr" bash -c "
    '$SN' create -q ${BUILD[*]@Q} '$REF:v1' > /dev/null 2> '$TMP/q.err' && ! test -s '$TMP/q.err'"
check "on a terminal: live lines redrawn in place, then the summary" bash -c "
    script -qec \"'$SN' create ${BUILD[*]@Q} '$REF:v1' > /dev/null\" /dev/null > '$TMP/tty.out' 2>&1 &&
    grep -q \$'\\033\\[J' '$TMP/tty.out' &&
    [ \$(grep -c 'layer sha256:[0-9a-f]* -> ztoc sha256:' '$TMP/tty.out') = 4 ] &&
    grep -q 'indexed 4 layers, skipped 0' '$TMP/tty.out'"

# ---- 4. interrupted push, rejected manifest --------------------------------
check "uninterrupted reference run" bash -o pipefail -c \
    "'$SN' convert -q ${BUILD[*]@Q} '$REF:v1' '$R_HOST/test/ref:v1' > '$TMP/ref.digest'"
check "an older image at the destination tag" bash -o pipefail -c \
    "'$SN' convert -q --min-layer-size 0 -s 1M '$REF:v1' '$R_HOST/test/int:v1' > '$TMP/old.digest'"
fault_start F "$R_URL" || { echo "Bail out! fault proxy did not start"; exit 1; }
fault_set F '{"rules":[{"match":{"method":"PUT","path":"/blobs/uploads/"},"action":"delay","seconds":1}]}'
# Kill convert once its first blob upload through the proxy is complete.
interrupt() {
    "$SN" convert -q "${BUILD[@]}" "$F_HOST/test/img:v1" "$F_HOST/test/int:v1" \
        > /dev/null 2>&1 &
    local pid=$! i
    for i in $(seq 200); do
        grep -q '"method": "PUT".*blobs/uploads.*"status": 201' "$F_LOG" && break
        sleep 0.05
    done
    kill -KILL $pid
    wait $pid 2>/dev/null
    grep -q '"method": "PUT".*blobs/uploads.*"status": 201' "$F_LOG" &&
        ! grep -q '"method": "PUT".*/manifests/v1"' "$F_LOG"
}
check "convert killed after its first upload, before any tag" interrupt
check "the destination tag still names the older image" bash -o pipefail -c "
    get() { python3 '$TMP/reg.py' '$R_URL' \"\$@\"; }
    get manifest test/int v1 | sha256sum | grep -q \"^\$(cut -d: -f2 '$TMP/old.digest') \""
check "the rerun completes with the uninterrupted run's digest" bash -o pipefail -c "
    '$SN' convert -q ${BUILD[*]@Q} '$F_HOST/test/img:v1' '$F_HOST/test/int:v1' |
        grep -qx '$(cat "$TMP/ref.digest")'"
check "the tag now names it, and the image is complete" bash -c "
    get() { python3 '$TMP/reg.py' '$R_URL' \"\$@\"; }
    get manifest test/int v1 | sha256sum | grep -q \"^\$(cut -d: -f2 '$TMP/ref.digest') \" &&
    skopeo --policy '$TMP/policy.json' copy -q --all --src-tls-verify=false \
        docker://$R_HOST/test/int:v1 oci:$TMP/int-copy:x"
fault_set F '{"rules":[{"match":{"method":"PUT","path":"/manifests/"},"action":"status","code":400,"body":"{\"errors\":[{\"code\":\"MANIFEST_INVALID\",\"message\":\"manifest invalid\"}]}"}]}'
check_fails "a rejected manifest: the message names it" \
    "manifest.*sha256:[0-9a-f]\{64\}.*400\|400.*manifest.*sha256:[0-9a-f]\{64\}" \
    "$SN" convert -q "${BUILD[@]}" "$F_HOST/test/img:v1" "$F_HOST/test/rej:v1"
sed 's/^/# message: /' "$TMP/.err"
check "nothing tagged after the rejection" bash -c "
    python3 '$TMP/reg.py' '$R_URL' manifest test/rej v1 > /dev/null; [ \$? = 4 ]"
fault_set F '{"rules":[]}'

# ---- 4b. one pass per layer, layers in parallel ----------------------------
# Through the proxy, each layer GET held 1 s before it is forwarded: the
# layers of a convert to an OCI layout are downloaded once each (indexed
# and copied in the same pass) and at least two downloads overlap.
fault_set F '{"rules":[{"match":{"method":"GET","path":"/blobs/sha256:","range":false},"action":"delay","seconds":1}]}'
: > "$F_LOG"
check "convert to an OCI layout through a slow link" \
    "$SN" convert -q --min-layer-size 0 -s 64K "$F_HOST/test/img:v1" "oci-layout:$TMP/par:x"
fault_set F '{"rules":[]}'
check "each layer downloaded exactly once, two downloads at once, the copies intact" \
    python3 - "$F_LOG" "$TMP/par" <<'PY'
import hashlib, json, sys
log, lay = sys.argv[1], sys.argv[2]
def blob(d):
    return open("%s/blobs/sha256/%s" % (lay, d[7:]), "rb").read()
def images(d):                  # image manifests under descriptor list d
    for m in d:
        j = json.loads(blob(m["digest"]))
        if "manifests" in j:
            yield from images(j["manifests"])
        elif j["config"]["mediaType"].endswith("image.config.v1+json"):
            yield j
digests = [l["digest"] for l in next(images(json.load(open(lay + "/index.json"))["manifests"]))["layers"]]
assert len(digests) == 4, digests
recs = [json.loads(l) for l in open(log)]
gets = {}
for r in recs:
    if r["method"] == "GET" and "/blobs/sha256:" in r["path"]:
        gets.setdefault(r["path"].rsplit("/", 1)[1], []).append(r)
for d in digests:
    assert len(gets.get(d, [])) == 1, (d, len(gets.get(d, [])))
    assert "sha256:" + hashlib.sha256(blob(d)).hexdigest() == d, d
spans = sorted((gets[d][0]["start"], gets[d][0]["time"]) for d in digests)
assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans
PY

# ---- 5. ztoc ls / info / get-file IMAGE ------------------------------------
check "ztoc ls IMAGE" bash -o pipefail -c "'$SN' ztoc ls '$REF:soci' > '$TMP/zls'"
check "ztoc ls: one line per ztoc: digest, size, layer digest, in layer order" \
    python3 - "$TMP/zls" "$TMP/idx.json" "$TMP/man.json" <<'PY'
import json, sys
lines = [l.split() for l in open(sys.argv[1])]
idx, man = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
zt = [l for l in idx["layers"] if l["mediaType"] == "application/octet-stream"]
assert lines == [[z["digest"], str(z["size"]),
                  z["annotations"]["com.amazon.soci.image-layer-digest"]] for z in zt], lines
assert [l[2] for l in lines] == [l["digest"] for l in man["layers"]]
PY
check "ztoc ls IMAGE --soci-v1 finds a v1 index too" bash -o pipefail -c \
    "'$SN' ztoc ls --soci-v1 '$REF:v1' | wc -l | grep -qx 4"
check_fails "ztoc ls IMAGE without --soci-v1 says why there is no index" \
    "has no SOCI index (no com.amazon.soci.index-digest annotation, and v1 indexes (referrers) are not enabled)" \
    "$SN" ztoc ls "$REF:v1"
check "ztoc get-file IMAGE --layer 0 PATH = tar -xO of that layer" bash -c "
    '$SN' ztoc get-file '$REF:soci' --layer 0 data/size-131073 -o '$TMP/gf' &&
    tar -xzOf '$L1' data/size-131073 | cmp - '$TMP/gf'"
check "ztoc get-file IMAGE --layer DIGEST, from an uncompressed layer" bash -o pipefail -c "
    d=\$(sed -n 2p '$TMP/zls' | cut -d' ' -f3) &&
    '$SN' ztoc get-file --soci-v1 '$REF:v1' --layer \$d d/new | cmp - <(tar -xOf '$L2' d/new)"
check "ztoc info IMAGE --layer N: the layer's ztoc as JSON" bash -o pipefail -c "
    '$SN' ztoc info '$REF:soci' --layer 2 | python3 -c '
import json, sys; z = json.load(sys.stdin)
assert z[\"compressed_archive_size\"] == $(stat -c %s "$L3") and z[\"num_spans\"] >= 1 and z[\"files\"], z.keys()'"
check_fails "ztoc get-file IMAGE: no such layer" "no layer '9'" \
    "$SN" ztoc get-file "$REF:soci" --layer 9 data/x

# ---- 6. a global PAX header ------------------------------------------------
python3 - "$TMP/layers/G.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT,
                  pax_headers={"comment": "global"}) as t:
    ti = tarfile.TarInfo("hello.txt"); data = b"hello\n"; ti.size = len(data)
    t.addfile(ti, io.BytesIO(data))
PY
gzip -n "$TMP/layers/G.tar"
push_layout "$TMP/glay" "$R_HOST/test/gpax:v1" "$L3" "$TMP/layers/G.tar.gz" ||
    { echo "Bail out! push failed"; exit 1; }
GD=sha256:$(sha "$TMP/layers/G.tar.gz")
check_fails "ztoc ls of an image without a SOCI index" "has no SOCI index" \
    "$SN" ztoc ls "$R_HOST/test/gpax:v1"
check_fails "global PAX header: the build fails naming the layer" \
    "layer 1 ($GD).*global PAX header" \
    "$SN" convert -q --min-layer-size 0 "$R_HOST/test/gpax:v1" "$R_HOST/test/gpax-soci:v1"
sed 's/^/# message: /' "$TMP/.err"

finish
