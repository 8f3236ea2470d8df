#!/bin/bash
# soci-nbd tests: the registry client API (tests/unit/test-registry.c) against a
# real registry: manifests, whole blobs verified, range reads compared with
# the blob bytes, not-found errors, push of blobs and manifests, referrers
# through the fallback tag, 8 threads of range reads.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

reg_start R || { echo "Bail out! registry did not start"; exit 1; }
img_push "$R_HOST" --dest-tls-verify=false || { echo "Bail out! push failed"; exit 1; }
export SN_TEST_REF="$R_HOST/test/multi:v1" SN_TEST_LAYOUT="$IMG_LAYOUT" \
    SN_TEST_MANIFEST="$IMG_MULTI_MANIFEST"
T="$top_builddir/tests/unit/test-registry"

tap_run "read" "$T" read
tap_run "push" "$T" push
tap_run "threads" "$T" concurrency
check "range requests reached the registry as 206" \
    grep -q "\"GET /v2/test/multi/blobs/$IMG_MULTI_LAYER1 HTTP/1.1\" 206 " "$R_LOG"
check "the referrers fallback tag was read" \
    grep -q '"GET /v2/test/multi-pushed/manifests/sha256-[0-9a-f]\{64\} HTTP/1.1" 200' "$R_LOG"

finish
