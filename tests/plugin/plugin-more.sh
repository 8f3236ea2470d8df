#!/bin/bash
# soci-nbd tests: nbdkit-soci-plugin end to end, beyond tests/plugin/plugin.sh.
#  1. concurrency: 16 threads on 16 connections (tests/helpers/nbd-stress) read
#     every file of a two-layer image in random orders and pieces, then
#     nbdcopy --connections=4 copies the flat export: every byte right,
#     every span fetched exactly once (stats-file and the fault proxy's
#     request log);
#     then SIGTERM while reads, readahead and background prefetch wait on
#     a slow registry: the server exits within a bound, each of 5 times;
#  2. the registry goes down mid-run: a read fails with EIO within a
#     bounded time; after the registry is back on the same port the read
#     succeeds;
#  3. laziness on a >= 100 MB image (span 1M): all metadata costs no
#     span; one small file costs the spans of its header and data, once;
#  4. integrity: a ztoc entry pointing at another file's bytes → EIO for
#     that file (tar header check), other files fine;
#  5. fidelity: a file > 4 GiB in an uncompressed tar layer (size, sampled
#     ranges, a file after it); as root, the flat export's tree equals
#     `umoci unpack` of the same OCI layout.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SN=$SOCI_NBD
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
NBDREAD=$top_builddir/tests/helpers/nbd-read
NBDSTRESS=$top_builddir/tests/helpers/nbd-stress
TREE="python3 $top_srcdir/tests/helpers/mkfs-tree.py"
IMGPY="python3 $top_srcdir/tests/helpers/plugin-image.py"
HELP="python3 $TMP/help.py"
OCIPY="python3 $top_srcdir/tests/helpers/oci-layout.py"

nbdkit_asan_wrapper "$PLUGIN"

require_tools nbdkit nbdcopy nbdinfo rdsquashfs unsquashfs
for f in "$PLUGIN" "$NBDREAD" "$NBDSTRESS"; do
    [ -x "$f" ] || { echo "Bail out! $f not built"; exit 1; }
done

MOUNTS=""
NBDKIT_PIDS=""
plugin_cleanup() {
    local m p
    for m in $MOUNTS; do umount "$m" 2>/dev/null; done
    for p in $NBDKIT_PIDS; do kill "$p" 2>/dev/null; done
}
trap 'plugin_cleanup; srv_cleanup' EXIT

# ---- helpers ----------------------------------------------------------------
cat > "$TMP/help.py" <<'PY'
import gzip, hashlib, json, os, random, re, shutil, subprocess, sys, tarfile, io

def H(b):
    return hashlib.sha256(b).hexdigest()

def add(tf, name, data, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), mode, 1700000000
    tf.addfile(ti, io.BytesIO(data))

def text(r, n):
    words = [b"soci", b"nbd", b"span", b"layer", b"squashfs", b"ztoc", b"\n"]
    out = bytearray()
    while len(out) < n:
        out += r.choice(words) + b" "
    return bytes(out[:n])

def gen_conc(out):
    """two gzip layers of random-size files, half random, half text."""
    r = random.Random(42)
    for li, nfiles in ((1, 70), (2, 50)):
        with tarfile.open(os.path.join(out, "C%d.tar" % li), "w",
                          format=tarfile.GNU_FORMAT) as tf:
            for i in range(nfiles):
                n = r.choice([0, 1, 511, 512, 513, 4096, 65537]) if i % 7 == 0 \
                    else r.randint(1, 300000)
                data = r.randbytes(n) if i % 2 else text(r, n)
                add(tf, "c%d/d%d/f%03d" % (li, i % 5, i), data)

def gen_big(out):
    """B1: ~108 MB of random data in 24 files with small needles between;
    B2: a text layer."""
    r = random.Random(7)
    with tarfile.open(os.path.join(out, "B1.tar"), "w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(24):
            add(tf, "big/blob%02d" % i, os.urandom(4500000 + r.randint(0, 4096)))
            add(tf, "big/needle%02d.txt" % i, text(r, 1000 + 37 * i))
    with tarfile.open(os.path.join(out, "B2.tar"), "w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(40):
            add(tf, "doc/t%02d.txt" % i, text(r, 50000))

def swap(ztoc, out, a, b):
    """swap the names A and B (same length, each unique) in a ztoc: entry
    A then points at B's bytes and the other way round."""
    buf = bytearray(open(ztoc, "rb").read())
    a, b = a.encode(), b.encode()
    if len(a) != len(b) or buf.count(a) != 1 or buf.count(b) != 1:
        sys.exit("names not unique in the ztoc")
    i, j = buf.index(a), buf.index(b)
    buf[i:i + len(a)], buf[j:j + len(b)] = b, a
    open(out, "wb").write(buf)

def gen_bad(out):
    r = random.Random(9)
    with tarfile.open(os.path.join(out, "I.tar"), "w", format=tarfile.GNU_FORMAT) as tf:
        for name, n in (("pad", 3001), ("a", 5003), ("b", 7011), ("c", 9013)):
            add(tf, "i/" + name, r.randbytes(n))

def patch(sn, ztoc, out, a, b):
    """replace file a's uncompressed offset by file b's in a ztoc (the
    8-byte little-endian value, which must be unique in the buffer)."""
    info = json.loads(subprocess.check_output([sn, "ztoc", "info", ztoc]))
    off = {f["name"]: f["offset"] for f in info["files"]}
    buf = bytearray(open(ztoc, "rb").read())
    old = off[a].to_bytes(8, "little")
    if buf.count(old) != 1:
        sys.exit("offset %d of %s is not unique in the ztoc" % (off[a], a))
    i = buf.index(old)
    buf[i:i + 8] = off[b].to_bytes(8, "little")
    open(out, "wb").write(buf)

def gen_4g(path, size, marker):
    """an uncompressed tar with a sparse file of SIZE zero bytes (MARKER at
    its end) then a small file; the tar itself is sparse on disk."""
    ti = tarfile.TarInfo("huge/zeros")
    ti.size, ti.mode, ti.mtime = size, 0o600, 1700000000
    with open(path, "wb") as f:
        f.write(ti.tobuf(tarfile.GNU_FORMAT))
        start = f.tell()
        f.seek(start + size - len(marker))
        f.write(marker)
        f.write(b"\0" * (-size % 512))
        t2 = tarfile.TarInfo("huge/after")
        data = b"after the 4 GiB file\n" * 100
        t2.size, t2.mode, t2.mtime = len(data), 0o644, 1700000000
        f.write(t2.tobuf(tarfile.GNU_FORMAT))
        f.write(data + b"\0" * (-len(data) % 512))
        f.write(b"\0" * 10240)

def sample(size, marker, off, n):
    """sha256 of bytes [off, off+n) of the zero file with MARKER at its end."""
    h = hashlib.sha256()
    mstart = size - len(marker)
    end = off + n
    if end <= mstart:
        h.update(bytes(n))
    else:
        z = max(0, mstart - off)
        h.update(bytes(z))
        h.update(marker[max(0, off - mstart):end - mstart])
    return h.hexdigest()

def stat_file(img, path):
    """(blocks start, size) of PATH in a squashfs image (rdsquashfs -s)."""
    o = subprocess.check_output(["rdsquashfs", "-s", path, img], text=True)
    start = int(re.search(r"^Blocks start: (\d+)", o, re.M).group(1))
    size = int(re.search(r"^File size: (\d+)", o, re.M).group(1))
    return start, size

def rangelist(img, tree):
    """OFFSET LENGTH SHA256 of every non-empty regular file of TREE."""
    for dp, dn, fn in sorted(os.walk(tree)):
        for n in sorted(fn):
            p = os.path.join(dp, n)
            data = open(p, "rb").read()
            if not data:
                continue
            start, size = stat_file(img, "/" + os.path.relpath(p, tree))
            assert size == len(data), p
            print(start, size, H(data))

def proxy_ranges(log, skip, digest):
    """the Range headers of the GETs of blob DIGEST, after line SKIP."""
    out = []
    for i, line in enumerate(open(log)):
        if i < skip:
            continue
        r = json.loads(line)
        if r.get("method") == "GET" and r.get("path", "").endswith("/blobs/" + digest):
            rng = {k.lower(): v for k, v in r.get("headers", {}).items()}.get("range")
            if rng:
                out.append(rng)
    return out

def spans_of(ztoc_json, ranges):
    """the span ids each range is exactly (bytes=compressed_start of span a
    - compressed_end-1 of span b >= a: one span, or a run of them fetched
    with one request by readahead), or -1."""
    sp = json.load(open(ztoc_json))["spans"]
    first = {s["compressed_start"]: s["id"] for s in sp}
    last = {s["compressed_end"] - 1: s["id"] for s in sp}
    out = []
    for r in ranges:
        a, b = map(int, re.match(r"bytes=(\d+)-(\d+)$", r).groups())
        i, j = first.get(a, -1), last.get(b, -1)
        out += list(range(i, j + 1)) if 0 <= i <= j else [-1]
    return out

def file_spans(ztoc_json, name):
    """the span ids holding NAME's tar header and data (uncompressed)."""
    z = json.load(open(ztoc_json))
    f = [f for f in z["files"] if f["name"] == name][0]
    lo, hi = f["header_offset"], f["offset"] + max(f["size"], 1)
    return [s["id"] for s in z["spans"]
            if s["uncompressed_start"] < hi and s["uncompressed_end"] > lo]

def read_spans(ztoc_json):
    """how many spans reading every non-empty regular file touches."""
    z = json.load(open(ztoc_json))
    ids = set()
    for f in z["files"]:
        if f["type"] == "reg" and f["size"] > 0:
            ids.update(file_spans(ztoc_json, f["name"]))
    return len(ids)

if __name__ == "__main__":
    c, a = sys.argv[1], sys.argv[2:]
    if c == "gen-conc": gen_conc(a[0])
    elif c == "gen-big": gen_big(a[0])
    elif c == "gen-bad": gen_bad(a[0])
    elif c == "patch": patch(*a[:5])
    elif c == "swap": swap(*a[:4])
    elif c == "gen-4g": gen_4g(a[0], int(a[1]), a[2].encode())
    elif c == "sample": print(sample(int(a[0]), a[1].encode(), int(a[2]), int(a[3])))
    elif c == "rangelist": rangelist(a[0], a[1])
    elif c == "ranges": sys.stdout.writelines(r + "\n" for r in proxy_ranges(a[0], int(a[1]), a[2]))
    elif c == "spans-of": print(" ".join(map(str, spans_of(a[0], a[1:]))))
    elif c == "file-spans": print(" ".join(map(str, file_spans(a[0], a[1]))))
    elif c == "read-spans": print(sum(read_spans(z) for z in a))
    else: sys.exit("help.py: unknown command " + c)
PY
# json_get FILE KEY: a top-level value of a JSON file.
json_get() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
export -f json_get
# stats_ok FILE PYTHON-EXPR: the expression holds for the stats JSON (s).
# meta_copy URI SIZE OUT: a sparse copy of the export holding only the
# superblock and the metadata (inode table start .. bytes_used).
meta_copy() {
    local uri=$1 size=$2 out=$3
    "$NBDREAD" "$uri" 0 96 > "$out.sb" || return 1
    set -- $(python3 -c 'import struct,sys; b=open(sys.argv[1],"rb").read(); print(struct.unpack_from("<Q",b,64)[0], struct.unpack_from("<Q",b,40)[0])' "$out.sb")
    cp "$out.sb" "$out" && truncate -s "$size" "$out" &&
    "$NBDREAD" "$uri" "$1" $(( $2 - $1 )) |
        dd of="$out" bs=1M seek="$1" oflag=seek_bytes conv=notrunc status=none
}
# frange IMG PATH: "START SIZE" of a file's bytes in a flat image.
frange() {
    rdsquashfs -s "$2" "$1" | sed -n 's/^Blocks start: //p;s/^File size: //p' |
        tr '\n' ' ' | awk '{print $2, $1}'
}
now_ms() { date +%s%3N; }
layer_digest() { echo "sha256:$(sha "$1")"; }

reg_start R || { echo "Bail out! registry did not start"; exit 1; }
fault_start F "$R_URL" || { echo "Bail out! fault proxy did not start"; exit 1; }
logpos() { wc -l < "$F_LOG"; }

# ---- 1. concurrency ---------------------------------------------------------
mkdir -p "$TMP/c"
$HELP gen-conc "$TMP/c"
mkdir -p "$TMP/c/tree"
tar -C "$TMP/c/tree" -xf "$TMP/c/C1.tar" && tar -C "$TMP/c/tree" -xf "$TMP/c/C2.tar"
gzip -n "$TMP/c/C1.tar" "$TMP/c/C2.tar"
C1=$TMP/c/C1.tar.gz C2=$TMP/c/C2.tar.gz
for l in "$C1" "$C2"; do
    "$SN" ztoc create -q -s 256K -o "$l.ztoc" "$l" &&
        "$SN" ztoc info "$l.ztoc" > "$l.ztoc.json" ||
        { echo "Bail out! ztoc create $l"; exit 1; }
done
eval "$($IMGPY push "$R_URL" test/conc "$C1" "$C2" \
        --ztoc "$C1=$C1.ztoc" --ztoc "$C2=$C2.ztoc")" ||
    { echo "Bail out! push failed"; exit 1; }
"$SN" mkfs -q -o "$TMP/c/ref.sqfs" "$C1" "$C2" || { echo "Bail out! mkfs"; exit 1; }
$HELP rangelist "$TMP/c/ref.sqfs" "$TMP/c/tree" > "$TMP/c/list" ||
    { echo "Bail out! range list"; exit 1; }
NSPANS=$(( $(python3 -c 'import json,sys; print(sum(json.load(open(f))["num_spans"] for f in sys.argv[1:]))' "$C1.ztoc.json" "$C2.ztoc.json") ))
echo "# concurrency image: $(wc -l < "$TMP/c/list") files, $NSPANS spans of 256K, flat $(stat -c %s "$TMP/c/ref.sqfs") bytes"

SOCK=$TMP/s.sock
URI="nbd+unix:///?socket=$SOCK"
ST=$TMP/st.json
NREAD=$($HELP read-spans "$C1.ztoc.json" "$C2.ztoc.json")
P0=$(logpos)
check "server through the pass-through proxy" plugin_start "$SOCK" \
    "$F_HOST/test/conc:v2" stats-file="$ST"
check "the export offers multi-conn" bash -c "
    nbdinfo --json '$URI' | python3 -c 'import json,sys; assert json.load(sys.stdin)[\"exports\"][0][\"can_multi_conn\"]'"
t0=$(now_ms)
check "nbd-stress: 16 threads x 16 connections read every file, every byte right" \
    "$NBDSTRESS" "$URI" "$TMP/c/list" 16 1
echo "# $(cat "$TMP/.out") ($(( $(now_ms) - t0 )) ms)"
plugin_stop "$SOCK"
nranges() { cat "$@" | wc -l; }
ndistinct() { local f n=0; for f; do n=$(( n + $(sort -u "$f" | wc -l) )); done; echo $n; }
export -f nranges ndistinct
for l in C1 C2; do
    $HELP ranges "$F_LOG" "$P0" "$(layer_digest "$TMP/c/$l.tar.gz")" > "$TMP/c/$l.ranges"
done
check "stress: the spans of the files were fetched once each ($NREAD), none failed" \
    stats_ok "$ST" "s['spans_fetched'] == s['spans_verified'] == $NREAD and s['spans_failed'] == 0"
check "stress: proxy log: the range GETs cover $NREAD spans, each exactly and once" bash -c "
    a=\$(for l in C1 C2; do $HELP spans-of \"$TMP/c/\$l.tar.gz.ztoc.json\" \$(cat \"$TMP/c/\$l.ranges\") |
          tr ' ' '\\n' | sed \"s/^/\$l:/\"; done)
    echo \"range GETs \$(nranges '$TMP/c/C1.ranges' '$TMP/c/C2.ranges'), spans \$(echo \"\$a\" | wc -l), distinct \$(echo \"\$a\" | sort -u | wc -l)\"
    ! echo \"\$a\" | grep -q ':-1\$' &&
    [ \$(echo \"\$a\" | wc -l) -eq $NREAD ] && [ \$(echo \"\$a\" | sort -u | wc -l) -eq $NREAD ]"

P0=$(logpos)
check "server again" plugin_start "$SOCK" "$F_HOST/test/conc:v2" stats-file="$ST"
t0=$(now_ms)
check "nbdcopy --connections=4 of the flat export = mkfs reference" bash -c "
    nbdcopy --connections=4 --requests=16 '$URI' '$TMP/c/flat.sqfs' &&
    cmp '$TMP/c/flat.sqfs' '$TMP/c/ref.sqfs'"
echo "# nbdcopy: $(( $(now_ms) - t0 )) ms"
plugin_stop "$SOCK"
rm -f "$TMP/c/flat.sqfs"
for l in C1 C2; do
    $HELP ranges "$F_LOG" "$P0" "$(layer_digest "$TMP/c/$l.tar.gz")" > "$TMP/c/$l.ranges"
done
check "nbdcopy: every span fetched once ($NSPANS), none failed, all verified" stats_ok "$ST" \
    "s['spans_total'] == s['spans_fetched'] == s['spans_verified'] == $NSPANS and \
     s['spans_failed'] == 0"
check "nbdcopy: proxy log: each range is exactly a span or a run of spans of the ztoc; every span once" bash -c "
    for l in C1 C2; do
        a=\$($HELP spans-of \"$TMP/c/\$l.tar.gz.ztoc.json\" \$(cat \"$TMP/c/\$l.ranges\") | tr ' ' '\\n' | sort -n | tr '\\n' ' ')
        b=\$(seq 0 \$(( \$(json_get \"$TMP/c/\$l.tar.gz.ztoc.json\" num_spans) - 1 )) | tr '\\n' ' ')
        echo \"\$l fetched: \$a\"; echo \"\$l spans:   \$b\"; [ \"\$a\" = \"\$b\" ] || exit 1
    done"

# Shutdown under load: SIGTERM while nbdcopy's reads, their readahead and
# the background prefetch wait on a slow registry (each range GET delayed
# 0.3 s); each time the server must exit, status 0, within 15 s.
fault_set F '{"rules": [{"match": {"range": true}, "action": "delay", "seconds": 0.3}]}'
for i in 1 2 3 4 5; do
    rm -rf "$TMP/c/sd-cache"
    check "shutdown $i: server with prefetch=background behind a slow proxy" \
        plugin_start "$SOCK" "$F_HOST/test/conc:v2" prefetch=background \
        cache-dir="$TMP/c/sd-cache"
    nbdcopy --connections=4 --requests=16 "$URI" null: 2>/dev/null &
    cp_pid=$!
    sleep "0.$(( i * 2 - 1 ))"
    plugin_stop "$SOCK" 15
    wait "$cp_pid" 2>/dev/null
done
fault_set F '{"rules": []}'

# ---- 2. the registry goes down mid-run ----------------------------------------
# reg_restart NAME: start a stopped registry again with its config (same
# port, same storage).
reg_restart() {
    local d="$REG_BASE/$1" url pid
    url=$(eval "echo \"\${${1}_URL}\"")
    env -u REGISTRY_HTTP_ADDR timeout -k 5 "$REG_LIFETIME" \
        /usr/bin/docker-registry serve "$d/config.yml" >> "$d/registry.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" > "$d/pid"
    _reg_wait_for 20 _reg_ready "$pid" "$url/v2/" "" && _reg_alive "$pid"
}
set -- $(frange "$TMP/c/ref.sqfs" /c1/d1/f001); X_OFF=$1 X_LEN=$2
set -- $(frange "$TMP/c/ref.sqfs" /c2/d3/f048); Y_OFF=$1 Y_LEN=$2
check "server straight from the registry" plugin_start "$SOCK" "$R_HOST/test/conc:v2" \
    stats-file="$ST"
check "a file reads fine" bash -c "
    '$NBDREAD' '$URI' $X_OFF $X_LEN | cmp - '$TMP/c/tree/c1/d1/f001'"
reg_stop R
t0=$(now_ms)
check_fails "registry down: another file (other layer) → EIO" \
    "Input/output error\|errno 5" "$NBDREAD" "$URI" "$Y_OFF" "$Y_LEN"
T_DOWN=$(( $(now_ms) - t0 ))
echo "# the failing read returned after $T_DOWN ms"
check "the failing read returned within 60 s" test $T_DOWN -lt 60000
check "registry back on the same port" reg_restart R
check "the same read now succeeds" bash -c "
    '$NBDREAD' '$URI' $Y_OFF $Y_LEN | cmp - '$TMP/c/tree/c2/d3/f048'"
check "and the first file still reads" bash -c "
    '$NBDREAD' '$URI' $X_OFF $X_LEN | cmp - '$TMP/c/tree/c1/d1/f001'"
plugin_stop "$SOCK"
NXY=$(( $($HELP file-spans "$C1.ztoc.json" c1/d1/f001 | wc -w) + $($HELP file-spans "$C2.ztoc.json" c2/d3/f048 | wc -w) ))
check "stats: the $NXY spans of both files verified, no integrity failure" stats_ok "$ST" \
    "s['spans_verified'] == $NXY and s['spans_failed'] == 0"

# ---- 3. laziness on a >= 100 MB image -------------------------------------------
mkdir -p "$TMP/b"
$HELP gen-big "$TMP/b"
mkdir -p "$TMP/b/tree" && tar -C "$TMP/b/tree" -xf "$TMP/b/B1.tar" big/needle11.txt
gzip -1 -n "$TMP/b/B1.tar" "$TMP/b/B2.tar"
B1=$TMP/b/B1.tar.gz B2=$TMP/b/B2.tar.gz
for l in "$B1" "$B2"; do
    "$SN" ztoc create -q -s 1M -o "$l.ztoc" "$l" &&
        "$SN" ztoc info "$l.ztoc" > "$l.ztoc.json" ||
        { echo "Bail out! ztoc create $l"; exit 1; }
done
eval "$($IMGPY push "$R_URL" test/big "$B1" "$B2" \
        --ztoc "$B1=$B1.ztoc" --ztoc "$B2=$B2.ztoc")" ||
    { echo "Bail out! push failed"; exit 1; }
BSIZE=$(( $(stat -c %s "$B1") + $(stat -c %s "$B2") ))
BSPANS=$(( $(json_get "$B1.ztoc.json" num_spans) + $(json_get "$B2.ztoc.json" num_spans) ))
echo "# big image: layers $BSIZE bytes compressed, $BSPANS spans of 1M"
check "the image's layers total >= 100 MB compressed" test $BSIZE -ge 100000000
P0=$(logpos)
check "server for the big image (through the proxy)" plugin_start "$SOCK" \
    "$F_HOST/test/big:v2" stats-file="$ST"
ESIZE=$(nbdinfo --size "$URI")
check "read the superblock and all metadata" meta_copy "$URI" "$ESIZE" "$TMP/b/meta.sqfs"
check "unsquashfs -lls lists the whole tree from metadata alone" bash -c "
    unsquashfs -lls '$TMP/b/meta.sqfs' > '$TMP/b/ls' &&
    [ \$(grep -c 'big/blob' '$TMP/b/ls') -eq 24 ] && [ \$(grep -c 'doc/t' '$TMP/b/ls') -eq 40 ]"
plugin_stop "$SOCK"
check "metadata: zero spans fetched (stats)" stats_ok "$ST" \
    "s['spans_fetched'] == 0 and s['bytes_fetched'] == 0 and s['spans_total'] == $BSPANS"
check "metadata: no layer range GET (proxy log)" bash -c "
    [ \$( ($HELP ranges '$F_LOG' $P0 $(layer_digest "$B1"); $HELP ranges '$F_LOG' $P0 $(layer_digest "$B2")) | wc -l) -eq 0 ]"
set -- $(frange "$TMP/b/meta.sqfs" /big/needle11.txt); N_OFF=$1 N_LEN=$2
WANT=$($HELP file-spans "$B1.ztoc.json" big/needle11.txt)
P0=$(logpos)
check "server again" plugin_start "$SOCK" "$F_HOST/test/big:v2" stats-file="$ST"
check "read one small file ($N_LEN bytes) in the middle of the 1st layer" bash -c "
    '$NBDREAD' '$URI' $N_OFF $N_LEN | cmp - '$TMP/b/tree/big/needle11.txt'"
plugin_stop "$SOCK"
$HELP ranges "$F_LOG" "$P0" "$(layer_digest "$B1")" > "$TMP/b/B1.ranges"
$HELP ranges "$F_LOG" "$P0" "$(layer_digest "$B2")" > "$TMP/b/B2.ranges"
echo "# needle: spans of header+data: $WANT; fetched: $(tr '\n' ' ' < "$TMP/b/B1.ranges")"
check "one small file: only the spans of its header and data ($WANT), each once (stats)" \
    stats_ok "$ST" "s['spans_fetched'] == s['spans_verified'] == $(echo $WANT | wc -w) and \
        s['layers'][0]['spans_fetched'] == s['spans_fetched'] and s['headers_checked'] >= 1"
check "one small file: the proxy saw exactly those spans' ranges, once each" bash -c "
    [ ! -s '$TMP/b/B2.ranges' ] &&
    got=\$($HELP spans-of '$B1.ztoc.json' \$(cat '$TMP/b/B1.ranges') | tr ' ' '\n' | sort -n | tr '\n' ' ') &&
    echo \"got \$got want $WANT\" && [ \"\$got\" = \"\$(echo $WANT | tr ' ' '\n' | sort -n | tr '\n' ' ')\" ]"
rm -rf "$TMP/b"

# ---- 4. integrity: a ztoc entry pointing at another file's bytes --------------
mkdir -p "$TMP/i/tree"
$HELP gen-bad "$TMP/i"
tar -C "$TMP/i/tree" -xf "$TMP/i/I.tar"
gzip -n "$TMP/i/I.tar"
I1=$TMP/i/I.tar.gz
"$SN" ztoc create -q -s 64K -o "$I1.good" "$I1" || { echo "Bail out! ztoc create"; exit 1; }
check "hand-edit a ztoc: i/a's offset := i/b's" $HELP patch "$SN" "$I1.good" "$I1.ovl" i/a i/b
check "hand-edit another: names i/a and i/b swapped" $HELP swap "$I1.good" "$I1.ztoc" i/a i/b
check "soci-nbd ztoc info decodes the swapped ztoc: i/a at i/b's old offset" bash -c "
    '$SN' ztoc info '$I1.good' > '$TMP/i/good.json' && '$SN' ztoc info '$I1.ztoc' > '$TMP/i/bad.json' &&
    python3 -c 'import json,sys
g = {f[\"name\"]: f[\"offset\"] for f in json.load(open(sys.argv[1]))[\"files\"]}
b = {f[\"name\"]: f[\"offset\"] for f in json.load(open(sys.argv[2]))[\"files\"]}
assert b[\"i/a\"] == g[\"i/b\"] and b[\"i/b\"] == g[\"i/a\"] and b[\"i/c\"] == g[\"i/c\"], (g, b)' '$TMP/i/good.json' '$TMP/i/bad.json'"
eval "$($IMGPY push "$R_URL" test/ovl "$I1" --ztoc "$I1=$I1.ovl")" ||
    { echo "Bail out! push failed"; exit 1; }
check_fails "overlapping entries (offset edit): refused at startup" "entries overlap" \
    nbdkit -U - -r "$PLUGIN" "$R_HOST/test/ovl:v2" --run true
eval "$($IMGPY push "$R_URL" test/bad "$I1" --ztoc "$I1=$I1.ztoc")" ||
    { echo "Bail out! push failed"; exit 1; }
check "server with the v2 index holding the bad ztoc" plugin_start "$SOCK" \
    "$R_HOST/test/bad:v2" stats-file="$ST"
check "the bad ztoc's image is what the server serves" stats_ok "$ST" \
    "s['index_source'] == 'v2' and s['index'] == '$IDX2' and s['layers'][0]['lazy']"
ESIZE=$(nbdinfo --size "$URI")
meta_copy "$URI" "$ESIZE" "$TMP/i/meta.sqfs"
set -- $(frange "$TMP/i/meta.sqfs" /i/a); A_OFF=$1 A_LEN=$2
check_fails "reading i/a (its entry points at i/b's bytes) → EIO" \
    "Input/output error\|errno 5" "$NBDREAD" "$URI" "$A_OFF" "$A_LEN"
set -- $(frange "$TMP/i/meta.sqfs" /i/b)
check_fails "reading i/b (its entry points at i/a's bytes) → EIO" \
    "Input/output error\|errno 5" "$NBDREAD" "$URI" "$1" "$2"
for f in pad c; do
    set -- $(frange "$TMP/i/meta.sqfs" /i/$f)
    check "i/$f reads fine" bash -c "'$NBDREAD' '$URI' $1 $2 | cmp - '$TMP/i/tree/i/$f'"
done
plugin_stop "$SOCK"
check "the server logged the header mismatch" grep -q 'tar header of "i/a" does not match' "$SOCK.log"
check "stats: headers checked, no span failed (the spans are fine)" stats_ok "$ST" \
    "s['headers_checked'] >= 2 and s['spans_failed'] == 0"

# ---- 5. fidelity ------------------------------------------------------------------
# A file of 4 GiB + 64 KiB + 7 bytes (zeros, a marker at its end) in an
# uncompressed tar layer, then a small file: the tar is sparse on disk.
mkdir -p "$TMP/g"
GSIZE=$(( (1 << 32) + 65536 + 7 )) MARK=SOCI-NBD-END-OF-4G
G=$TMP/g/G.tar
$HELP gen-4g "$G" "$GSIZE" "$MARK"
t0=$(now_ms)
check "oci-layout with the 4 GiB layer" $OCIPY layout "$TMP/g/layout" img "$G"
# Indexing the 4 GiB layer before serving takes ~40 s on a busy 2-core
# machine (more under ASan): wait for it longer than for the others.
START_WAIT=300 check "server for it (local layout, no index)" plugin_start "$SOCK" \
    "oci-layout:$TMP/g/layout:img" index=none stats-file="$ST"
ESIZE=$(nbdinfo --size "$URI")
check "the export is larger than the layer ($ESIZE > $(stat -c %s "$G"))" test "$ESIZE" -gt "$(stat -c %s "$G")"
check "its metadata" meta_copy "$URI" "$ESIZE" "$TMP/g/meta.sqfs"
set -- $(frange "$TMP/g/meta.sqfs" /huge/zeros); Z_OFF=$1 Z_LEN=${2:-0}
check "huge/zeros: size $GSIZE" test "$Z_LEN" = "$GSIZE"
for r in "0 1048576" "$(( (1 << 32) - 32768 )) 65536" "$(( GSIZE - 1000000 )) 1000000"; do
    set -- $r
    check "huge/zeros: sha256 of bytes $1+$2" bash -c "
        [ \$('$NBDREAD' '$URI' $(( Z_OFF + $1 )) $2 | sha256sum | cut -d' ' -f1) = $($HELP sample "$GSIZE" "$MARK" "$1" "$2") ]"
done
set -- $(frange "$TMP/g/meta.sqfs" /huge/after)
check "huge/after (behind the 4 GiB file) reads fine" bash -c "
    [ \"\$('$NBDREAD' '$URI' $1 $2)\" = \"\$(python3 -c 'import sys; sys.stdout.write(\"after the 4 GiB file\\n\" * 100)')\" ]"
plugin_stop "$SOCK"
echo "# 4 GiB layer: $(( $(now_ms) - t0 )) ms from layout to last read; local_bytes_read $(json_get "$ST" local_bytes_read)"
rm -rf "$TMP/g"

# The flat export's tree = `umoci unpack` of the same OCI layout.
if [ "$(id -u)" -eq 0 ] && command -v umoci > /dev/null && command -v losetup > /dev/null; then
    mkdir -p "$TMP/u/gen"
    $TREE gen "$TMP/u/gen"
    for l in L1 L2 L3 L4; do $OCIPY strip "$TMP/u/gen/$l.tar" "$TMP/u/$l.tar"; done
    gzip -n "$TMP/u/L1.tar" "$TMP/u/L3.tar"
    U="$TMP/u/L1.tar.gz $TMP/u/L2.tar $TMP/u/L3.tar.gz $TMP/u/L4.tar"
    $OCIPY layout "$TMP/u/layout" img $U
    check "umoci unpack of the layout" umoci unpack --image "$TMP/u/layout:img" "$TMP/u/bundle"
    check "the flat export of the layout" bash -c "
        nbdkit -U - -r '$PLUGIN' 'oci-layout:$TMP/u/layout:img' --run 'nbdcopy \"\$uri\" \"$TMP/u/flat.sqfs\"'"
    mkdir -p "$TMP/u/mnt"
    check "kernel: mount it" bash -c "mount -t squashfs -o loop,ro '$TMP/u/flat.sqfs' '$TMP/u/mnt'" &&
        MOUNTS="$TMP/u/mnt $MOUNTS"
    $TREE scan "$TMP/u/bundle/rootfs" > "$TMP/u/umoci.json"
    $TREE scan "$TMP/u/mnt" > "$TMP/u/flat.json"
    check "both trees are the real thing (> 100 entries)" bash -c "
        for t in umoci flat; do
            python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); assert len(t) > 100, len(t)' '$TMP/u/'\$t.json || exit 1
        done"
    # Known differences, not plugin bugs: umoci keeps the aufs .wh..wh.plnk
    # directory and drops empty xattr values; squashfs clamps a 2^33 mtime.
    $OCIPY umoci-norm "$TMP/u/umoci.json" "$TMP/u/umoci-n.json"
    $OCIPY umoci-norm "$TMP/u/flat.json" "$TMP/u/flat-n.json"
    check "flat export tree = umoci rootfs (bytes, type, mode, owner, link targets, xattrs, mtimes)" \
        $TREE cmp "$TMP/u/umoci-n.json" "$TMP/u/flat-n.json"
    umount "$TMP/u/mnt"
else
    echo "# not root or no umoci: umoci comparison skipped"
fi

finish
