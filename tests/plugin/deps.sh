#!/bin/bash
# soci-nbd tests: dependency prefetch (docs/dependency-prefetch.md), end to
# end against a real registry.  The layer holds this machine's ls and
# apt-cache with their shared libraries (merged /usr: lib -> usr/lib,
# sonames as symlinks), 1 MiB of incompressible padding between them, and
# a hostile ELF file.  Served through the dense index:
#  1. reading the first 4 KiB of ls stages every library ls needs, directly
#     or not (the set `ldd` names), and no other: then reading the first
#     and the last page of each fetches no byte more, and the bytes are
#     right; parsing them (their dynamic sections lie near their ends) and
#     reading them fetched no window for a sub-span alone: each decoded
#     from the staged sub-spans before it;
#  2. with deps=false the same read stages nothing, and the libraries are
#     fetched when read;
#  3. the hostile ELF (a DT_NEEDED name outside its string table) counts
#     as an error, and its bytes are served as they are;
#  4. with a prefetch record attached and replayed (prefetch=auto), it is
#     off: the record names the start-up's bytes better.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
NBDREAD=$top_builddir/tests/helpers/nbd-read
IMGPY="python3 $top_srcdir/tests/helpers/plugin-image.py"

nbdkit_asan_wrapper "$PLUGIN"
require_tools nbdkit nbdcopy skopeo ldd readelf
for f in "$PLUGIN" "$NBDREAD"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "Bail out! $f not built"; exit 1; }
done
NBDKIT_PIDS=""
trap 'for p in $NBDKIT_PIDS; do kill "$p" 2>/dev/null; done; srv_cleanup' EXIT

reg_start R || { echo "Bail out! registry did not start"; exit 1; }
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$TMP/policy.json"

# The libraries ls needs, as the host's dynamic linker resolves them.
ldd /usr/bin/ls | awk '/\// { for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' \
    > "$TMP/ls-libs"
ldd /usr/bin/apt-cache | awk '/\// { for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' \
    > "$TMP/apt-libs"
NLS=$(sort -u "$TMP/ls-libs" | xargs -n1 basename | sort -u | wc -l)

python3 - "$TMP/layer.tar" "$TMP/ls-libs" "$TMP/apt-libs" <<'PY' || { echo "Bail out! layer"; exit 1; }
import io, os, random, struct, sys, tarfile
out, *lists = sys.argv[1:]
t = tarfile.open(out, "w", format=tarfile.PAX_FORMAT)
def add(name, data=None, link=None, mode=0o755):
    ti = tarfile.TarInfo(name)
    ti.mtime = 1700000000
    ti.mode = mode
    if link is not None:
        ti.type = tarfile.SYMTYPE
        ti.linkname = link
        t.addfile(ti)
    elif data is None:
        ti.type = tarfile.DIRTYPE
        t.addfile(ti)
    else:
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
rng = random.Random(7)
pad = lambda: bytes(rng.getrandbits(8) for _ in range(1 << 20))
# A hostile ELF: its DT_NEEDED name lies past its string table.
strtab = b"\0libc.so.6\0"
dyn = 64 + 2 * 56; st = dyn + 3 * 16; B = 0x400000
total = st + len(strtab)
evil = (b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) +
        struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 64, 0, 0, 64, 56, 2, 0, 0, 0) +
        struct.pack("<IIQQQQQQ", 1, 5, 0, B, B, total, total, 4096) +
        struct.pack("<IIQQQQQQ", 2, 6, dyn, B + dyn, B + dyn, 48, 48, 8) +
        struct.pack("<QQQQQQ", 1, 4000, 5, B + st, 10, len(strtab)) + strtab)
add("lib", link="usr/lib")
add("usr"); add("usr/bin"); add("usr/lib"); add("usr/lib/x86_64-linux-gnu")
add("usr/bin/apt-cache", open("/usr/bin/apt-cache", "rb").read())
add("usr/bin/evil", evil)
add("usr/bin/ls", open("/usr/bin/ls", "rb").read())
add("usr/bin/zz-pad", pad(), mode=0o644)
done = set()
for lst in lists:
    for p in open(lst).read().split():
        real = os.path.realpath(p)
        base, rbase = os.path.basename(p), os.path.basename(real)
        d = "usr/lib/x86_64-linux-gnu/"
        if rbase not in done:
            add(d + rbase, open(real, "rb").read())
            add(d + rbase + ".zz-pad", pad(), mode=0o644)
            done.add(rbase)
        if base != rbase and base not in done:
            add(d + base, link=rbase)
            done.add(base)
t.close()
PY
gzip -6n < "$TMP/layer.tar" > "$TMP/layer.tar.gz"
$IMGPY layout "$TMP/lay" img "$TMP/layer.tar.gz" > /dev/null &&
    skopeo --policy "$TMP/policy.json" copy -q --dest-tls-verify=false \
        "oci:$TMP/lay:img" "docker://$R_HOST/test/deps:v1" ||
    { echo "Bail out! push failed"; exit 1; }
check "convert (dense index)" bash -o pipefail -c \
    "'$SN' convert -q --min-layer-size 0 '$R_HOST/test/deps:v1' '$R_HOST/test/deps:soci' > /dev/null"
check "the whole export, for reference" \
    nbdkit -U - -r "$PLUGIN" "$R_HOST/test/deps:soci" deps=false \
        --run "nbdcopy \"nbd+unix:///?socket=\$unixsocket\" '$TMP/ref.img'"

# at FILE: where FILE's bytes are in the reference export
at() { python3 -c 'import sys; print(open(sys.argv[1],"rb").read().find(open(sys.argv[2],"rb").read()))' "$TMP/ref.img" "$1"; }
LS_AT=$(at /usr/bin/ls)
python3 - "$TMP/ref.img" > "$TMP/evil-at" <<'PY'
import sys
print(open(sys.argv[1], "rb").read().find(b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x03\x00\x3e\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x40\x00\x38\x00\x02\x00"))
PY
EVIL_AT=$(cat "$TMP/evil-at")
check "ls and the hostile file found in the export" test "$LS_AT" -gt 0 -a "$EVIL_AT" -gt 0

SOCK=$TMP/s.sock ST=$TMP/st.json
URI="nbd+unix:///?socket=$SOCK"
ls_head_ok() {
    "$NBDREAD" "$URI" "$LS_AT" 4096 > "$TMP/got" && head -c 4096 /usr/bin/ls | cmp - "$TMP/got"
}
# libs_read: the first and the last 4 KiB of every library of ls, right
# bytes (the last in a sub-span of its own, staged but not yet decoded
# when no read went there before)
libs_read() {
    local p r o z
    for p in $(sort -u "$TMP/ls-libs"); do
        r=$(realpath "$p")
        o=$(at "$r") && [ "$o" -gt 0 ] || { echo "$p not in the export"; return 1; }
        z=$(stat -c %s "$r")
        "$NBDREAD" "$URI" "$o" 4096 > "$TMP/got" || return 1
        head -c 4096 "$r" | cmp - "$TMP/got" || return 1
        "$NBDREAD" "$URI" $((o + z - 4096)) 4096 > "$TMP/got" || return 1
        tail -c 4096 "$r" | cmp - "$TMP/got" || return 1
    done
}
# windows fetched by a decode (not ahead, with a staged run)
windows() { python3 -c 'import json,sys; s = json.load(open(sys.argv[1])); print(s["windows_fetched"] - s["windows_staged"])' "$ST"; }
fetched() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_fetched"])' "$ST"; }

# ---- 1. deps on (the default) --------------------------------------------------
check "server (deps by default)" plugin_start "$SOCK" "$R_HOST/test/deps:soci" stats-file="$ST"
check "the first 4 KiB of ls: right bytes" ls_head_ok
check "ls and its $NLS libraries parsed, the $NLS staged, none missing" wait_stats "$ST" \
    "s['deps'] and s['deps_files_parsed'] == 1 + $NLS and s['deps_files_staged'] == $NLS and s['deps_not_found'] == 0 and s['deps_errors'] == 0" 30
sleep 1
B1=$(fetched) W1=$(windows)
check "reading the libraries: right bytes" libs_read
sleep 0.5
B2=$(fetched) W2=$(windows)
check "... and no byte more fetched for them ($B1 then $B2)" test "$B1" -eq "$B2"
# Parsing each library reads its dynamic section, near its end, and the
# reads above read its last page: the sub-spans before them are staged,
# so they decode from those, never with a window fetched for them alone.
# Only the first read of ls may have fetched one.
check "... and no window fetched by a decode but for the first read of ls ($W1, $W2)" \
    test "$W1" -le 1 -a "$W2" -eq "$W1"
check "the hostile ELF file: right bytes" bash -c \
    "'$NBDREAD' '$URI' '$EVIL_AT' 512 | cmp - <(tail -c +$((EVIL_AT + 1)) '$TMP/ref.img' | head -c 512)"
check "... and counted as an error" wait_stats "$ST" "s['deps_errors'] == 1" 10
plugin_stop "$SOCK"

# ---- 2. deps=false ---------------------------------------------------------------
check "server (deps=false)" plugin_start "$SOCK" "$R_HOST/test/deps:soci" stats-file="$ST" deps=false
check "the first 4 KiB of ls: right bytes" ls_head_ok
sleep 1
B1=$(fetched)
check "nothing parsed or staged" stats_ok "$ST" \
    "not s['deps'] and s['deps_files_parsed'] == 0 and s['deps_files_staged'] == 0"
check "reading the libraries: right bytes" libs_read
sleep 0.5
B2=$(fetched)
check "... fetched when read ($B1 then $B2)" test "$B2" -gt "$B1"
plugin_stop "$SOCK"

# ---- 4. off while a record replays --------------------------------------------
check "server recording" plugin_start "$SOCK" "$R_HOST/test/deps:soci" \
    prefetch=none record="$TMP/rec.json" record-idle=0
check "the first 4 KiB of ls: right bytes" ls_head_ok
plugin_stop "$SOCK"
check "prefetch add attaches the record" "$SN" prefetch add -q \
    "$R_HOST/test/deps:soci" "$TMP/rec.json" "$R_HOST/test/deps:rec"
check "server on the image with the record" plugin_start "$SOCK" \
    "$R_HOST/test/deps:rec" stats-file="$ST"
check "the first 4 KiB of ls: right bytes" ls_head_ok
check "the record replayed, dependency prefetch off" wait_stats "$ST" \
    "s['prefetch_done'] and not s['deps'] and s['deps_files_parsed'] == 0 and s['replay_spans'] > 0" 30
plugin_stop "$SOCK"

finish
