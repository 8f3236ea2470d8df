#!/bin/bash
# soci-nbd tests: authentication against real registries — htpasswd Basic
# auth and token auth (tests/registry/token-server.py issuing 5-second
# JWTs) — good and bad credentials, docker config.json, no secret in any
# output, and token refresh during a 12-second run of range reads.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
PW=s3cret-Pa55
BAD=wrong-XYZZY-pw
reg_start B --htpasswd alice "$PW" || { echo "Bail out! registry did not start"; exit 1; }
img_push "$B_HOST" --dest-tls-verify=false --dest-creds "alice:$PW" ||
    { echo "Bail out! push failed"; exit 1; }
M="manifest $IMG_MULTI_MANIFEST application/vnd.oci.image.manifest.v1+json $IMG_MULTI_MANIFEST_SIZE"

# no_secret FILE...: none of the files contains a password.
no_secret() { ! grep -q -e "$PW" -e "$BAD" "$@"; }

# --- htpasswd (Basic) ---------------------------------------------------
check "basic: good credentials" bash -o pipefail -c "echo '$PW' | '$SN' inspect -u alice --password-stdin '$B_HOST/test/multi:v1' > '$TMP/o' && grep -qx '$M' '$TMP/o'"
check_fails "basic: no credentials: authentication error" "authenticat" \
    "$SN" inspect "$B_HOST/test/multi:v1"
check_fails "basic: bad password: authentication error" "authenticat" \
    bash -c "echo '$BAD' | '$SN' inspect -u alice --password-stdin '$B_HOST/test/multi:v1'"
check "basic: the password is not in the output" no_secret "$TMP/.out" "$TMP/.err"
echo "{\"auths\": {\"$B_HOST\": {\"auth\": \"$(printf 'alice:%s' "$PW" | base64 -w0)\"}}}" > "$TMP/config.json"
check "basic: --auth-file" bash -o pipefail -c "'$SN' inspect --auth-file '$TMP/config.json' '$B_HOST/test/multi:v1' | grep -qx '$M'"
mkdir -p "$TMP/dockercfg" && cp "$TMP/config.json" "$TMP/dockercfg/config.json"
check "basic: \$DOCKER_CONFIG/config.json" bash -o pipefail -c "DOCKER_CONFIG='$TMP/dockercfg' '$SN' inspect '$B_HOST/test/multi:v1' | grep -qx '$M'"
check "basic: verbose output has no secret" bash -o pipefail -c "echo '$PW' | '$SN' inspect -v -u alice --password-stdin '$B_HOST/test/multi:v1' > '$TMP/v.out' 2>&1; ! grep -q -e '$PW' -e 'Basic [A-Za-z0-9+/=]\{8,\}' '$TMP/v.out'"

# --- token auth -----------------------------------------------------------
tok_start T --user "alice:$PW" --expiry 5 || { echo "Bail out! token server did not start"; exit 1; }
reg_start K --token T || { echo "Bail out! registry did not start"; exit 1; }
img_push "$K_HOST" --dest-tls-verify=false --dest-creds "alice:$PW" ||
    { echo "Bail out! push failed"; exit 1; }
n0=$(grep -c . "$T_LOG")
check "token: good credentials" bash -o pipefail -c "echo '$PW' | '$SN' inspect -u alice --password-stdin '$K_HOST/test/multi:v1' > '$TMP/o' && grep -qx '$M' '$TMP/o'"
check "token: the token server authenticated alice for soci-nbd" \
    bash -c "tail -n +$((n0 + 1)) '$T_LOG' | grep '\"status\": 200' | grep '\"sub\": \"alice\"' | grep -q 'soci-nbd'"
check "token: the scope asked for is pull on test/multi" \
    bash -c "tail -n +$((n0 + 1)) '$T_LOG' | grep -q 'repository:test/multi:pull'"
check_fails "token: bad password: authentication error" 'authentication failed.*credentials' \
    bash -c "echo '$BAD' | '$SN' inspect -u alice --password-stdin '$K_HOST/test/multi:v1'"
check "token: the password is not in the output" no_secret "$TMP/.out" "$TMP/.err"
check_fails "token: no credentials: authentication error" 'authentication failed.*anonymous' \
    "$SN" inspect "$K_HOST/test/multi:v1"
check "token: no password in the registry's or token server's logs" no_secret "$K_LOG" "$T_LOG"

# A realm on another site (the same token server, advertised as
# "localhost" to a registry at 127.0.0.1): the credentials never go there.
reg_start KX --token T --realm-host localhost ||
    { echo "Bail out! registry did not start"; exit 1; }
n0=$(grep -c . "$T_LOG")
check_fails "token: realm on another site: credentials refused in one line" \
    "refusing to send credentials to the token realm http://localhost:$T_PORT/token (not on the registry's site)" \
    bash -c "echo '$PW' | '$SN' inspect -u alice --password-stdin '$KX_HOST/test/multi:v1'"
check "token: the other site's token server got no request with credentials" \
    bash -c "! tail -n +$((n0 + 1)) '$T_LOG' | grep -q alice"
check "token: the password is not in the message" no_secret "$TMP/.out" "$TMP/.err"

# Refresh: 12 s of range reads with 5 s tokens (the registry really
# rejects them after 5 s: see token-server.py).
n1=$(grep -c '"status": 200' "$T_LOG")
tap_run "token refresh" env SN_TEST_REF="$K_HOST/test/multi:v1" SN_TEST_LAYOUT="$IMG_LAYOUT" \
    SN_TEST_MANIFEST="$IMG_MULTI_MANIFEST" SN_TEST_USER=alice SN_TEST_PASS="$PW" \
    SN_TEST_SECONDS=12 "$top_builddir/tests/unit/test-registry" refresh
n2=$(grep -c '"status": 200' "$T_LOG")
check "token: new tokens were fetched during the run ($((n2 - n1)) >= 3)" test $((n2 - n1)) -ge 3

finish
