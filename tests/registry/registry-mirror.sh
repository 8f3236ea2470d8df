#!/bin/bash
# soci-nbd tests: a pull-through mirror (distribution's proxy mode) in
# front of the upstream registry: requests go to the mirror, and the
# client falls back to the upstream when the mirror is down.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
reg_start U || { echo "Bail out! registry did not start"; exit 1; }
img_push "$U_HOST" --dest-tls-verify=false || { echo "Bail out! push failed"; exit 1; }
reg_start MR --proxy "$U_URL" || { echo "Bail out! mirror did not start"; exit 1; }
M="manifest $IMG_MULTI_MANIFEST application/vnd.oci.image.manifest.v1+json $IMG_MULTI_MANIFEST_SIZE"

check "inspect through the mirror" bash -o pipefail -c "'$SN' inspect --mirror '$MR_URL' '$U_HOST/test/multi:v1' | grep -qx '$M'"
check "the mirror's log shows the client's request" \
    bash -c "grep 'GET /v2/test/multi/manifests/' '$MR_LOG' | grep -q soci-nbd"
check "the client did not ask the upstream itself" \
    bash -c "! grep -q soci-nbd '$U_LOG'"

# distribution's proxy answers a Range request for a blob it has not
# cached yet with 200 and the whole blob; warm the cache so that the range
# tests below see 206 (the 200 case is covered by registry-faults.sh).
for d in "$IMG_MULTI_CONFIG" "$IMG_MULTI_LAYER0" "$IMG_MULTI_LAYER1" "$IMG_MULTI_LAYER2"; do
    reg_http "$MR_URL/v2/test/multi/blobs/$d" >/dev/null
done
sleep 1
tap_run "through the mirror" env SN_TEST_REF="$U_HOST/test/multi:v1" SN_TEST_MIRROR="$MR_URL" \
    SN_TEST_LAYOUT="$IMG_LAYOUT" SN_TEST_MANIFEST="$IMG_MULTI_MANIFEST" \
    "$top_builddir/tests/unit/test-registry" concurrency
check "blob range requests went to the mirror" \
    bash -c "grep 'GET /v2/test/multi/blobs/$IMG_MULTI_LAYER1' '$MR_LOG' | grep -q '\" 206 .*soci-nbd'"

reg_stop MR
check "mirror down: falls back to the upstream" bash -o pipefail -c "'$SN' inspect --mirror '$MR_URL' '$U_HOST/test/multi:v1' | grep -qx '$M'"
check "the upstream's log now shows the client" grep -q 'soci-nbd' "$U_LOG"

finish
