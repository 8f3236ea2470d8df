#!/bin/bash
# soci-nbd demo, end to end on a fresh Debian 12 machine:
#   install dependencies, build, make a sample gzip layer, build its SOCI
#   ztoc, inspect it, and extract one file by reading only its spans.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
./scripts/install-deps.sh
[ -x configure ] && [ -e build-aux/tap-driver.sh ] || ./autogen.sh > /dev/null
build=$top/_build/demo
mkdir -p "$build"
[ -f "$build/Makefile" ] || (cd "$build" && "$top/configure" > configure.out)
make -C "$build" -j"$(nproc)" soci-nbd > "$build/build.out"
SN=$build/soci-nbd

work=$(mktemp -d /tmp/soci-nbd-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "== A sample layer: /usr/share/perl and /usr/lib/x86_64-linux-gnu/perl-base, as a container layer"
tar -C / --sort=name --owner=0 --group=0 --numeric-owner -cf "$work/layer.tar" \
    usr/share/perl usr/lib/x86_64-linux-gnu/perl-base 2>/dev/null || true
gzip -6n < "$work/layer.tar" > "$work/layer.tar.gz"
ls -l "$work/layer.tar" "$work/layer.tar.gz" | awk '{print "   ", $5, $NF}'

echo "== soci-nbd ztoc create (span size 1 MiB)"
"$SN" ztoc create --span-size 1M -o "$work/layer.ztoc" "$work/layer.tar.gz"

echo "== soci-nbd ztoc info (summary)"
"$SN" ztoc info "$work/layer.ztoc" | python3 -c '
import json, sys
j = json.load(sys.stdin)
print("    compression %s, %d files, %d spans of >= %d bytes" % (
    j["compression"], j["num_files"], j["num_spans"], j["span_size"]))
print("    layer %d bytes compressed, tar %d bytes" % (
    j["compressed_archive_size"], j["uncompressed_archive_size"]))
s = j["spans"][1]
print("    span 1: compressed [%d,%d) -> tar [%d,%d) %s" % (
    s["compressed_start"], s["compressed_end"], s["uncompressed_start"],
    s["uncompressed_end"], s["digest"][:23] + "..."))'

echo "== soci-nbd ztoc ls (first lines)"
"$SN" ztoc ls "$work/layer.ztoc" | head -5

file=$("$SN" ztoc ls "$work/layer.ztoc" | awk '$1 ~ /^-/ && $3 > 20000 {print $NF}' | tail -1)
echo "== soci-nbd ztoc get-file $file"
"$SN" ztoc get-file --verbose -o "$work/out" "$work/layer.tar.gz" "$work/layer.ztoc" "$file" 2> "$work/trace"
cat "$work/trace"
awk -v total="$(stat -c %s "$work/layer.tar.gz")" -F'[][,)]' '
    /compressed \[/ { n += $3 - $2 }
    END { printf "   read %d of %d compressed bytes (%.1f%% of the layer)\n", n, total, 100 * n / total }' "$work/trace"
if tar -xOzf "$work/layer.tar.gz" "$file" | cmp -s - "$work/out"; then
    echo "   extracted $(stat -c %s "$work/out") bytes, identical to tar -xO"
else
    echo "   MISMATCH with tar -xO" >&2; exit 1
fi
echo "== done"
