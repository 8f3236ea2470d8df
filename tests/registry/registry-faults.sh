#!/bin/bash
# soci-nbd tests: the registry client through tests/registry/fault-proxy.py
# in front of a token-auth registry: corrupted, truncated, reset, delayed
# responses, 500/503/429, 200 instead of 206, and a cross-host redirect of
# blob GETs that must not carry the Authorization header.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

PW=s3cret-Pa55
tok_start T --user "alice:$PW" || { echo "Bail out! token server did not start"; exit 1; }
reg_start R --token T || { echo "Bail out! registry did not start"; exit 1; }
img_push "$R_HOST" --dest-tls-verify=false --dest-creds "alice:$PW" ||
    { echo "Bail out! push failed"; exit 1; }
fault_start F "$R_URL" || { echo "Bail out! fault proxy did not start"; exit 1; }

tap_run "faults" env SN_TEST_REF="$F_HOST/test/multi:v1" SN_TEST_LAYOUT="$IMG_LAYOUT" \
    SN_TEST_MANIFEST="$IMG_MULTI_MANIFEST" SN_TEST_USER=alice SN_TEST_PASS="$PW" \
    SN_TEST_CONTROL="$F_CONTROL" "$top_builddir/tests/unit/test-registry" faults

check "the proxy log records injected faults" grep -q '"action": "corrupt"' "$F_LOG"
check "redirect: the client followed to the other host" \
    python3 - "$F_LOG" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
red = [r for r in recs if r["listener"] == "redirect"]
assert red, "no request reached the redirect target"
assert all(r["status"] in (200, 206) for r in red), red
PY
check "redirect: Authorization was sent to the registry" \
    python3 - "$F_LOG" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
main = [r for r in recs if r["listener"] == "main" and r.get("action") == "redirect"]
assert main and all("Authorization" in r["headers"] for r in main), main[:2]
PY
check "redirect: no Authorization header at the redirect target" \
    python3 - "$F_LOG" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
bad = [r for r in recs if r["listener"] == "redirect"
       and any(k.lower() in ("authorization", "cookie") for k in r["headers"])]
assert not bad, bad
PY

finish
