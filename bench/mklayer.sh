#!/bin/bash
# Make (once) the realistic layers the benchmarks, tests and examples use,
# cached in $SOCI_NBD_BENCH_CACHE (default /var/cache/soci-nbd-bench):
#
#   mklayer.sh [minbase]   a debootstrap --variant=minbase Debian 12 rootfs
#                          as tar (minbase.tar) and gzip -6 of it; prints
#                          the path of minbase.tar.gz
#   mklayer.sh mirror      print the Debian mirror apt uses (what the
#                          layers here are made from)
#   mklayer.sh python      a layer to put on top of minbase: Debian's
#                          python3 (python3-minimal, libpython3.11-stdlib and
#                          what minbase lacks of their dependencies),
#                          unpacked with dpkg-deb -x (no maintainer scripts:
#                          enough to run python3); prints python.tar.gz
#
# The mirror is the one apt already uses.  Concurrent callers (make -j
# check) wait for each other on a lock; the files appear atomically.
set -eu
cache=${SOCI_NBD_BENCH_CACHE:-/var/cache/soci-nbd-bench}
what=${1:-minbase}
mkdir -p "$cache"
exec 9> "$cache/.lock"
flock 9

mirror() {
    local m
    m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$m" ] || m=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
    echo "$m"
}

make_minbase() {
    local root
    root=$(mktemp -d "$cache/root.XXXXXX")
    debootstrap --variant=minbase bookworm "$root" "$(mirror)" > "$cache/debootstrap.log" 2>&1 ||
        { tail -20 "$cache/debootstrap.log" >&2; rm -rf "$root"; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*_Packages
    tar -C "$root" --sort=name --numeric-owner -cf "$cache/minbase.tar.tmp" .
    gzip -6n < "$cache/minbase.tar.tmp" > "$cache/minbase.tar.gz.tmp"
    mv "$cache/minbase.tar.tmp" "$cache/minbase.tar"
    mv "$cache/minbase.tar.gz.tmp" "$cache/minbase.tar.gz"
    rm -rf "$root"
}

make_python() {
    local w have p
    w=$(mktemp -d "$cache/python.XXXXXX")
    have=$(tar -tf "$cache/minbase.tar")
    pkgs="python3-minimal python3.11-minimal libpython3.11-minimal libpython3.11-stdlib media-types"
    # Libraries the interpreter and its C modules load that minbase may lack.
    for p in libexpat1:libexpat.so.1 libssl3:libssl.so.3; do
        grep -q "/${p#*:}\$" <<< "$have" || pkgs+=" ${p%%:*}"
    done
    (cd "$w" && apt-get download -q $pkgs > download.log 2>&1) ||
        { tail -5 "$w/download.log" >&2; rm -rf "$w"; exit 1; }
    mkdir "$w/root"
    for p in "$w"/*.deb; do dpkg-deb -x "$p" "$w/root"; done
    # minbase is merged-/usr (/lib -> usr/lib ...): a directory /lib in an
    # upper layer would replace that symlink, so move such trees under usr/.
    for p in bin sbin lib lib32 lib64 libx32; do
        [ -d "$w/root/$p" ] && [ ! -L "$w/root/$p" ] || continue
        mkdir -p "$w/root/usr/$p"
        cp -a "$w/root/$p/." "$w/root/usr/$p/"
        rm -rf "${w:?}/root/$p"
    done
    tar -C "$w/root" --sort=name --numeric-owner --owner=0 --group=0 \
        --mtime=@1700000000 -cf - . | gzip -6n > "$cache/python.tar.gz.tmp"
    mv "$cache/python.tar.gz.tmp" "$cache/python.tar.gz"
    rm -rf "$w"
}

case $what in
mirror)
    mirror ;;
minbase)
    [ -s "$cache/minbase.tar.gz" ] && [ -s "$cache/minbase.tar" ] || make_minbase
    echo "$cache/minbase.tar.gz" ;;
python)
    [ -s "$cache/minbase.tar" ] || make_minbase
    [ -s "$cache/python.tar.gz" ] || make_python
    echo "$cache/python.tar.gz" ;;
*) echo "usage: mklayer.sh [minbase|python|mirror]" >&2; exit 2 ;;
esac
