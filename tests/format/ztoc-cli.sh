#!/bin/bash
# soci-nbd tests: the ztoc commands' output (info, ls), help texts, and the
# one-line errors users see for bad arguments.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/helpers/lib.sh"

SN=$SOCI_NBD
"$SN" ztoc create -q -b "AWS SOCI CLI v0.2" -s 4096 -o "$TMP/B.ztoc" "$DATA/B.tar.gz"
"$SN" ztoc create -q -s 4096 -o "$TMP/A.ztoc" "$DATA/A.tar.gz"

# info: JSON with the span table of the reference vector (checked independently
# with python's json module against the SHA256SUMS-pinned blob geometry).
check "ztoc info B" bash -c "'$SN' ztoc info '$TMP/B.ztoc' > '$TMP/B.json'"
check "info is JSON with 7 spans and 4 files" python3 - "$TMP/B.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["num_spans"] == 7 and len(j["spans"]) == 7, j["num_spans"]
assert j["max_span_id"] == 6 and j["span_size"] == 4096
assert j["compressed_archive_size"] == 573
assert j["uncompressed_archive_size"] == 30720
want = [(10,158,0,5000,0),(157,209,5000,10000,7),(208,339,10000,15000,5),
        (338,390,15000,20000,4),(389,441,20000,25000,2),(441,555,25000,30000,0),
        (554,573,30000,30720,6)]
got = [(s["compressed_start"], s["compressed_end"], s["uncompressed_start"],
        s["uncompressed_end"], s["bits"]) for s in j["spans"]]
assert got == want, got
assert j["spans"][6]["digest"] == "sha256:3ddcb205126c9cbf7b52ea85ed021640cf2598f3f445ba9e7e74857d31733f4b"
names = [f["name"] for f in j["files"]]
assert names == ["a.txt", "dir/", "dir/b.txt", "dir/c.bin"], names
assert [f["offset"] for f in j["files"]] == [512, 12288, 12800, 29184]
PY
# Span digests in info equal sha256 of the layer bytes they cover.
check "info span digests hash the layer's compressed ranges" python3 - "$TMP/B.json" "$DATA/B.tar.gz" <<'PY'
import hashlib, json, sys
j = json.load(open(sys.argv[1])); blob = open(sys.argv[2], "rb").read()
for s in j["spans"]:
    d = hashlib.sha256(blob[s["compressed_start"]:s["compressed_end"]]).hexdigest()
    assert s["digest"] == "sha256:" + d, s
PY

# ls: one line per entry, names and types as tar sees them.
check "ztoc ls A" bash -c "'$SN' ztoc ls '$TMP/A.ztoc' > '$TMP/A.ls'"
check "ls lists the six entries in tar order" \
    test "$(awk '{print $NF}' "$TMP/A.ls" | tr '\n' ' ')" = "etc/ etc/hello.txt hello.txt etc/hello.txt etc/x etc/.wh..wh..opq "
check "ls shows the symlink target" grep -q '^lrwxrwxrwx 0/0 .* etc/link -> hello.txt$' "$TMP/A.ls"
check "ls shows the hard link" grep -q '^h.* etc/hard link to etc/hello.txt$' "$TMP/A.ls"
check "ls shows size, offset and UTC time" \
    grep -Eq '^-rw-r--r-- 0/0 +12 +1024 2023-11-14 22:13:20 etc/hello.txt$' "$TMP/A.ls"
check "ls names match tar -t" \
    bash -c "diff <(awk '{for(i=1;i<=NF;i++) if (\$i ~ /:[0-9][0-9]$/) {print \$(i+1); next}}' '$TMP/A.ls') <(tar -tzf '$DATA/A.tar.gz')"

# Help for every command; usage errors exit 2 with a pointer to --help.
for c in "" "ztoc" "ztoc create" "ztoc info" "ztoc ls" "ztoc get-file"; do
    # shellcheck disable=SC2086
    check "--help for '$c'" bash -c "'$SN' $c --help | grep -q Usage"
done
check "--version" bash -c "'$SN' --version | grep -q '^soci-nbd [0-9]'"
check_fails "unknown command" "unknown command 'frob'" "$SN" frob
check_fails "bad span size" "invalid span size 'x1'" "$SN" ztoc create -s x1 "$DATA/A.tar"
check_fails "missing layer" "nope.tar.gz: No such file or directory" \
    "$SN" ztoc create -o "$TMP/n.ztoc" "$TMP/nope.tar.gz"
check_fails "missing ztoc" "nope.ztoc" "$SN" ztoc info "$TMP/nope.ztoc"
printf 'not a ztoc at all, just text\n' > "$TMP/garbage.ztoc"
check_fails "garbage ztoc" "garbage.ztoc" "$SN" ztoc ls "$TMP/garbage.ztoc"
check_fails "get-file of a missing path" "no/such: no such file" \
    "$SN" ztoc get-file "$DATA/B.tar.gz" "$TMP/B.ztoc" no/such
check_fails "get-file of a directory" "not a regular file" \
    "$SN" ztoc get-file "$DATA/B.tar.gz" "$TMP/B.ztoc" dir
check "no partial output file after a failed get-file" test ! -e "$TMP/out"
finish
