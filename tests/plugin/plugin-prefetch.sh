#!/bin/bash
# soci-nbd tests: the plugin's background work and its disk cache.
#  1. prefetch=artifact: the spans of the prefetch artifact that
#     "soci-nbd convert --prefetch-file" wrote are fetched at startup,
#     before any read, and reading that file then fetches nothing;
#  2. prefetch=background: every span of every layer is fetched once, the
#     whole-layer check passes for every layer, nbdcopy while it runs gives
#     the right bytes, cache-dir ends up holding every span;
#  3. the whole-layer check catches a ztoc that lies about a symlink's
#     target — a lie no span digest or tar header check can see, since a
#     symlink has no data: the layer is refused from then on (EIO), the
#     error is logged and counted; verify=false skips the check (and the
#     lie is served, as it is without prefetch=background);
#  4. cache-dir-size bounds the directory (LRU eviction, counted; no
#     symlink followed; a cache-dir others can write is refused), the data
#     stays right; stale temporary files of dead processes are removed at
#     startup, those of live processes kept;
#  5. bad values are refused with one line.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
NBDREAD=$top_builddir/tests/helpers/nbd-read
TREE="python3 $top_srcdir/tests/helpers/mkfs-tree.py"
IMGPY="python3 $top_srcdir/tests/helpers/plugin-image.py"

nbdkit_asan_wrapper "$PLUGIN"
require_tools nbdkit nbdcopy nbdinfo skopeo rdsquashfs
for f in "$PLUGIN" "$NBDREAD"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "Bail out! $f not built"; exit 1; }
done

NBDKIT_PIDS=""
trap 'for p in $NBDKIT_PIDS; do kill "$p" 2>/dev/null; done; srv_cleanup' EXIT

frange() {
    rdsquashfs -s "$2" "$1" | sed -n 's/^Blocks start: //p;s/^File size: //p' |
        tr '\n' ' ' | awk '{print $2, $1}'
}

reg_start R || { echo "Bail out! registry did not start"; exit 1; }
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$TMP/policy.json"

mkdir -p "$TMP/layers"
$TREE gen "$TMP/layers"
gzip -n "$TMP/layers/L1.tar" "$TMP/layers/L3.tar"
L1=$TMP/layers/L1.tar.gz L2=$TMP/layers/L2.tar L3=$TMP/layers/L3.tar.gz
L4=$TMP/layers/L4.tar
$IMGPY layout "$TMP/lay" img "$L1" "$L2" "$L3" "$L4" > /dev/null &&
    skopeo --policy "$TMP/policy.json" copy -q --dest-tls-verify=false \
        "oci:$TMP/lay:img" "docker://$R_HOST/test/img:v1" ||
    { echo "Bail out! push failed"; exit 1; }
"$SN" mkfs -q -o "$TMP/ref.sqfs" "$L1" "$L2" "$L3" "$L4" ||
    { echo "Bail out! mkfs"; exit 1; }
# Two files of L1 in the prefetch artifact.
PF1=/data/size-131073 PF2=/data/size-1048583
check "convert with --prefetch-file $PF1 --prefetch-file $PF2" \
    "$SN" convert -q --min-layer-size 0 -s 64K --prefetch-file "$PF1" \
        --prefetch-file "$PF2" "$R_HOST/test/img:v1" "$R_HOST/test/img:soci"
check "the ztoc of L1 (64K spans)" bash -c "
    '$SN' ztoc create -q -s 64K -o '$TMP/L1.ztoc' '$L1' &&
    '$SN' ztoc info '$TMP/L1.ztoc' > '$TMP/L1.json'"
# The spans the artifact must name: those of the two files' data.
PFSPANS=$(python3 - "$TMP/L1.json" "$PF1" "$PF2" <<'PY'
import json, sys
z = json.load(open(sys.argv[1]))
ids = set()
for name in sys.argv[2:]:
    f = [f for f in z["files"] if "/" + f["name"].lstrip("./") == name][-1]
    lo, hi = f["offset"], f["offset"] + f["size"]
    ids |= {s["id"] for s in z["spans"]
            if s["uncompressed_start"] < hi and s["uncompressed_end"] > lo}
print(len(ids))
PY
)
echo "# prefetch artifact: $PFSPANS spans of L1"
check "the prefetch files span several spans" test "${PFSPANS:-0}" -ge 3

SOCK=$TMP/s.sock URI="nbd+unix:///?socket=$TMP/s.sock" ST=$TMP/st.json

# ---- 1. prefetch=artifact -----------------------------------------------------
# Prefetch artifacts name SOCI spans: the SOCI index (dense=false; with
# the dense index they are ignored, see the last check of this part).
check "server with prefetch=artifact" plugin_start "$SOCK" \
    "$R_HOST/test/img:soci" prefetch=artifact dense=false stats-file="$ST"
check "artifact: done without any read: its $PFSPANS spans, nothing else" \
    wait_stats "$ST" "s['prefetch'] == 'artifact' and s['prefetch_done'] and \
        s['prefetch_artifacts'] == 1 and s['layers'][0]['prefetch_ranges'] >= 1 and \
        s['spans_prefetched'] == s['spans_fetched'] == s['spans_verified'] == $PFSPANS and \
        sum(e['bytes_read'] for e in s['exports'].values()) == 0"
# Metadata from the local reference image: the same bytes as the export.
set -- $(frange "$TMP/ref.sqfs" "$PF2")
check "reading $PF2 gives the right bytes" bash -c "
    '$NBDREAD' '$URI' $1 $2 | cmp - <(tail -c +\$(( $1 + 1 )) '$TMP/ref.sqfs' | head -c $2)"
plugin_stop "$SOCK"
check "artifact: the read fetched no span beyond the header's (still $PFSPANS or one more)" \
    stats_ok "$ST" "s['spans_fetched'] <= $PFSPANS + 1 and s['spans_failed'] == 0"
check "with the dense index on every layer the SOCI index (and its artifact) is not even fetched, said in the log" bash -c "
    nbdkit -v -U - -r '$PLUGIN' '$R_HOST/test/img:soci' prefetch=artifact --run true 2>&1 |
        grep -q 'SOCI index sha256:[0-9a-f]* not fetched: the dense index and layer TOCs cover every layer'"

# ---- 2. prefetch=background -----------------------------------------------------
CD=$TMP/cache
check "server with prefetch=background cache-dir=" plugin_start "$SOCK" \
    "$R_HOST/test/img:soci" prefetch=background cache-dir="$CD" stats-file="$ST"
check "nbdcopy while the background fetch runs = mkfs reference" bash -c "
    nbdcopy '$URI' '$TMP/flat.sqfs' && cmp '$TMP/flat.sqfs' '$TMP/ref.sqfs'"
check "background: done, every span fetched once, 4 layers verified whole" \
    wait_stats "$ST" "s['prefetch_done'] and s['spans_fetched'] == s['spans_total'] and \
        s['spans_failed'] == 0 and s['layer_check'] and s['layers_verified'] == 4 and \
        s['layers_verify_failed'] == 0 and \
        all(l['verify'] == 'ok' for l in s['layers'])"
plugin_stop "$SOCK"
NTOTAL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["spans_total"])' "$ST")
check "cache-dir holds every span ($NTOTAL)" bash -c "
    [ \$(find '$CD' -type f ! -name '.*' | wc -l) -eq $NTOTAL ]"
check "restart, prefetch=background again: all from cache-dir, nothing from the registry" \
    plugin_start "$SOCK" "$R_HOST/test/img:soci" prefetch=background cache-dir="$CD" \
        stats-file="$ST"
check "second run: every span a disk hit, layers verified again" \
    wait_stats "$ST" "s['prefetch_done'] and s['spans_fetched'] == 0 and \
        s['disk_hits'] == $NTOTAL and s['layers_verified'] == 4"
plugin_stop "$SOCK"

# ---- 3. a ztoc lying about a symlink ----------------------------------------------
mkdir -p "$TMP/i"
python3 - "$TMP/i/I.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.GNU_FORMAT) as tf:
    for n, data in (("i/a", b"a" * 70000), ("i/b", b"b" * 5000)):
        ti = tarfile.TarInfo(n); ti.size = len(data); ti.mtime = 1700000000
        tf.addfile(ti, io.BytesIO(data))
    ti = tarfile.TarInfo("i/link"); ti.type = tarfile.SYMTYPE
    ti.linkname = "target-good"; ti.mtime = 1700000000
    tf.addfile(ti)
PY
gzip -n "$TMP/i/I.tar"
I1=$TMP/i/I.tar.gz
"$SN" ztoc create -q -s 16K -o "$TMP/i/good.ztoc" "$I1" ||
    { echo "Bail out! ztoc create"; exit 1; }
check "hand-edit the ztoc: i/link -> target-evil" python3 -c '
import sys
b = open(sys.argv[1], "rb").read()
assert b.count(b"target-good") == 1
open(sys.argv[2], "wb").write(b.replace(b"target-good", b"target-evil"))' \
    "$TMP/i/good.ztoc" "$TMP/i/bad.ztoc"
eval "$($IMGPY push "$R_URL" test/lie "$I1" --ztoc "$I1=$TMP/i/bad.ztoc")" ||
    { echo "Bail out! push failed"; exit 1; }
check "without the check: the lie is served (the documented gap)" bash -c "
    nbdkit -U - -r '$PLUGIN' '$R_HOST/test/lie:v2' --run 'nbdcopy \"\$uri\" \"$TMP/i/lie.sqfs\"' &&
    rdsquashfs -s /i/link '$TMP/i/lie.sqfs' | grep -q 'target-evil'"
check "server with prefetch=background on the lying ztoc" plugin_start "$SOCK" \
    "$R_HOST/test/lie:v2" prefetch=background stats-file="$ST"
check "the whole-layer check fails, naming the entry and the field" \
    wait_stats "$ST" "s['prefetch_done'] and s['layers_verify_failed'] == 1 and \
        s['layers'][0]['verify'] == 'failed' and \
        'i/link' in s['layers'][0]['verify_error'] and \
        'link target' in s['layers'][0]['verify_error'] and s['spans_failed'] == 0"
set -- $(frange "$TMP/i/lie.sqfs" /i/b)
check_fails "the layer is refused from then on (EIO)" \
    "Input/output error\|errno 5" "$NBDREAD" "$URI" "$1" "$2"
plugin_stop "$SOCK"
check "the error was logged without -v" grep -q "whole-layer check.*i/link.*link target" "$SOCK.log"
check "verify=false: no check, data served" plugin_start "$SOCK" \
    "$R_HOST/test/lie:v2" prefetch=background verify=false stats-file="$ST"
check "verify=false: all spans fetched, nothing verified or failed" \
    wait_stats "$ST" "s['prefetch_done'] and not s['layer_check'] and \
        s['spans_fetched'] == s['spans_total'] and s['layers_verified'] == 0 and \
        s['layers_verify_failed'] == 0 and s['layers'][0]['verify'] == 'none'"
check "verify=false: i/b reads" bash -c "
    [ \"\$('$NBDREAD' '$URI' $1 $2)\" = \"\$(printf 'b%.0s' \$(seq 5000))\" ]"
plugin_stop "$SOCK"
check "the good ztoc passes the check" bash -c "
    eval \"\$($IMGPY push '$R_URL' test/good '$I1' --ztoc '$I1=$TMP/i/good.ztoc')\" &&
    nbdkit -U - -r '$PLUGIN' '$R_HOST/test/good:v2' prefetch=background stats-file='$ST' \
        --run 'for i in \$(seq 300); do grep -q \"\\\"prefetch_done\\\": true\" \"$ST\" && break; sleep 0.1; done'" &&
    check "... layers_verified == 1" stats_ok "$ST" "s['layers_verified'] == 1"

# ---- 4. cache-dir-size and stale temporary files -------------------------------------
CD2=$TMP/cache2
# The compressed spans of the image total (roughly) the layers' sizes.
TOTAL=$(( $(stat -c %s "$L1") + $(stat -c %s "$L2") + $(stat -c %s "$L3") + $(stat -c %s "$L4") ))
BOUND=$(( TOTAL / 3 ))
check "nbdcopy with cache-dir-size=$BOUND (a third of the spans)" bash -c "
    nbdkit -U - -r '$PLUGIN' '$R_HOST/test/img:soci' cache-dir='$CD2' cache-dir-size=$BOUND \
        stats-file='$ST' --run 'nbdcopy \"\$uri\" \"$TMP/flat2.sqfs\"' &&
    cmp '$TMP/flat2.sqfs' '$TMP/ref.sqfs'"
check "the directory stays under the bound, files were evicted" bash -c "
    used=\$(find '$CD2' -type f -printf '%s\n' | awk '{s+=\$1} END {print s+0}')
    echo \"used \$used bound $BOUND\"; [ \$used -le $BOUND ] && [ \$used -gt 0 ]" 
check "stats: evictions counted" stats_ok "$ST" \
    "s['cache_dir_evicted_files'] > 0 and s['cache_dir_max_bytes'] == $BOUND and \
     s['cache_dir_bytes'] <= $BOUND"
# Stale temporary files: of a dead process, of unknown origin and old, of a
# live process (kept), and a fresh one of unknown origin (kept).
sleep 0 & wait $!; DEAD=$!
HEX=$(ls "$CD" | grep -E '^[0-9a-f]{64}$' | head -1)
mkdir -p "$CD/blobs/sha256"
echo x > "$CD/$HEX/.3.$DEAD.AbCdEf"
echo x > "$CD/$HEX/.4.OlDfIl"; touch -d '3 hours ago' "$CD/$HEX/.4.OlDfIl"
echo x > "$CD/blobs/sha256/$HEX.tmp.$DEAD"
echo x > "$CD/$HEX/.5.$$.LiVeIt"
echo x > "$CD/$HEX/.6.NeWfIl"
echo x > "$CD/unrelated-file"
check "startup over a cache-dir with stale temporary files" bash -c "
    nbdkit -U - -r '$PLUGIN' '$R_HOST/test/img:soci' cache-dir='$CD' stats-file='$ST' --run true"
check "the three stale ones are gone" bash -c "
    [ ! -e '$CD/$HEX/.3.$DEAD.AbCdEf' ] && [ ! -e '$CD/$HEX/.4.OlDfIl' ] &&
    [ ! -e '$CD/blobs/sha256/$HEX.tmp.$DEAD' ]"
check "the live process's, the fresh one and an unrelated file are kept" bash -c "
    [ -e '$CD/$HEX/.5.$$.LiVeIt' ] && [ -e '$CD/$HEX/.6.NeWfIl' ] && [ -e '$CD/unrelated-file' ]"
check "stats: 3 stale files removed, the spans counted" stats_ok "$ST" \
    "s['cache_dir_stale_removed'] == 3 and s['cache_dir_bytes'] > 0"

# Eviction follows no symlink: a symlinked layer directory and symlinked
# files in a real one point at victims, older than every cached span;
# with a 1-byte bound everything evictable goes, the victims stay.
mkdir -p "$TMP/victims"
for f in 0 1 2 blob; do echo victim > "$TMP/victims/$f"; done
touch -d '1 day ago' "$TMP/victims"/*
FAKE=$(printf 'f%.0s' $(seq 64))
HEX2=$(ls "$CD2" | grep -E '^[0-9a-f]{64}$' | head -1)
ln -s "$TMP/victims" "$CD2/$FAKE"
ln -s "$TMP/victims/blob" "$CD2/$HEX2/99"
check "startup over a cache-dir with symlinks to victims, cache-dir-size=1" bash -c "
    nbdkit -U - -r '$PLUGIN' '$R_HOST/test/img:soci' cache-dir='$CD2' cache-dir-size=1 \
        stats-file='$ST' --run true"
check "... the cached spans were evicted" stats_ok "$ST" "s['cache_dir_evicted_files'] > 0"
check "... the victims are all there, the symlinks too" bash -c "
    for f in 0 1 2 blob; do [ \"\$(cat '$TMP/victims/'\$f)\" = victim ] || exit 1; done
    [ -L '$CD2/$FAKE' ] && [ -L '$CD2/$HEX2/99' ]"
# A cache directory others can write is refused.
mkdir -p "$TMP/cache-ww" "$TMP/cache-other"
chmod 0777 "$TMP/cache-ww"
check_fails "a world-writable cache-dir is refused" \
    "cache-dir $TMP/cache-ww: writable by others (mode 0777): refused" \
    nbdkit -U - -r "$PLUGIN" "$R_HOST/test/img:soci" cache-dir="$TMP/cache-ww" --run true
chmod 0775 "$TMP/cache-ww"
check_fails "a group-writable cache-dir is refused" "writable by its group (mode 0775): refused" \
    nbdkit -U - -r "$PLUGIN" "$R_HOST/test/img:soci" cache-dir="$TMP/cache-ww" --run true
if [ "$(id -u)" = 0 ]; then
    chown 65534 "$TMP/cache-other"
    check_fails "as root, a cache-dir owned by another user is refused" \
        "cache-dir $TMP/cache-other: owned by uid 65534, not by this user (uid 0) or root: refused" \
        nbdkit -U - -r "$PLUGIN" "$R_HOST/test/img:soci" cache-dir="$TMP/cache-other" --run true
fi

# ---- 5. bad values ------------------------------------------------------------------
check_fails "prefetch=sometimes is refused" "prefetch=sometimes: expected none, auto, artifact or background" \
    nbdkit -U - -r "$PLUGIN" "$R_HOST/test/img:soci" prefetch=sometimes --run true
check_fails "cache-dir-size without cache-dir is refused" "cache-dir-size needs cache-dir" \
    nbdkit -U - -r "$PLUGIN" "$R_HOST/test/img:soci" cache-dir-size=1G --run true
check "--dump-plugin lists the prefetch modes" bash -c "
    nbdkit --dump-plugin '$PLUGIN' | grep -qx 'soci_prefetch=none,auto,artifact,background'"

finish
