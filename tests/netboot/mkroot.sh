#!/bin/bash
# soci-nbd tests: the Debian 12 system the network-boot test boots, made
# once and cached in $SOCI_NBD_BENCH_CACHE/netboot (default
# /var/cache/soci-nbd-bench/netboot):
#
#   mkroot.sh image
#       a debootstrap --variant=minbase Debian 12 with systemd (as /sbin/init),
#       initramfs-tools, nbd-client, busybox, nbdkit and the libraries of the
#       soci plugin, and Debian's kernel package installed; prints the path of the root filesystem as a layer
#       (tar.gz, without /boot and the kernel's modules: the guest's modules
#       come from its initramfs)
#   mkroot.sh initrd OUT [PROGRAM...]
#       install examples/initramfs-tools (hook and boot=soci script) and the
#       PROGRAMs (in /usr/local/sbin: soci-nbd-attach; a *.so, the soci
#       plugin, in nbdkit's plugin directory) into that system
#       and build an initramfs there with Debian's own
#       mkinitramfs, written to OUT, its file list (Debian's lsinitramfs)
#       to OUT.list; prints the kernel's path
#
# The mirror is the one apt already uses; the kernel package is the one
# scripts/debian-kernel.sh picks (the same kernel the other QEMU tests
# boot).  Concurrent callers wait for each other (flock).
set -eu -o pipefail
umask 022
SELF=$(readlink -f "$0")
TOP=$(dirname "$SELF")/../..
cache=${SOCI_NBD_BENCH_CACHE:-/var/cache/soci-nbd-bench}/netboot
PKGS="systemd-sysv,initramfs-tools,nbd-client,busybox,kmod,zstd,nbdkit,libcurl4,libjansson4,libsquashfs1,libisal2,libpsl5,libzstd1,libssl3,ca-certificates"

die() { echo "mkroot.sh: $*" >&2; exit 1; }

mkdir -p "$cache"
exec 9> "$cache/.lock"
flock 9

KDIR=$("$TOP/scripts/debian-kernel.sh") || die "scripts/debian-kernel.sh failed"
KVER=$(cat "$KDIR/kver")
KEY=$(echo "$PKGS $KVER v1" | sha256sum | cut -c1-16)
ROOT=$cache/root-$KEY

make_root() {
    local w pkg
    rm -rf "$cache"/root-* "$cache"/image-*.tar.gz "$cache"/.work.*
    w=$(mktemp -d "$cache/.work.XXXXXX")
    debootstrap --variant=minbase --include="$PKGS" bookworm "$w/root" "$("$TOP/bench/mklayer.sh" mirror)" \
        > "$w/debootstrap.log" 2>&1 ||
        { tail -20 "$w/debootstrap.log" >&2; rm -rf "$w"; die "debootstrap failed"; }
    pkg=linux-image-$KVER
    (cd "$w" && apt-get download -q "$pkg" > download.log 2>&1) ||
        { tail -5 "$w/download.log" >&2; rm -rf "$w"; die "apt-get download $pkg failed"; }
    cp "$w"/"$pkg"_*.deb "$w/root/tmp/kernel.deb"
    mount -t proc proc "$w/root/proc"
    st=0
    chroot "$w/root" env DEBIAN_FRONTEND=noninteractive dpkg -i /tmp/kernel.deb \
        > "$w/dpkg.log" 2>&1 || st=$?
    umount "$w/root/proc"
    [ $st -eq 0 ] || { tail -20 "$w/dpkg.log" >&2; rm -rf "$w"; die "dpkg -i $pkg failed"; }
    rm -f "$w/root/tmp/kernel.deb" "$w"/root/var/cache/apt/archives/*.deb \
        "$w"/root/var/lib/apt/lists/*_Packages
    echo soci-netboot > "$w/root/etc/hostname"
    # The image's root is the overlay the initramfs mounts: nothing to fsck.
    : > "$w/root/etc/fstab"
    mv "$w/root" "$ROOT"
    rm -rf "$w"
}

make_image() {
    tar -C "$ROOT" --sort=name --numeric-owner \
        --exclude=./boot --exclude=./usr/lib/modules --exclude=./proc/* \
        --exclude=./sys/* --exclude=./dev/* -cf - . |
        gzip -6n > "$cache/image-$KEY.tar.gz.tmp"
    mv "$cache/image-$KEY.tar.gz.tmp" "$cache/image-$KEY.tar.gz"
}

[ -x "$ROOT/usr/sbin/mkinitramfs" ] || make_root
case ${1:-} in
image)
    [ -s "$cache/image-$KEY.tar.gz" ] || make_image
    echo "$cache/image-$KEY.tar.gz" ;;
initrd)
    [ $# -ge 2 ] || die "usage: mkroot.sh initrd OUT [PROGRAM...]"
    out=$2; shift 2
    plugindir=$(chroot "$ROOT" nbdkit --dump-config | sed -n 's/^plugindir=//p')
    rm -f "$ROOT$plugindir/nbdkit-soci-plugin.so"
    for p in "$@"; do
        case $p in
        *.so) install -m 0644 "$p" "$ROOT$plugindir/nbdkit-soci-plugin.so" ;;
        *) install -m 0755 "$p" "$ROOT/usr/local/sbin/" ;;
        esac
    done
    install -m 0755 "$TOP/examples/initramfs-tools/hooks/soci-nbd" \
        "$ROOT/etc/initramfs-tools/hooks/soci-nbd"
    install -m 0644 "$TOP/examples/initramfs-tools/scripts/soci" \
        "$ROOT/etc/initramfs-tools/scripts/soci"
    mount -t proc proc "$ROOT/proc"
    st=0
    chroot "$ROOT" mkinitramfs -o /tmp/initrd.img "$KVER" > "$cache/mkinitramfs.log" 2>&1 || st=$?
    [ $st -ne 0 ] || chroot "$ROOT" lsinitramfs /tmp/initrd.img > "$out.list" || st=$?
    umount "$ROOT/proc"
    [ $st -eq 0 ] || { tail -20 "$cache/mkinitramfs.log" >&2; die "mkinitramfs failed"; }
    mv "$ROOT/tmp/initrd.img" "$out"
    if [ -f "$KDIR/vmlinux" ]; then echo "$KDIR/vmlinux"; else echo "$KDIR/vmlinuz"; fi ;;
*) echo "usage: mkroot.sh image | initrd OUT" >&2; exit 2 ;;
esac
