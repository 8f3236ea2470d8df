#!/bin/bash
# soci-nbd tests: eStargz layers served lazily from their own TOC
# (docs/estargz.md).  The layers are made by the stargz-snapshotter's Go
# package itself (Debian's golang-github-containerd-stargz-snapshotter-dev,
# through tests/helpers/mkestargz.go, built here offline).
#  1. a 4-layer image (tests/helpers/mkfs-tree.py gen: every file type,
#     xattrs, whiteouts, hard links, long names), three layers eStargz with
#     16 KiB chunks and one plain gzip, pushed to a local registry with no
#     SOCI index: the eStargz layers are served from their TOC (stats,
#     inspect --serving); the flat export's tree (sqfs2tar) = `umoci
#     unpack`; every export has the same tree as with estargz=false (the
#     layers downloaded whole);
#  2. through nbdfuse: describing the whole tree (rdsquashfs -d) fetches no
#     byte beyond the footers and TOCs (stats and the proxy's log); reading
#     one 1 MiB file at its place in the export fetches its chunks and
#     nothing else, and gives its bytes;
#  3. every byte verified: a flipped bit in a chunk is EIO; in the TOC, or
#     a TOC digest annotation that does not match, the server refuses to
#     start in one line;
#  4. the prefetch landmark: prefetch=auto loads the chunks up to it, and
#     prefetch=none nothing; prefetch=background loads every chunk.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
NBDREAD=$top_builddir/tests/helpers/nbd-read
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
TREE="python3 $top_srcdir/tests/helpers/mkfs-tree.py"
OCIPY="python3 $top_srcdir/tests/helpers/oci-layout.py"

if [ "$(id -u)" -ne 0 ]; then
    echo "Bail out! tests/plugin/estargz.sh must run as root (umoci)"
    exit 1
fi
if [ ! -c /dev/fuse ]; then
    echo "1..0 # SKIP no /dev/fuse on this machine"
    exit 0
fi
nbdkit_asan_wrapper "$PLUGIN"
require_tools nbdkit nbdcopy nbdfuse skopeo umoci sqfs2tar rdsquashfs go
[ -f "$PLUGIN" ] || { echo "Bail out! $PLUGIN not built"; exit 1; }
MOUNTS="" PIDS="" NBDKIT_PIDS=""
trap 'mounts_cleanup; srv_cleanup' EXIT

reg_start R || { echo "Bail out! registry did not start"; exit 1; }
fault_start F "$R_URL" || { echo "Bail out! fault proxy did not start"; exit 1; }
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$TMP/policy.json"

# ---- the image ----------------------------------------------------------------
MK=$TMP/mkestargz
check "build mkestargz with Debian's stargz package (offline)" bash -c "
    cd '$TMP' && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE='$TMP/gocache' \
        go build -o '$MK' '$top_srcdir/tests/helpers/mkestargz.go'"
mkdir -p "$TMP/gen"
$TREE gen "$TMP/gen" > /dev/null
for l in L1 L2 L3 L4; do $OCIPY strip "$TMP/gen/$l.tar" "$TMP/$l.tar"; done
check "eStargz layers L1, L2, L4 (16 KiB chunks); L3 plain gzip" bash -c "
    for l in L1 L2 L4; do '$MK' '$TMP/'\$l.tar '$TMP/'\$l.tar.gz 16384 || exit 1; done &&
    gzip -n '$TMP/L3.tar'"
G="$TMP/L1.tar.gz $TMP/L2.tar.gz $TMP/L3.tar.gz $TMP/L4.tar.gz"
$OCIPY layout "$TMP/lay" img $G
check "umoci unpack of the image" umoci_tree "$TMP/lay" "$TMP/u.json"
check "skopeo pushes it as is (annotations kept)" bash -c "
    skopeo --policy '$TMP/policy.json' copy -q --dest-tls-verify=false \
        'oci:$TMP/lay:img' 'docker://$R_HOST/test/esgz:v1'"
IMG=$F_HOST/test/esgz:v1
L1D=sha256:$(sha "$TMP/L1.tar.gz")

# ---- 1. served from the TOC, the same tree -------------------------------------
EXPORTS="flat layer/0 layer/1 layer/2"   # (layer 3 hard-links into 2: no export)
check "every export, lazily" export_trees "$IMG" "$TMP/lazy" "$EXPORTS"
check "stats: the 3 eStargz layers lazy from their TOC, every chunk verified, L3 whole" \
    stats_ok "$TMP/lazy/st.json" "(
[bool(l.get('estargz_toc')) for l in s['layers']] == [True, True, False, True] and
[l['lazy'] for l in s['layers']] == [True, True, False, True] and
s['spans_failed'] == 0 and s['spans_fetched'] == s['spans_verified'] > 0)"
check "inspect --serving: lazy-estargz, lazy-estargz, whole, lazy-estargz" bash -c "
    '$SN' inspect --serving '$IMG' > '$TMP/insp' &&
    [ \"\$(sed -n 's/^served sha256:[0-9a-f]* //p' '$TMP/insp' | tr '\n' ' ')\" = \
      'lazy-estargz lazy-estargz whole lazy-estargz ' ] || { cat '$TMP/insp' >&2; exit 1; }"
$OCIPY umoci-norm "$TMP/lazy/t.json" "$TMP/lazy/flat.json"
check "the flat export's tree = umoci unpack (bytes, types, modes, owners, mtimes, links, devices, xattrs)" \
    $TREE cmp "$TMP/u.json" "$TMP/lazy/flat.json"
check "every export, with estargz=false (layers fetched whole)" \
    export_trees "$IMG" "$TMP/whole" "$EXPORTS" estargz=false
check "... was served whole" stats_ok "$TMP/whole/st.json" \
    "not any(l['lazy'] or l.get('estargz_toc') for l in s['layers'])"
check "the flat and every layer export: the same tree either way" bash -c "
    for f in '$TMP'/lazy/t*.json; do $TREE cmp \"\$f\" '$TMP/whole/'\${f##*/} || exit 1; done"

# ---- 2. only what is read ---------------------------------------------------------
SOCK=$TMP/s.sock
lazy_reads_checks "$SOCK" "$IMG" "$F_LOG" data/size-1048583 1048583 "$TMP/gen/L1.tar"
START=$PATH_START
# The chunks of that file, from the TOC: what the read may fetch.
python3 - "$TMP/L1.tar.gz" > "$TMP/want" <<'PY'
import json, sys, zlib
b = open(sys.argv[1], "rb").read()
off = int(b[-51:][16:32], 16)
d = zlib.decompressobj(31).decompress(b[off:-51])
toc = json.loads(d[512:512 + int(d[124:136].rstrip(b"\0 "), 8)])
ents = toc["entries"]
offs = sorted({e["offset"] for e in ents if e.get("offset")} | {off})
nxt = {o: offs[i + 1] for i, o in enumerate(offs[:-1])}
mine = [e["offset"] for e in ents if e["name"].endswith("data/size-1048583") and e.get("offset")]
print(len(mine), sum(nxt[o] - o for o in mine))
PY
read -r NCH NBYTES < "$TMP/want"
check "... fetched exactly its $NCH chunks ($NBYTES bytes of L1), nothing of the other layers" stats_ok "$SOCK.json" "(
s['layers'][0]['spans_fetched'] == $NCH and s['layers'][0]['bytes_fetched'] == $NBYTES and
s['spans_fetched'] == $NCH and s['spans_failed'] == 0)"

# ---- 3. every byte verified --------------------------------------------------------
check "server on the image" plugin_start "$SOCK" "$IMG" stats-file="$TMP/st3.json"
fault_corrupt F "$L1D"
check "a flipped bit in every chunk of L1: reading the file is EIO" bash -c "
    ! '$NBDREAD' 'nbd+unix:///?socket=$SOCK' '$START' 1048583 > '$TMP/big3' 2> '$TMP/e3' &&
    grep -q 'Input/output error' '$TMP/e3' || { cat '$TMP/e3' >&2; exit 1; }"
fault_set F '{"rules": []}'
plugin_stop "$SOCK"
check "... counted as failed chunks, the reason logged" bash -c "
    grep -q 'chunk [0-9]* of $L1D: .*hash' '$SOCK.log' &&
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(not s[\"layers\"][0][\"spans_failed\"] > 0)' '$TMP/st3.json'"
fault_corrupt F "$L1D" 1
check_fails "a flipped bit in L1's TOC: refused start" \
    "layer 0 (sha256:[0-9a-f]*): eStargz TOC: .*(estargz=false serves the layer without its TOC)" \
    nbdkit -U - -r "$PLUGIN" "$IMG" --run true
fault_set F '{"rules": []}'
python3 - "$TMP/L4.tar.gz.annotations.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
a["containerd.io/snapshot/stargz/toc.digest"] = "sha256:" + "0" * 64
json.dump(a, open(sys.argv[1], "w"))
PY
$OCIPY layout "$TMP/laybad" img "$TMP/L4.tar.gz"
check_fails "a TOC digest annotation that does not match: refused start" \
    "layer 0 (sha256:[0-9a-f]*): eStargz TOC: its digest is sha256:[0-9a-f]*, the manifest says sha256:0000" \
    nbdkit -U - -r "$PLUGIN" "oci-layout:$TMP/laybad:img" --run true

# ---- 4. the prefetch landmark ----------------------------------------------------
check "an eStargz layer with data/size-300000 prioritized (before the landmark)" \
    "$MK" "$TMP/L1.tar" "$TMP/P1.tar.gz" 16384 data/size-300000
$OCIPY layout "$TMP/layp" img "$TMP/P1.tar.gz"
# Chunks up to and including the landmark's, from the TOC.
NPRE=$(python3 - "$TMP/P1.tar.gz" <<'PY'
import json, sys, zlib
b = open(sys.argv[1], "rb").read()
off = int(b[-51:][16:32], 16)
d = zlib.decompressobj(31).decompress(b[off:-51])
toc = json.loads(d[512:512 + int(d[124:136].rstrip(b"\0 "), 8)])
mark = [e["offset"] for e in toc["entries"] if e["name"] == ".prefetch.landmark"][0]
print(len([e for e in toc["entries"] if 0 < e.get("offset", 0) <= mark]))
PY
)
done_prefetch() {  # STATS: the prefetch thread has finished
    python3 -c 'import json,sys; sys.exit(not json.load(open(sys.argv[1]))["prefetch_done"])' "$1" 2>/dev/null
}
NBDKIT_OPTS=-v check "server, prefetch=auto (the default)" plugin_start "$SOCK" \
    "oci-layout:$TMP/layp:img" stats-file="$TMP/stp.json"
_reg_wait_for 20 done_prefetch "$TMP/stp.json"
plugin_stop "$SOCK"
check "... replayed the $NPRE chunks up to the landmark, before any read" bash -c "
    grep -q 'replaying [0-9]* runs of spans (eStargz landmarks)' '$SOCK.log' &&
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(not s[\"replay_spans\"] == $NPRE)' '$TMP/stp.json'"
check "server, prefetch=none" plugin_start "$SOCK" "oci-layout:$TMP/layp:img" \
    stats-file="$TMP/stn.json" prefetch=none
sleep 1.5
plugin_stop "$SOCK"
check "... replayed nothing" stats_ok "$TMP/stn.json" "s['replay_spans'] == 0 and s['spans_fetched'] == 0"
NBDKIT_OPTS=-v check "server, prefetch=background" plugin_start "$SOCK" \
    "oci-layout:$TMP/layp:img" stats-file="$TMP/stb.json" prefetch=background
_reg_wait_for 30 done_prefetch "$TMP/stb.json"
plugin_stop "$SOCK"
check "... loaded every chunk, with no whole-layer check (the chunks are checked)" bash -c "
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); l=s[\"layers\"][0]; sys.exit(not (l[\"spans_fetched\"] == l[\"spans_total\"] == l[\"spans_verified\"] and s[\"prefetch_done\"]))' '$TMP/stb.json' &&
    ! grep -q 'whole-layer check\\|background fetch of layer .* stopped' '$SOCK.log'"

finish
