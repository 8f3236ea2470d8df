#!/bin/bash
# soci-nbd tests: prefetch records (docs/prefetch-record.md), end to end
# against a real registry (distribution on 127.0.0.1) and a fault proxy.
#  1. record=FILE: a run reading files in a chosen order writes, at
#     SIGTERM, exactly those files' tar data ranges in that order (checked
#     against Python's tarfile); record-idle ends a record at the first
#     idle gap while the server runs, and later reads are not added;
#  2. "soci-nbd prefetch add" attaches it; prefetch=auto (the default)
#     replays it at start on a fresh server: a read arriving mid-replay is
#     served before the queued prefetch, every span is fetched once (no
#     two range requests overlap), every replayed byte is used by the
#     recorded reads, and every file (and the whole export) is byte for
#     byte what the image holds;
#  3. prefetch=none replays nothing; a corrupted record blob is not
#     replayed (one line in the log) and the image is still served.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
NBDREAD=$top_builddir/tests/helpers/nbd-read
IMGPY="python3 $top_srcdir/tests/helpers/plugin-image.py"

nbdkit_asan_wrapper "$PLUGIN"
require_tools nbdkit nbdcopy skopeo rdsquashfs
for f in "$PLUGIN" "$NBDREAD"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "Bail out! $f not built"; exit 1; }
done

NBDKIT_PIDS=""
trap 'for p in $NBDKIT_PIDS; do kill "$p" 2>/dev/null; done; srv_cleanup' EXIT

reg_start R || { echo "Bail out! registry did not start"; exit 1; }
fault_start F "$R_URL" || { echo "Bail out! fault proxy did not start"; exit 1; }
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$TMP/policy.json"

# A layer of 40 incompressible 40 KiB files f00..f39, each followed by a
# 48 KiB filler g00..g39 (so that no two f files share or neighbour a
# sub-span), and a small second layer.
python3 - "$TMP" <<'PY' || { echo "Bail out! layers"; exit 1; }
import io, os, random, sys, tarfile
tmp = sys.argv[1]
rnd = random.Random(12)
def add(t, name, data):
    ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1700000000
    t.addfile(ti, io.BytesIO(data))
with tarfile.open(tmp + "/L0.tar", "w", format=tarfile.PAX_FORMAT) as t:
    for i in range(40):
        add(t, "data/f%02d" % i, rnd.randbytes(40 << 10))
        add(t, "data/g%02d" % i, rnd.randbytes(48 << 10))
with tarfile.open(tmp + "/L1.tar", "w", format=tarfile.PAX_FORMAT) as t:
    add(t, "etc/hello", b"hello\n" * 1000)
PY
gzip -n "$TMP/L0.tar" "$TMP/L1.tar"
$IMGPY layout "$TMP/lay" img "$TMP/L0.tar.gz" "$TMP/L1.tar.gz" > /dev/null &&
    skopeo --policy "$TMP/policy.json" copy -q --dest-tls-verify=false \
        "oci:$TMP/lay:img" "docker://$R_HOST/test/rp:v1" ||
    { echo "Bail out! push failed"; exit 1; }
check "convert (dense index)" "$SN" convert -q --min-layer-size 0 \
    "$R_HOST/test/rp:v1" "$R_HOST/test/rp:soci"

# The flat export once, to find each file's bytes (rdsquashfs) and compare.
check "the flat export, copied without prefetch" \
    nbdkit -U - -r "$PLUGIN" "$R_HOST/test/rp:soci" prefetch=none \
        --run "nbdcopy \"\$uri\" '$TMP/flat.img'"
frange() {  # FILE: "START SIZE" of its data in the flat export
    rdsquashfs -s "$1" "$TMP/flat.img" | sed -n 's/^Blocks start: //p;s/^File size: //p' |
        tr '\n' ' ' | awk '{print $2, $1}'
}
# read_files URI FILE...: each file's bytes through the server equal the
# export's copy.
read_files() {
    local uri=$1 f s n; shift
    for f in "$@"; do
        set -- $(frange "/data/$f")
        s=$1 n=$2
        "$NBDREAD" "$uri" "$s" "$n" > "$TMP/got" || return 1
        tail -c +$((s + 1)) "$TMP/flat.img" | head -c "$n" | cmp - "$TMP/got" || return 1
    done
}
# 32 of the files, in an order of their own.
ORDER=$(python3 -c 'import random; r = random.Random(7); f = ["f%02d" % i for i in range(40)]; r.shuffle(f); print(" ".join(f[:32]))')
LAST=${ORDER##* }
NRUNS=32
SOCK=$TMP/s.sock URI="nbd+unix:///?socket=$TMP/s.sock" ST=$TMP/st.json
LAYER0=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"])' \
    "$TMP/lay/blobs/sha256/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"][7:])' "$TMP/lay/index.json")")

# ---- 1. record -------------------------------------------------------------
check "server with record=" plugin_start "$SOCK" "$R_HOST/test/rp:soci" \
    prefetch=none record="$TMP/rec.json" record-idle=0
# shellcheck disable=SC2086
check "the recorded reads give the right bytes" read_files "$URI" $ORDER
check "no record before the end (record-idle=0)" test ! -e "$TMP/rec.json"
plugin_stop "$SOCK"
check "SIGTERM wrote the record: exactly the files' tar data, in read order" \
    python3 - "$TMP/rec.json" "$TMP/L0.tar.gz" "$LAYER0" $ORDER <<'PY'
import json, sys, tarfile
rec = json.load(open(sys.argv[1]))
t = tarfile.open(sys.argv[2])
want = []
for name in sys.argv[4:]:
    m = t.getmember("data/" + name)
    want.append([0, m.offset_data, m.size])
assert rec["mediaType"] == "application/vnd.soci-nbd.prefetch-record.v1+json", rec["mediaType"]
assert rec["layers"] == [sys.argv[3]], rec["layers"]
assert rec["ranges"] == want, (rec["ranges"], want)
PY
check "no temporary file left beside it" bash -c "[ \$(ls '$TMP' | grep -c '^rec\.json') = 1 ]"

check "server with record-idle=0.5" plugin_start "$SOCK" "$R_HOST/test/rp:soci" \
    prefetch=none record="$TMP/rec2.json" record-idle=0.5
check "two reads" read_files "$URI" f05 f07
check "the idle gap ended the record while the server runs" \
    bash -c "for i in \$(seq 100); do [ -s '$TMP/rec2.json' ] && exit 0; sleep 0.1; done; exit 1"
check "a read after the end" read_files "$URI" f08
plugin_stop "$SOCK"
check "the record has the two reads before the gap only" python3 -c "
import json, sys
r = json.load(open('$TMP/rec2.json'))['ranges']
sys.exit(0 if len(r) == 2 else 1)"

# ---- 2. attach and replay ----------------------------------------------------
check "prefetch add attaches the record" "$SN" prefetch add \
    "$R_HOST/test/rp:soci" "$TMP/rec.json" "$R_HOST/test/rp:rec"

# Every range request of the layer takes 0.25 s: the replay of 32 runs
# (at most 6 under way) takes seconds, and a read of the record's last
# file is issued at once.
fault_set F "{\"rules\": [{\"match\": {\"path\": \"/blobs/$LAYER0\", \"range\": true}, \"action\": \"delay\", \"seconds\": 0.25}]}"
P0=$(wc -l < "$F_LOG")
check "fresh server on the image with the record (prefetch=auto)" \
    plugin_start "$SOCK" "$F_HOST/test/rp:rec" stats-file="$ST"
T0=$(date +%s.%N)
check "a read of the record's last file, mid-replay: right bytes" read_files "$URI" "$LAST"
T1=$(date +%s.%N)
check "the replay ends" bash -c "
    for i in \$(seq 300); do
        python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s[\"replay_runs\"] and s[\"replay_runs_done\"] == s[\"replay_runs\"] else 1)' '$ST' 2>/dev/null && exit 0
        sleep 0.1
    done; exit 1"
check "the read was served before the queued prefetch (the proxy's log, once the replay ended: range requests of the layer started after the read ended)" \
    python3 - "$F_LOG" "$P0" "$T1" "$LAYER0" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]
t1 = float(sys.argv[3])
later = [json.loads(l) for l in lines]
later = [r for r in later if sys.argv[4] in r["path"] and "Range" in str(r.get("headers", {}))
         and float(r["start"]) > t1]
print("range requests started after the read ended:", len(later))
sys.exit(0 if len(later) >= 3 else 1)
PY
# shellcheck disable=SC2086
check "every recorded file, then the whole export: the image's bytes" bash -c "
    $(declare -f read_files frange); NBDREAD='$NBDREAD' TMP='$TMP'
    read_files '$URI' $ORDER && nbdcopy '$URI' '$TMP/flat2.img' && cmp '$TMP/flat.img' '$TMP/flat2.img'"
plugin_stop "$SOCK"
fault_set F '{"rules": []}'
check "stats: the record replayed, every replayed byte used by the recorded reads" stats_ok "$ST" \
    "s['prefetch'] == 'auto' and s['prefetch_record'] and s['replay_runs'] == $NRUNS and \
     s['replay_bytes'] > 0 and s['layers'][0]['replay_used_bytes'] == s['layers'][0]['replay_bytes']"
# (Neighbouring sub-spans share the byte holding the bit their checkpoint
# is at.)
check "no byte of the layer fetched twice (range requests overlap by one byte at most)" \
    python3 - "$F_LOG" "$P0" "$LAYER0" <<'PY'
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]
rs = []
for l in lines:
    r = json.loads(l)
    if sys.argv[3] not in r["path"]:
        continue
    m = re.search(r"bytes=(\d+)-(\d+)", json.dumps(r.get("headers", {})))
    if m:
        rs.append((int(m.group(1)), int(m.group(2))))
rs.sort()
print(len(rs), "range requests")
for a, b in zip(rs, rs[1:]):
    if b[0] < a[1]:
        sys.exit("overlap: %r %r" % (a, b))
PY

# ---- 3. prefetch=none, a corrupted record ------------------------------------
check "prefetch=none: nothing replayed, nothing fetched without reads" bash -c "
    nbdkit -U - -r '$PLUGIN' '$R_HOST/test/rp:rec' prefetch=none stats-file='$TMP/st3.json' --run 'sleep 1' &&
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s[\"replay_runs\"] == 0 and s[\"bytes_fetched\"] == 0 else 1)' '$TMP/st3.json'"
REC=$(python3 - "$R_URL" <<'PY'
import json, sys, urllib.request
op = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def get(path, acc):
    rq = urllib.request.Request(sys.argv[1] + path, headers={"Accept": acc})
    return json.load(op.open(rq, timeout=10))
x = get("/v2/test/rp/manifests/rec", "application/vnd.oci.image.index.v1+json")
d = [m for m in x["manifests"] if m.get("artifactType") == "application/vnd.soci-nbd.dense-index.v1"][0]
dm = get("/v2/test/rp/manifests/" + d["digest"], "application/vnd.oci.image.manifest.v1+json")
print([l["digest"] for l in dm["layers"] if l["mediaType"] == "application/vnd.soci-nbd.prefetch-record.v1+json"][0])
PY
)
fault_set F "{\"rules\": [{\"match\": {\"path\": \"/blobs/$REC\"}, \"action\": \"corrupt\"}]}"
set -- $(frange /data/f01)
S1=$1 N1=$2
serve_f01() {
    nbdkit -v -U - -r "$PLUGIN" "$F_HOST/test/rp:rec" stats-file="$TMP/st4.json" \
        --run "'$NBDREAD' \"\$uri\" $S1 $N1 > '$TMP/g4'" 2> "$TMP/e4"
}
check "a corrupted record blob: the image is served" serve_f01
check "... the right bytes" bash -c "tail -c +$((S1 + 1)) '$TMP/flat.img' | head -c $N1 | cmp - '$TMP/g4'"
check "... the record is not replayed, said in the log" grep -q 'prefetch record.*not replayed' "$TMP/e4"
check "... nor in the stats" stats_ok "$TMP/st4.json" "s['replay_runs'] == 0 and s['prefetch_record'] is None"
fault_set F '{"rules": []}'

finish
