#!/bin/bash
# soci-nbd tests: "soci-nbd inspect" against a real registry over plain
# HTTP (distribution 2.8 on 127.0.0.1): OCI and Docker media types,
# multi-arch selection, digests, --raw, not-found errors, and the same
# image from its OCI layout.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
reg_start R || { echo "Bail out! registry did not start"; exit 1; }
img_push "$R_HOST" --dest-tls-verify=false || { echo "Bail out! push failed"; exit 1; }

OCI_M=application/vnd.oci.image.manifest.v1+json
OCI_I=application/vnd.oci.image.index.v1+json
OCI_L=application/vnd.oci.image.layer.v1.tar+gzip
DK_M=application/vnd.docker.distribution.manifest.v2+json
DK_I=application/vnd.docker.distribution.manifest.list.v2+json
DK_L=application/vnd.docker.image.rootfs.diff.tar.gzip

# expect_lines FILE LINE...: FILE has exactly these lines, in order.
expect_lines() {
    local f=$1; shift
    diff <(printf '%s\n' "$@") "$f"
}

check "inspect over plain HTTP" bash -o pipefail -c "'$SN' inspect '$R_HOST/test/multi:v1' > '$TMP/multi.out'"
# (LeakSanitizer cannot run under ptrace: no leak check for this one.)
check "the HTTPS probe of a loopback registry loads no CA bundle (no certificate check for it)" \
    bash -c "ASAN_OPTIONS=\"\${ASAN_OPTIONS:-}:detect_leaks=0\" strace -f -e trace=openat -o '$TMP/probe.strace' '$SN' inspect '$R_HOST/test/multi:v1' > /dev/null &&
             grep -q 'openat' '$TMP/probe.strace' && ! grep -q 'ca-certificates\|/etc/ssl/certs' '$TMP/probe.strace'"
check_fails "a missing --cacert file is an error even when the registry speaks plain HTTP" \
    "CA certificate file $TMP/nope.pem: No such file or directory" \
    "$SN" inspect --cacert "$TMP/nope.pem" "$R_HOST/test/multi:v1"
check "manifest, config and layers as pushed" expect_lines "$TMP/multi.out" \
    "manifest $IMG_MULTI_MANIFEST $OCI_M $IMG_MULTI_MANIFEST_SIZE" \
    "config $IMG_MULTI_CONFIG application/vnd.oci.image.config.v1+json $(stat -c %s "$IMG_LAYOUT/blobs/sha256/${IMG_MULTI_CONFIG#sha256:}")" \
    "layer $IMG_MULTI_LAYER0 $OCI_L $IMG_MULTI_LAYER0_SIZE" \
    "layer $IMG_MULTI_LAYER1 $OCI_L $IMG_MULTI_LAYER1_SIZE" \
    "layer $IMG_MULTI_LAYER2 $OCI_L $IMG_MULTI_LAYER2_SIZE"
check "the registry's access log shows the manifest request" \
    grep -q '"GET /v2/test/multi/manifests/v1 HTTP/1.1" 200' "$R_LOG"
check "inspect by digest" bash -o pipefail -c "'$SN' inspect '$R_HOST/test/multi@$IMG_MULTI_MANIFEST' | cmp - '$TMP/multi.out'"
check "inspect --raw prints the manifest bytes" \
    bash -o pipefail -c "'$SN' inspect --raw '$R_HOST/test/multi:v1' | cmp - '$IMG_LAYOUT/blobs/sha256/${IMG_MULTI_MANIFEST#sha256:}'"
check "inspect of the OCI layout gives the same" \
    bash -o pipefail -c "'$SN' inspect 'oci-layout:$IMG_LAYOUT:multi' | cmp - '$TMP/multi.out'"

# Multi-arch: the index and the chosen platform.
for p in "linux/amd64 AMD64 linux/amd64" "linux/arm64/v8 ARM64 linux/arm64/v8" \
         "linux/arm64 ARM64 linux/arm64/v8" "linux/arm/v7 ARMV7 linux/arm/v7"; do
    set -- $p
    want=$(eval echo "\$IMG_ARCH_$2")
    check "multi-arch --platform $1" bash -o pipefail -c "'$SN' inspect --platform '$1' '$R_HOST/test/multiarch:v1' > '$TMP/arch.out'"
    check "multi-arch $1: index, platform $3, manifest" bash -c "
        grep -qx 'index $IMG_ARCH_INDEX $OCI_I' '$TMP/arch.out' &&
        grep -qx 'platform $3' '$TMP/arch.out' &&
        grep -q '^manifest $want $OCI_M ' '$TMP/arch.out'"
done
check "multi-arch --raw prints the platform manifest" \
    bash -o pipefail -c "'$SN' inspect --raw --platform linux/arm/v7 '$R_HOST/test/multiarch:v1' | sha256sum | grep -q '^${IMG_ARCH_ARMV7#sha256:} '"
check_fails "unknown platform: error lists the available ones" \
    'linux/s390x.*linux/amd64.*linux/arm64/v8.*linux/arm/v7' \
    "$SN" inspect --platform linux/s390x "$R_HOST/test/multiarch:v1"

# Docker media types (skopeo --format v2s2).
check "inspect a Docker schema 2 image" bash -o pipefail -c "'$SN' inspect '$R_HOST/test/docker:v1' > '$TMP/docker.out'"
check "Docker manifest and layer media types" bash -c "
    grep -qx 'manifest $PUSHED_DOCKER_MANIFEST $DK_M [0-9]*' '$TMP/docker.out' &&
    [ \$(grep -c '^layer sha256:[0-9a-f]* $DK_L [0-9]*\$' '$TMP/docker.out') = 3 ] &&
    grep -q '^layer $IMG_MULTI_LAYER1 $DK_L $IMG_MULTI_LAYER1_SIZE\$' '$TMP/docker.out'"
check "inspect a Docker manifest list" bash -o pipefail -c "'$SN' inspect --platform linux/arm64/v8 '$R_HOST/test/dockerlist:v1' > '$TMP/dlist.out'"
check "manifest list: index line and platform" bash -c "
    grep -qx 'index $PUSHED_DOCKERLIST_INDEX $DK_I' '$TMP/dlist.out' &&
    grep -qx 'platform linux/arm64/v8' '$TMP/dlist.out' &&
    grep -q '^manifest sha256:[0-9a-f]* $DK_M ' '$TMP/dlist.out' &&
    grep -q '^layer $IMG_ARCH_ARM64_LAYER $DK_L ' '$TMP/dlist.out'"

# Not found: repository, tag, manifest digest.
Z=sha256:0000000000000000000000000000000000000000000000000000000000000000
check_fails "unknown repository" "test/nope" "$SN" inspect "$R_HOST/test/nope:v1"
check_fails "unknown tag" "no-such-tag" "$SN" inspect "$R_HOST/test/multi:no-such-tag"
check_fails "unknown manifest digest" "$Z" "$SN" inspect "$R_HOST/test/multi@$Z"
check_fails "nothing listening" "127.0.0.1:1" "$SN" inspect "127.0.0.1:1/test/multi:v1"

# Command line.
check "inspect --help" bash -o pipefail -c "'$SN' inspect --help | grep -q '^Usage: soci-nbd inspect'"
check "usage lists inspect" bash -o pipefail -c "'$SN' --help | grep -q '^  inspect'"
check_fails "missing IMAGE" "expected one IMAGE argument" "$SN" inspect
check_fails "--username without --password-stdin" "needs --password-stdin" \
    "$SN" inspect -u alice "$R_HOST/test/multi:v1"
check_fails "bad platform" "invalid platform" "$SN" inspect --platform / "$R_HOST/test/multi:v1"

finish
