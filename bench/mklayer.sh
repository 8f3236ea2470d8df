#!/bin/bash
# Make (once) the realistic layer the benchmarks use: a debootstrap
# --variant=minbase Debian 12 rootfs as tar, and gzip -6 of it, cached in
# $SOCI_NBD_BENCH_CACHE (default /var/cache/soci-nbd-bench).  The mirror is
# the one apt already uses.  Prints the path of the .tar.gz.
set -eu
cache=${SOCI_NBD_BENCH_CACHE:-/var/cache/soci-nbd-bench}
out=$cache/minbase.tar.gz
if [ ! -s "$out" ]; then
    mkdir -p "$cache"
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null ||
             true)
    [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
    root=$(mktemp -d "$cache/root.XXXXXX")
    debootstrap --variant=minbase bookworm "$root" "$mirror" > "$cache/debootstrap.log" 2>&1 ||
        { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*_Packages
    tar -C "$root" --sort=name --numeric-owner -cf "$cache/minbase.tar" .
    gzip -6n < "$cache/minbase.tar" > "$out.tmp" && mv "$out.tmp" "$out"
    rm -rf "$root"
fi
echo "$out"
