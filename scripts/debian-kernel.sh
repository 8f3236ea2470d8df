#!/bin/bash
# soci-nbd: a Debian kernel and a few of its modules for QEMU guests, cached.
# Used by examples/boot-vm and by the test guest of tests/kernel/qemu/.
#
#   debian-kernel.sh
#       fill the cache if needed; print the kernel's directory KDIR:
#         KDIR/vmlinuz        the kernel (bzImage)
#         KDIR/vmlinux        the same kernel uncompressed, when it can be
#                             booted directly (see fill_vmlinux); prefer it
#         KDIR/config, KDIR/kver
#         KDIR/modules/*.ko   the modules of $MODULES below and their
#                             dependencies
#         KDIR/modules/load.list  all of them, one file name a line, in an
#                             order that loads (dependencies first)
#         KDIR/modules/deps   one line per module of $MODULES:
#                             "NAME: A.ko B.ko ... NAME.ko" in load order
#
# The kernel is Debian's own (the package that `apt-cache depends
# linux-image-amd64` names), fetched with `apt-get download` and unpacked
# with `dpkg-deb -x` — nothing is installed into /boot, nothing needs root
# but a writable cache.  The cache ($SOCI_NBD_QEMU_CACHE, else
# /var/cache/soci-nbd-qemu when writable, else ~/.cache/soci-nbd-qemu)
# keeps, per kernel package, only the files above (about 90 MB).  Set
# SOCI_NBD_QEMU_KPKG to pick another linux-image-* package.  Concurrent
# callers wait for each other (flock on CACHE/.lock).
set -eu -o pipefail
umask 022

# Every module any soci-nbd guest loads; users pick theirs from modules/deps.
MODULES="virtio_pci virtio_blk virtio_net nbd squashfs overlay loop"

die() { echo "debian-kernel.sh: $*" >&2; exit 1; }

cache_dir() {
    if [ -n "${SOCI_NBD_QEMU_CACHE:-}" ]; then
        echo "$SOCI_NBD_QEMU_CACHE"
    elif mkdir -p /var/cache/soci-nbd-qemu 2>/dev/null &&
         [ -w /var/cache/soci-nbd-qemu ]; then
        echo /var/cache/soci-nbd-qemu
    else
        echo "${XDG_CACHE_HOME:-$HOME/.cache}/soci-nbd-qemu"
    fi
}

kernel_pkg() {
    if [ -n "${SOCI_NBD_QEMU_KPKG:-}" ]; then
        echo "$SOCI_NBD_QEMU_KPKG"
        return
    fi
    p=$(apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    if [ -z "$p" ]; then
        # No package lists: use a kernel cached earlier, if any.
        p=$(ls -1d "$CACHE"/linux-image-*/vmlinuz 2>/dev/null | tail -1)
        p=${p%/vmlinuz}
        p=${p##*/}
    fi
    [ -n "$p" ] || die "cannot tell which linux-image-* package to use (apt-cache depends linux-image-amd64 names none; set SOCI_NBD_QEMU_KPKG)"
    echo "$p"
}

# fill_kernel DIR PKG: DIR/vmlinuz, DIR/config, DIR/kver, DIR/modules/
fill_kernel() {
    dir=$1 pkg=$2
    [ -f "$dir/vmlinuz" ] && [ -f "$dir/modules/deps" ] &&
        [ "$(cat "$dir/modules/set" 2>/dev/null)" = "$MODULES" ] && return 0
    for t in apt-get dpkg-deb depmod modprobe; do
        command -v $t > /dev/null || [ -x /usr/sbin/$t ] || [ -x /sbin/$t ] ||
            die "$t is not installed"
    done
    w=$(mktemp -d "$CACHE/.work.XXXXXX")
    ( cd "$w" && apt-get download -q "$pkg" >/dev/null 2>"$w/apt.err" ) ||
        { cat "$w/apt.err" >&2; rm -rf "$w"; die "apt-get download $pkg failed"; }
    dpkg-deb -x "$w"/"$pkg"_*.deb "$w/x"
    rm -f "$w"/*.deb
    kver=$(ls -1 "$w/x/lib/modules" | head -1)
    [ -n "$kver" ] || die "$pkg has no /lib/modules/*"
    PATH=$PATH:/usr/sbin:/sbin depmod -b "$w/x" "$kver"
    mkdir -p "$w/out/modules"
    cp "$w/x/boot/vmlinuz-$kver" "$w/out/vmlinuz"
    cp "$w/x/boot/config-$kver" "$w/out/config"
    echo "$kver" > "$w/out/kver"
    # modprobe --show-depends prints "insmod PATH [OPTIONS]" in load order,
    # dependencies first; built-in modules print "builtin NAME".  -C
    # /dev/null: no options from the host's /etc/modprobe.d.
    : > "$w/out/modules/load.list"
    : > "$w/out/modules/deps"
    for m in $MODULES; do
        PATH=$PATH:/usr/sbin:/sbin modprobe -C /dev/null -d "$w/x" -S "$kver" \
            --show-depends "$m" > "$w/dep" || die "module $m not found in $pkg"
        files=$(awk '$1 == "insmod" { n = split($2, p, "/"); print p[n] }' "$w/dep")
        echo "$m:" $files >> "$w/out/modules/deps"
        for path in $(awk '$1 == "insmod" { print $2 }' "$w/dep"); do
            base=${path##*/}
            grep -qx "$base" "$w/out/modules/load.list" && continue
            cp "$path" "$w/out/modules/$base"
            echo "$base" >> "$w/out/modules/load.list"
        done
    done
    echo "$MODULES" > "$w/out/modules/set"
    rm -rf "$w/x" "$w/dep"
    rm -rf "$dir/modules"
    mkdir -p "$dir"
    cp -a "$w/out/." "$dir/"
    rm -rf "$w"
}

# fill_vmlinux DIR: DIR/vmlinux, the uncompressed ELF kernel out of the
# xz'd bzImage.  QEMU boots it directly through its PVH entry point
# (CONFIG_PVH=y in Debian's kernel), which spares the 4 s that the
# kernel's own xz decompression takes under TCG.  Without it (no xz data
# found, not an ELF), boot vmlinuz.
fill_vmlinux() {
    dir=$1
    [ -f "$dir/vmlinux" ] || [ -f "$dir/vmlinux.none" ] && return 0
    off=$(LC_ALL=C grep -abo $'\xfd7zXZ\x00' "$dir/vmlinuz" | head -1 | cut -d: -f1)
    if [ -n "$off" ] &&
       xz -dc --single-stream < <(tail -c +$((off + 1)) "$dir/vmlinuz") \
           > "$dir/vmlinux.tmp" 2>/dev/null &&
       [ "$(head -c 4 "$dir/vmlinux.tmp")" = $'\x7fELF' ] &&
       grep -q '^CONFIG_PVH=y' "$dir/config"; then
        mv "$dir/vmlinux.tmp" "$dir/vmlinux"
    else
        rm -f "$dir/vmlinux.tmp"
        : > "$dir/vmlinux.none"
    fi
}

case ${1:-} in
"") ;;
-h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
*) die "usage: debian-kernel.sh (no arguments; see its header)" ;;
esac

CACHE=$(cache_dir)
mkdir -p "$CACHE" || die "cannot create the cache $CACHE"
exec 9> "$CACHE/.lock"
flock 9
PKG=$(kernel_pkg)
KDIR=$CACHE/$PKG
fill_kernel "$KDIR" "$PKG"
fill_vmlinux "$KDIR"
echo "$KDIR"
