#!/bin/bash
# soci-nbd tests: "soci-nbd inspect" against a registry serving TLS with a
# certificate from a test CA made with openssl (SAN IP:127.0.0.1 and
# DNS:localhost): --cacert, failure without it, --insecure.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
reg_start R --tls || { echo "Bail out! registry did not start"; exit 1; }
img_push "$R_HOST" --dest-cert-dir "$REG_CERT_DIR" || { echo "Bail out! push failed"; exit 1; }
M="manifest $IMG_MULTI_MANIFEST application/vnd.oci.image.manifest.v1+json $IMG_MULTI_MANIFEST_SIZE"

check "TLS with --cacert" bash -o pipefail -c "'$SN' inspect --cacert '$REG_CA' '$R_HOST/test/multi:v1' > '$TMP/o' && grep -qx '$M' '$TMP/o'"
check "TLS with --cacert, host name localhost" bash -o pipefail -c "'$SN' inspect --cacert '$REG_CA' 'localhost:$R_PORT/test/multi:v1' | grep -qx '$M'"
check "the registry saw the request over TLS" grep -q '"GET /v2/test/multi/manifests/v1 HTTP/[12].*" 200' "$R_LOG"
check_fails "TLS without the CA: certificate error" "certificate" \
    "$SN" inspect "$R_HOST/test/multi:v1"
# A CA that did not sign the server certificate.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -keyout "$TMP/other.key" \
    -out "$TMP/other.pem" -subj "/CN=other CA" >/dev/null 2>&1
check_fails "TLS with the wrong CA: certificate error" "certificate" \
    "$SN" inspect --cacert "$TMP/other.pem" "$R_HOST/test/multi:v1"
# A missing CA file is our configuration error: it must be reported as
# such, not mistaken for "no HTTPS here" and downgraded to plain HTTP.
check_fails "missing --cacert file: an error naming it" "nope.pem" \
    "$SN" inspect --cacert "$TMP/nope.pem" "$R_HOST/test/multi:v1"
check "TLS with --insecure" bash -o pipefail -c "'$SN' inspect --insecure '$R_HOST/test/multi:v1' | grep -qx '$M'"

finish
