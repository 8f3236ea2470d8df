#!/bin/bash
# soci-nbd tests: "soci-nbd create" (SOCI index v1, found through the
# referrers fallback tag), "convert" (v2 indexes bound into an OCI image
# index), "index list|info", against a real registry (distribution 2.8 on
# 127.0.0.1) and OCI layouts.  Every ztoc pushed must equal what
# "soci-nbd ztoc create" makes of the layer blob; digests are reproducible.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
BT="AWS SOCI CLI v0.2"
reg_start R || { echo "Bail out! registry did not start"; exit 1; }
img_push "$R_HOST" --dest-tls-verify=false || { echo "Bail out! push failed"; exit 1; }

# A small registry client: manifest REPO REF | blob REPO DIGEST (to stdout).
cat > "$TMP/reg.py" <<'PY'
import sys, urllib.request
base, what, repo, ref = sys.argv[1:5]
kind = "manifests" if what == "manifest" else "blobs"
req = urllib.request.Request("%s/v2/%s/%s/%s" % (base, repo, kind, ref))
req.add_header("Accept", ",".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json"]))
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
sys.stdout.buffer.write(opener.open(req, timeout=10).read())
PY
get() { python3 "$TMP/reg.py" "$R_URL" "$@"; }

# check_ztocs REPO INDEX-DIGEST SPAN N: the index lists N ztocs, each one
# byte-identical to "soci-nbd ztoc create" of its layer blob (fetched from
# the registry), with the annotations soci writes.
check_ztocs() {
    local repo=$1 idx=$2 span=$3 n=$4 d l i=0
    get manifest "$repo" "$idx" > "$TMP/idx.json" || return 1
    [ "$(sha256sum < "$TMP/idx.json" | cut -d' ' -f1)" = "${idx#sha256:}" ] || return 1
    python3 - "$TMP/idx.json" "$span" "$n" > "$TMP/ztocs.txt" <<'PY' || return 1
import json, sys
m = json.load(open(sys.argv[1]))
span, n = sys.argv[2], int(sys.argv[3])
zs = [l for l in m["layers"] if l["mediaType"] == "application/octet-stream"]
assert len(zs) == n, (len(zs), n)
assert m["config"]["digest"] == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
for z in zs:
    a = z["annotations"]
    assert a["com.amazon.soci.span-size"] == span
    assert a["com.amazon.soci.image-layer-mediaType"].startswith("application/")
    print(z["digest"], a["com.amazon.soci.image-layer-digest"])
PY
    while read -r d l; do
        get blob "$repo" "$l" > "$TMP/layer" || return 1
        get blob "$repo" "$d" > "$TMP/got.ztoc" || return 1
        "$SN" ztoc create -q -s "$span" -b "$BT" -o "$TMP/want.ztoc" "$TMP/layer" || return 1
        cmp "$TMP/got.ztoc" "$TMP/want.ztoc" || return 1
        i=$((i + 1))
    done < "$TMP/ztocs.txt"
    [ $i = "$n" ]
}

# ---- create (v1) -----------------------------------------------------------
MH=${IMG_MULTI_MANIFEST#sha256:}
check "create: all layers (--min-layer-size 0)" bash -o pipefail -c \
    "'$SN' create -q --min-layer-size 0 -s 1M -b '$BT' '$R_HOST/test/multi:v1' > '$TMP/c1'"
C1=$(cat "$TMP/c1")
check "create prints the index digest" grep -qx 'sha256:[0-9a-f]\{64\}' "$TMP/c1"
check "create: one ztoc per layer, each equal to ztoc create of the layer" \
    check_ztocs test/multi "$C1" 1048576 3
check "create: the index's subject is the image manifest" python3 -c "
import json; m = json.load(open('$TMP/idx.json'))
assert m['subject'] == {'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'digest': '$IMG_MULTI_MANIFEST', 'size': $IMG_MULTI_MANIFEST_SIZE}, m['subject']
assert m['config']['mediaType'] == 'application/vnd.amazon.soci.index.v1+json'
assert m['annotations'] == {'com.amazon.soci.build-tool-identifier': '$BT'}
assert list(m) == ['schemaVersion', 'mediaType', 'config', 'layers', 'subject', 'annotations']"
check "create: the fallback tag sha256-<hex> lists the index" bash -c "
    get() { python3 '$TMP/reg.py' '$R_URL' \"\$@\"; }
    get manifest test/multi sha256-$MH | python3 -c '
import json, sys; m = json.load(sys.stdin)
e = [d for d in m[\"manifests\"] if d[\"digest\"] == \"$C1\"]
assert len(e) == 1 and e[0][\"artifactType\"] == \"application/vnd.amazon.soci.index.v1+json\", m'"
check "create is reproducible (same digest again)" bash -o pipefail -c \
    "'$SN' create -q --min-layer-size 0 -s 1M -b '$BT' '$R_HOST/test/multi:v1' | grep -qx '$C1'"
check "create with progress names every layer on stderr" bash -c "
    '$SN' create --min-layer-size 0 -s 1M -b '$BT' '$R_HOST/test/multi:v1' 2> '$TMP/c.err' >/dev/null &&
    [ \$(grep -c '^layer sha256:[0-9a-f]* -> ztoc sha256:' '$TMP/c.err') = 3 ]"

# --min-layer-size: only the big layer (> 5 MB) at 1M; none by default.
check "create --min-layer-size 1M" bash -o pipefail -c \
    "'$SN' create --min-layer-size 1M -s 1M -b '$BT' '$R_HOST/test/multi:v1' > '$TMP/c2' 2> '$TMP/c2.err'"
check "create --min-layer-size 1M: one ztoc, of the big layer" bash -c "
    $(declare -f check_ztocs get); R_URL='$R_URL' TMP='$TMP' SN='$SN' BT='$BT'
    check_ztocs test/multi \$(cat '$TMP/c2') 1048576 1 && grep -q ' $IMG_BIG\$' '$TMP/ztocs.txt'"
check "create --min-layer-size 1M: two layers reported skipped" bash -c \
    "[ \$(grep -c '^ztoc skipped - layer .* is less than min-layer-size 1048576' '$TMP/c2.err') = 2 ]"
check_fails "create with the default 10 MiB minimum indexes nothing" \
    "no layer indexed" "$SN" create -q "$R_HOST/test/multi:v1"

# ---- index list / info -------------------------------------------------------
check "index list" bash -o pipefail -c "'$SN' index list '$R_HOST/test/multi:v1' > '$TMP/list'"
check "index list shows both v1 indexes of the manifest" bash -c "
    grep -qx '$C1 v1 [0-9]* $IMG_MULTI_MANIFEST -' '$TMP/list' &&
    grep -qx \"\$(cat '$TMP/c2') v1 [0-9]* $IMG_MULTI_MANIFEST -\" '$TMP/list' &&
    [ \$(wc -l < '$TMP/list') = 2 ]"
check "index info IMAGE DIGEST prints the index as stored" bash -o pipefail -c "
    get() { python3 '$TMP/reg.py' '$R_URL' \"\$@\"; }
    '$SN' index info '$R_HOST/test/multi:v1' '$C1' | head -c -1 | cmp - <(get manifest test/multi '$C1')"
check "index info IMAGE@DIGEST" bash -o pipefail -c "
    '$SN' index info '$R_HOST/test/multi@$C1' | head -c -1 | sha256sum | grep -q '^${C1#sha256:} '"
check_fails "index info of a non-index digest" "is not a SOCI index" \
    "$SN" index info "$R_HOST/test/multi:v1" "$IMG_MULTI_MANIFEST"
check_fails "index info with a bare digest" "needs IMAGE" "$SN" index info "$C1"

# ---- convert (v2) -------------------------------------------------------------
# --no-dense: exactly what soci convert writes (with the dense index, by
# default, the SOCI index and ztocs are the same and the image manifest and
# index carry one more annotation and entry: tests/plugin/dense.sh).
CONV=(--min-layer-size 0 -s 1M -b "$BT" -q --no-dense)
check "convert registry → registry" bash -o pipefail -c \
    "'$SN' convert ${CONV[*]@Q} '$R_HOST/test/multi:v1' '$R_HOST/test/multi-soci:v1' > '$TMP/v1'"
V1=$(cat "$TMP/v1")
check "convert: an OCI index [annotated image, v2 SOCI index], as soci writes it" bash -c "
    get() { python3 '$TMP/reg.py' '$R_URL' \"\$@\"; }
    get manifest test/multi-soci v1 > '$TMP/oci.json' &&
    [ \"sha256:\$(sha256sum < '$TMP/oci.json' | cut -d' ' -f1)\" = '$V1' ] &&
    python3 - '$TMP/oci.json' <<'PY'
import json, sys
x = json.load(open(sys.argv[1]))
assert list(x) == ['schemaVersion', 'mediaType', 'manifests'], list(x)
assert x['mediaType'] == 'application/vnd.oci.image.index.v1+json'
img, idx = x['manifests']
assert list(img) == ['mediaType', 'digest', 'size', 'annotations', 'platform'], list(img)
assert img['platform'] == {'architecture': 'amd64', 'os': 'linux'}
assert img['annotations'] == {'com.amazon.soci.index-digest': idx['digest']}
assert list(idx) == ['mediaType', 'digest', 'size', 'annotations', 'platform', 'artifactType']
assert idx['artifactType'] == 'application/vnd.amazon.soci.index.v2+json'
assert idx['annotations'] == {'com.amazon.soci.image-manifest-digest': img['digest']}
open(sys.argv[1] + '.img', 'w').write(img['digest'])
open(sys.argv[1] + '.idx', 'w').write(idx['digest'])
PY"
check "convert: the annotated manifest is the original plus the annotation" bash -c "
    get() { python3 '$TMP/reg.py' '$R_URL' \"\$@\"; }
    get manifest test/multi-soci \$(cat '$TMP/oci.json.img') > '$TMP/ann.json' &&
    get manifest test/multi '$IMG_MULTI_MANIFEST' > '$TMP/orig.json' &&
    python3 -c '
import json
a, o = json.load(open(\"$TMP/ann.json\")), json.load(open(\"$TMP/orig.json\"))
assert a.pop(\"annotations\") == {\"com.amazon.soci.index-digest\": open(\"$TMP/oci.json.idx\").read()}
assert a == o'"
check "convert: v2 index has no subject, ztocs equal ztoc create" bash -c "
    $(declare -f check_ztocs get); R_URL='$R_URL' TMP='$TMP' SN='$SN' BT='$BT'
    check_ztocs test/multi-soci \$(cat '$TMP/oci.json.idx') 1048576 3 &&
    python3 -c '
import json; m = json.load(open(\"$TMP/idx.json\"))
assert \"subject\" not in m and m[\"config\"][\"mediaType\"] == \"application/vnd.amazon.soci.index.v2+json\"'"
check "convert is reproducible" bash -o pipefail -c \
    "'$SN' convert ${CONV[*]@Q} '$R_HOST/test/multi:v1' '$R_HOST/test/multi-soci2:v1' | grep -qx '$V1'"
check "the converted image is complete (skopeo copies it all)" \
    skopeo --policy "$IMG_DIR/policy.json" copy -q --all --src-tls-verify=false \
    "docker://$R_HOST/test/multi-soci:v1" "oci:$TMP/skopeo-copy:x"
check "index list of the converted image shows its v2 index" bash -o pipefail -c "
    '$SN' index list '$R_HOST/test/multi-soci:v1' | grep -qx \"\$(cat '$TMP/oci.json.idx') v2 [0-9]* \$(cat '$TMP/oci.json.img') linux/amd64\""
check "index info of the converted image prints its v2 index" bash -o pipefail -c "
    '$SN' index info -p linux/amd64 '$R_HOST/test/multi-soci:v1' | head -c -1 | sha256sum | grep -q \"^\$(cut -d: -f2 '$TMP/oci.json.idx') \""

# registry → oci-layout → registry: same digest all the way.
check "convert registry → oci-layout" bash -o pipefail -c \
    "'$SN' convert ${CONV[*]@Q} '$R_HOST/test/multi:v1' 'oci-layout:$TMP/lay:soci' | grep -qx '$V1'"
check "the layout holds every blob" bash -c "
    for d in \$(python3 -c '
import json; x = json.load(open(\"$TMP/oci.json\"))
print(\" \".join(m[\"digest\"] for m in x[\"manifests\"]))'); do
        test -s '$TMP/lay/blobs/sha256/'\${d#sha256:} || exit 1
    done; test -s '$TMP/lay/blobs/sha256/${IMG_BIG#sha256:}'"
check "convert oci-layout → registry (re-converting is the identity)" bash -o pipefail -c \
    "'$SN' convert ${CONV[*]@Q} 'oci-layout:$TMP/lay:soci' '$R_HOST/test/roundtrip:v1' | grep -qx '$V1'"
check "the round-tripped image is complete" \
    skopeo --policy "$IMG_DIR/policy.json" copy -q --all --src-tls-verify=false \
    "docker://$R_HOST/test/roundtrip:v1" "oci:$TMP/skopeo-copy2:x"

# --min-layer-size in convert.
check "convert --min-layer-size 1M indexes the big layer only" bash -c "
    '$SN' convert -q --min-layer-size 1M -s 1M -b '$BT' '$R_HOST/test/multi:v1' '$R_HOST/test/big-soci:v1' > '$TMP/v3' &&
    get() { python3 '$TMP/reg.py' '$R_URL' \"\$@\"; } &&
    idx=\$(get manifest test/big-soci v1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"manifests\"][1][\"digest\"])') &&
    get manifest test/big-soci \$idx | python3 -c '
import json, sys; m = json.load(sys.stdin)
assert [l[\"annotations\"][\"com.amazon.soci.image-layer-digest\"] for l in m[\"layers\"]] == [\"$IMG_BIG\"]'"
check_fails "convert with nothing to index fails" "no layer indexed" \
    "$SN" convert -q "$R_HOST/test/multi:v1" "$R_HOST/test/none:v1"

# Multi-platform images and Docker media types.
check "convert --all-platforms" bash -c "
    '$SN' convert ${CONV[*]@Q} --all-platforms '$R_HOST/test/multiarch:v1' '$R_HOST/test/ma-soci:v1' > '$TMP/ma' &&
    get() { python3 '$TMP/reg.py' '$R_URL' \"\$@\"; } &&
    get manifest test/ma-soci v1 | python3 -c '
import json, sys; x = json.load(sys.stdin)
m = x[\"manifests\"]
assert len(m) == 6, len(m)
imgs, idxs = m[:3], m[3:]
assert all(\"artifactType\" not in d for d in imgs)
assert all(d[\"artifactType\"] == \"application/vnd.amazon.soci.index.v2+json\" for d in idxs)
for i, d in zip(imgs, idxs):
    assert i[\"platform\"] == d[\"platform\"], (i, d)
    assert i[\"annotations\"][\"com.amazon.soci.index-digest\"] == d[\"digest\"]
    assert d[\"annotations\"][\"com.amazon.soci.image-manifest-digest\"] == i[\"digest\"]'"
check "convert --platform linux/arm64: one SOCI index, all images kept" bash -c "
    '$SN' convert ${CONV[*]@Q} --platform linux/arm64 '$R_HOST/test/multiarch:v1' '$R_HOST/test/arm-soci:v1' > /dev/null &&
    get() { python3 '$TMP/reg.py' '$R_URL' \"\$@\"; } &&
    get manifest test/arm-soci v1 | python3 -c '
import json, sys; m = json.load(sys.stdin)[\"manifests\"]
assert len(m) == 4 and m[3][\"platform\"] == {\"architecture\": \"arm64\", \"os\": \"linux\"}, m
assert [\"com.amazon.soci.index-digest\" in d.get(\"annotations\", {}) for d in m[:3]] == [False, True, False]'"
check "convert a Docker manifest list: all entries become OCI" bash -c "
    '$SN' convert ${CONV[*]@Q} --platform linux/amd64 '$R_HOST/test/dockerlist:v1' '$R_HOST/test/dl-soci:v1' > /dev/null &&
    get() { python3 '$TMP/reg.py' '$R_URL' \"\$@\"; } &&
    get manifest test/dl-soci v1 | python3 -c '
import json, sys; x = json.load(sys.stdin)
assert x[\"mediaType\"] == \"application/vnd.oci.image.index.v1+json\"
assert all(d[\"mediaType\"] == \"application/vnd.oci.image.manifest.v1+json\" for d in x[\"manifests\"])'"
check "convert a Docker schema 2 image" bash -o pipefail -c \
    "'$SN' convert ${CONV[*]@Q} '$R_HOST/test/docker:v1' '$R_HOST/test/docker-soci:v1' | grep -qx 'sha256:[0-9a-f]\{64\}'"

# Command line.
check "usage lists create, convert and index" bash -o pipefail -c \
    "'$SN' --help | grep -c '^  \\(create\\|convert\\|index\\) ' | grep -qx 4"
check "convert --help" bash -o pipefail -c "'$SN' convert --help | grep -q '^Usage: soci-nbd convert'"
check_fails "convert needs SRC and DST" "expected SRC and DST" "$SN" convert x
check_fails "--platform with --all-platforms" "exclude each other" \
    "$SN" convert --platform linux/amd64 --all-platforms a b
check_fails "bad span size" "invalid span size" "$SN" create -s 0 x

finish
