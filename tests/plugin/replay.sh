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
#     The start-up fetches (both dense tables, the record) overlap.
#  3. prefetch=none replays nothing; a corrupted record blob is not
#     replayed (one line in the log) and the image is still served;
#  3b. a replay through a registry that fails 30% of its answers at
#     random (corrupt, truncated, reset, 5xx): every read gives the right
#     bytes or EIO, never others; the server stops cleanly; once the
#     registry is sound every file reads right;
#  4. what is attached: SOCI prefetch artifacts naming exactly the spans
#     of the recorded ranges (from the ztoc), the record's canonical bytes
#     in the dense index, the ztocs and dense blobs unchanged; convert
#     --prefetch-record attaches the same; prefetch add to another
#     repository copies what is missing and to an OCI layout works; a
#     record naming a foreign layer, an image without a SOCI index, a
#     malformed, empty or missing record file: one line, exit status 1.
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

# The start-up fetches (the dense tables of both layers and the record)
# are made at once: each takes 0.5 s here, and they overlap.
fault_set F '{"rules": [{"match": {"range": false}, "action": "delay", "seconds": 0.5}]}'
P0=$(wc -l < "$F_LOG")
check "server with every whole blob fetch taking 0.5 s" \
    plugin_start "$SOCK" "$F_HOST/test/rp:rec" prefetch=auto
plugin_stop "$SOCK"
fault_set F '{"rules": []}'
check "the dense tables and the record were fetched at once (their requests overlap)" \
    python3 - "$F_LOG" "$P0" <<'PY'
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]]
blobs = [r for r in reqs if "/blobs/" in r["path"] and "range" not in
         {k.lower() for k in r.get("headers", {})}]
# the first three whole-blob GETs after the manifests: 2 tables, 1 record
first = sorted(blobs, key=lambda r: float(r["start"]))[:3]
print("starts:", [r["start"] for r in first], "answered:", [r["time"] for r in first])
late_start = max(float(r["start"]) for r in first)
early_end = min(float(r["time"]) for r in first)
sys.exit(0 if len(first) == 3 and late_start < early_end else 1)
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

# ---- 3b. replay against a lying registry ----------------------------------------
# read_or_eio URI FILE...: each read gives the export's bytes or fails;
# prints how many failed.
read_or_eio() {
    local uri=$1 f s n bad=0; shift
    for f in "$@"; do
        set -- $(frange "/data/$f")
        s=$1 n=$2
        if "$NBDREAD" "$uri" "$s" "$n" > "$TMP/got" 2>/dev/null; then
            tail -c +$((s + 1)) "$TMP/flat.img" | head -c "$n" | cmp -s - "$TMP/got" ||
                { echo "wrong bytes for $f"; return 1; }
        else
            bad=$((bad + 1))
        fi
    done
    echo "$bad reads failed (EIO)"
}
fault_set F "{\"rules\": [{\"match\": {\"path\": \"/blobs/\", \"range\": true}, \"action\": \"chaos\", \"seed\": 7, \"p\": 0.3}]}"
check "server on the record image behind a registry failing 30% of range answers" \
    plugin_start "$SOCK" "$F_HOST/test/rp:rec" stats-file="$TMP/st6.json"
# shellcheck disable=SC2086
check "while it replays: every recorded file right or EIO, never other bytes" read_or_eio "$URI" $ORDER
fault_set F '{"rules": []}'
# shellcheck disable=SC2086
check "once the registry is sound: every recorded file right" read_files "$URI" $ORDER
plugin_stop "$SOCK"
check "the replay ran to its end despite the faults" stats_ok "$TMP/st6.json" \
    "s['replay_runs'] == $NRUNS and s['replay_runs_done'] == $NRUNS"

# ---- 4. what is attached -------------------------------------------------------
# docs IMAGE-INDEX-JSON: "IMAGE SOCI DENSE" digests.
docs() {
    python3 -c '
import json, sys
x = json.load(sys.stdin)
img = [m for m in x["manifests"] if "artifactType" not in m]
soci = [m for m in x["manifests"] if m.get("artifactType") == "application/vnd.amazon.soci.index.v2+json"]
dense = [m for m in x["manifests"] if m.get("artifactType") == "application/vnd.soci-nbd.dense-index.v1"]
print(img[0]["digest"], soci[0]["digest"], dense[0]["digest"] if dense else "-")'
}
get() {  # manifest|blob REF (of test/rp, or REPO/REF)
    local repo=test/rp ref=$2
    case $ref in */*) repo=${ref%%:*}; ref=${ref#*:} ;; esac
    python3 - "$R_URL" "$1" "$repo" "$ref" <<'PY'
import sys, urllib.request
base, what, repo, ref = sys.argv[1:5]
kind = "manifests" if what == "manifest" else "blobs"
rq = urllib.request.Request("%s/v2/%s/%s/%s" % (base, repo, kind, ref))
rq.add_header("Accept", "application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json")
sys.stdout.buffer.write(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(rq, timeout=10).read())
PY
}
read -r _ SOCI0 DENSE0 < <(get manifest soci | docs)
read -r _ SOCI1 DENSE1 < <(get manifest rec | docs)
get manifest "$SOCI0" > "$TMP/soci0.json"; get manifest "$SOCI1" > "$TMP/soci1.json"
get manifest "$DENSE0" > "$TMP/dense0.json"; get manifest "$DENSE1" > "$TMP/dense1.json"
ZTOC0=$(python3 -c 'import json,sys; print([l["digest"] for l in json.load(open(sys.argv[1]))["layers"] if l["mediaType"] == "application/octet-stream"][0])' "$TMP/soci0.json")
get blob "$ZTOC0" > "$TMP/l0.ztoc"
check "the ztoc of layer 0, as JSON" bash -c "'$SN' ztoc info '$TMP/l0.ztoc' > '$TMP/l0.json'"
PF=$(python3 -c 'import json,sys; print([l["digest"] for l in json.load(open(sys.argv[1]))["layers"] if l["mediaType"] == "application/vnd.amazon.soci.prefetch.v1+json"][0])' "$TMP/soci1.json" 2>/dev/null)
REC1=$(python3 -c 'import json,sys; print([l["digest"] for l in json.load(open(sys.argv[1]))["layers"] if l["mediaType"] == "application/vnd.soci-nbd.prefetch-record.v1+json"][0])' "$TMP/dense1.json" 2>/dev/null)
check "the SOCI index's prefetch artifact names exactly the spans of the recorded ranges" \
    python3 - "$TMP/l0.json" "$TMP/rec.json" <(get blob "$PF") <<'PY'
import json, sys
z, rec, pf = (json.load(open(f)) for f in sys.argv[1:4])
want = set()
for l, off, n in rec["ranges"]:
    want |= {s["id"] for s in z["spans"] if s["uncompressed_start"] < off + n and s["uncompressed_end"] > off}
got = set()
for s in pf["prefetch_spans"]:
    got |= set(range(s["start_span"], s["end_span"] + 1))
assert pf["version"] == "1.0"
assert got == want, (sorted(got), sorted(want))
PY
check "the dense index carries the record, in canonical form" \
    python3 - "$TMP/rec.json" <(get blob "$REC1") "$TMP/dense1.json" <<'PY'
import json, sys
rec, blob, dm = json.load(open(sys.argv[1])), open(sys.argv[2], "rb").read(), json.load(open(sys.argv[3]))
canon = json.dumps({"mediaType": rec["mediaType"], "layers": rec["layers"], "ranges": rec["ranges"]},
                   separators=(",", ":")).encode()
assert blob == canon, (blob[:200], canon[:200])
assert len([l for l in dm["layers"] if l["mediaType"] == rec["mediaType"]]) == 1
PY
check "ztoc descriptors and dense tables and windows unchanged" python3 - \
    "$TMP/soci0.json" "$TMP/soci1.json" "$TMP/dense0.json" "$TMP/dense1.json" <<'PY'
import json, sys
s0, s1, d0, d1 = (json.load(open(f)) for f in sys.argv[1:5])
z = lambda s: [l for l in s["layers"] if l["mediaType"] == "application/octet-stream"]
assert z(s0) == z(s1)
rec = "application/vnd.soci-nbd.prefetch-record.v1+json"
assert d0["layers"] == [l for l in d1["layers"] if l["mediaType"] != rec]
PY
check "convert --prefetch-record attaches the same artifact and record" bash -c "
    '$SN' convert -q --min-layer-size 0 --prefetch-record '$TMP/rec.json' '$R_HOST/test/rp:v1' '$R_HOST/test/rp:conv' > /dev/null"
read -r _ SOCI2 DENSE2 < <(get manifest conv | docs)
check "... (same digests)" python3 - "$PF" "$REC1" <(get manifest "$SOCI2") <(get manifest "$DENSE2") <<'PY'
import json, sys
pf, rec, s, d = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
assert [l["digest"] for l in s["layers"] if l["mediaType"].startswith("application/vnd.amazon.soci.prefetch")] == [pf]
assert [l["digest"] for l in d["layers"] if l["mediaType"].startswith("application/vnd.soci-nbd.prefetch-record")] == [rec]
PY
check "prefetch add to another repository" "$SN" prefetch add -q \
    "$R_HOST/test/rp:soci" "$TMP/rec.json" "$R_HOST/other/rp:rec"
check "... served from there, the record replayed" bash -c "
    nbdkit -U - -r '$PLUGIN' '$R_HOST/other/rp:rec' stats-file='$TMP/st5.json' \
        --run 'nbdcopy \"\$uri\" $TMP/flat5.img' && cmp '$TMP/flat.img' '$TMP/flat5.img' &&
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s[\"replay_runs\"] == $NRUNS else 1)' '$TMP/st5.json'"
check "prefetch add into an OCI layout" bash -c "
    '$SN' prefetch add -q '$R_HOST/test/rp:soci' '$TMP/rec.json' 'oci-layout:$TMP/out:rec' > /dev/null &&
    '$SN' index list 'oci-layout:$TMP/out:rec' | grep -q dense"
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
r["layers"] = r["layers"] + ["sha256:" + "ab" * 32]
r["ranges"].append([1, 0, 10])
json.dump(r, open(sys.argv[2], "w"))' "$TMP/rec.json" "$TMP/foreign.json"
check_fails "prefetch add: a record naming a layer the image does not have" \
    "names layer sha256:abab.* which the image does not have" \
    "$SN" prefetch add -q "$R_HOST/test/rp:soci" "$TMP/foreign.json" "$R_HOST/test/rp:x"
check_fails "convert: the same" "names layer sha256:abab.* which the image does not have" \
    "$SN" convert -q --min-layer-size 0 --prefetch-record "$TMP/foreign.json" \
        "$R_HOST/test/rp:v1" "$R_HOST/test/rp:x"
check_fails "prefetch add: an image without a SOCI index" "has no SOCI index" \
    "$SN" prefetch add -q "$R_HOST/test/rp:v1" "$TMP/rec.json" "$R_HOST/test/rp:x"
echo '{"mediaType": "application/vnd.soci-nbd.prefetch-record.v1+json", "layers": [], "ranges": [[0, 1, 2]]}' > "$TMP/bad.json"
check_fails "a malformed record" "bad.json: prefetch record: ranges\[0\]: layer 0 of 0" \
    "$SN" prefetch add -q "$R_HOST/test/rp:soci" "$TMP/bad.json" "$R_HOST/test/rp:x"
echo '{"mediaType": "application/vnd.soci-nbd.prefetch-record.v1+json", "layers": [], "ranges": []}' > "$TMP/empty.json"
check_fails "an empty record" "empty.json: the record is empty" \
    "$SN" prefetch add -q "$R_HOST/test/rp:soci" "$TMP/empty.json" "$R_HOST/test/rp:x"
check_fails "a missing record file" "nothing.json" \
    "$SN" convert -q --prefetch-record "$TMP/nothing.json" "$R_HOST/test/rp:v1" "$R_HOST/test/rp:x"
no_tag_x() { ! get manifest x > /dev/null 2>&1; }
check "none of them wrote a tag" no_tag_x

finish
