#!/bin/bash
# soci-nbd tests: a soak of the read path against a lying registry.
#
# A real docker-registry holds three layers with SOCI ztocs at 64 KiB
# spans; nbdkit with the soci plugin serves them through
# tests/registry/fault-proxy.py, whose "chaos" rule gives each blob request
# a random fault with probability 0.3 (a flipped byte, a truncated body, a
# reset before or during the body, a 200 with the whole blob instead of a
# 206, a 500/502/503/429 with or without Retry-After), from a seeded
# generator.  The span cache is tiny, so spans are fetched again and again.
# tests/helpers/nbd-soak makes SOAK_READS random reads (default 10,000; 3,000 in
# the ASan build) over the flat export on 16 connections and compares every
# byte with `soci-nbd mkfs` of the same layers: a read may fail (EIO), it
# may never return other bytes.  Then the faults stop: every read must
# succeed (full recovery, nothing poisoned), a whole copy must equal the
# reference, and the server must stop cleanly.  The figures are printed.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
SOAK=$top_builddir/tests/helpers/nbd-soak
IMGPY="python3 $top_srcdir/tests/helpers/plugin-image.py"
require_tools nbdkit nbdcopy python3
nbdkit_asan_wrapper "$PLUGIN"
trap srv_cleanup EXIT

SEED=${SOAK_SEED:-$(( $(date +%s) % 100000 ))}
if ldd "$PLUGIN" 2>/dev/null | grep -q libasan; then
    READS=${SOAK_READS:-3000}
else
    READS=${SOAK_READS:-10000}
fi
echo "# seed $SEED (SOAK_SEED=$SEED to repeat), $READS reads"

python3 "$top_srcdir/tests/helpers/mkfs-tree.py" gen "$TMP"
gzip -n "$TMP/L1.tar"
gzip -n "$TMP/L3.tar"
L1=$TMP/L1.tar.gz L2=$TMP/L2.tar L3=$TMP/L3.tar.gz
for l in "$L1" "$L2" "$L3"; do
    "$SN" ztoc create -q -s 64K -o "$l.ztoc" "$l" ||
        { echo "Bail out! ztoc create $l"; exit 1; }
done
"$SN" mkfs -q -o "$TMP/ref.sqfs" "$L1" "$L2" "$L3" ||
    { echo "Bail out! mkfs"; exit 1; }
reg_start R || { echo "Bail out! registry did not start"; exit 1; }
$IMGPY push "$R_URL" test/soak "$L1" "$L2" "$L3" \
    --ztoc "$L1=$L1.ztoc" --ztoc "$L2=$L2.ztoc" --ztoc "$L3=$L3.ztoc" > /dev/null ||
    { echo "Bail out! push failed"; exit 1; }
fault_start F "$R_URL" || { echo "Bail out! fault proxy did not start"; exit 1; }

SOCK=$TMP/soak.sock
URI="nbd+unix:///?socket=$SOCK"
check "server through the fault proxy (64 KiB spans, 256 KiB span cache)" \
    plugin_start "$SOCK" "$F_HOST/test/soak:v2" cache-size=256K \
        stats-file="$TMP/stats.json"
check "before the faults: the flat export = soci-nbd mkfs of the layers" bash -c "
    nbdcopy '$URI' '$TMP/before.sqfs' && cmp '$TMP/before.sqfs' '$TMP/ref.sqfs'"

fault_set F "{\"rules\": [{\"action\": \"chaos\", \"seed\": $SEED, \"p\": 0.3,
    \"match\": {\"path\": \"/blobs/sha256:\"}}]}"
n0=$(grep -c . "$F_LOG")
t0=$(date +%s.%N)
"$SOAK" "$URI" "$TMP/ref.sqfs" 16 "$READS" "$SEED" faults > "$TMP/soak.out" 2> "$TMP/soak.err"
st=$?
t1=$(date +%s.%N)
sed 's/^/# /' "$TMP/soak.out"
grep -m5 WRONG "$TMP/soak.err" | sed 's/^/# /'
check "soak: $READS random reads under random faults, 0 wrong bytes (status $st)" \
    bash -c "test $st = 0 && grep -q ' wrong 0\$' '$TMP/soak.out'"
python3 - "$F_LOG" "$n0" "$t0" "$t1" > "$TMP/faults.txt" <<'PY'
import collections, json, sys
recs = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]]
chaos = [r for r in recs if r.get("chaos")]
kinds = collections.Counter(
    "status %d" % r["status"] if r["action"] == "status"
    else "reset before the response" if r["action"] == "reset" and r.get("status") == 0
    else r["action"] for r in chaos)
print("%d blob requests in %.1f s, %d with an injected fault:" %
      (len(recs), float(sys.argv[4]) - float(sys.argv[3]), len(chaos)))
for k, v in sorted(kinds.items()):
    print("  %-28s %d" % (k, v))
PY
sed 's/^/# /' "$TMP/faults.txt"
check "every kind of fault was injected" bash -c "
    for k in corrupt truncate reset full200 'status 50' 'status 429'; do
        grep -q \"  \$k\" '$TMP/faults.txt' || { echo \"no \$k\"; exit 1; }
    done"
check "the server rejected corrupted spans (spans_failed > 0 in its stats)" \
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(not sum(l["spans_failed"] for l in s["layers"]) > 0)' "$TMP/stats.json"

# Recovery: no faults any more; every read must now succeed.
fault_set F '{"rules": []}'
check "after the faults: 2,000 reads, every one right (full recovery)" \
    "$SOAK" "$URI" "$TMP/ref.sqfs" 4 2000 "$((SEED + 1))" clean
check "after the faults: a whole copy = the reference" bash -c "
    nbdcopy '$URI' '$TMP/after.sqfs' && cmp '$TMP/after.sqfs' '$TMP/ref.sqfs'"
plugin_stop "$SOCK"
finish
