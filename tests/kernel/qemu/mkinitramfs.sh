#!/bin/bash
# soci-nbd tests: build the kernel and initramfs of the QEMU test guest.
#
#   mkinitramfs.sh [-f SRC=DST]... [-b SRC=DST]... TEST_SCRIPT INITRD
#       write INITRD (gzip'd cpio) = the cached base initramfs + TEST_SCRIPT
#       as /test.sh (+ each SRC copied to DST; for -b, also every shared
#       library that `ldd SRC` names, at its own path, the loader
#       included: programs and plugins of the host run in the guest);
#       print the kernel's path.
#   mkinitramfs.sh --kernel
#       make sure the cache is filled; print the kernel's path.
#
# The kernel and its modules come from scripts/debian-kernel.sh (Debian's
# own kernel package, unpacked into a cache, shared with examples/boot-vm).
# The base initramfs (busybox-static, nbd-client and its libraries, the
# modules, /init) is cached next to the kernel.
#
# The guest's /init: mounts proc/sys/devtmpfs, loads the modules (virtio
# pci/blk/net, nbd, squashfs, overlay, loop and their dependencies, in
# modules.dep order), gives eth0 10.0.2.15/24 when there is one, runs
# `sh /test.sh` with OUT=/out, then writes /out as a tar onto the virtio
# disk whose serial is "soci-out" (if any) and powers off.  It prints
# "SOCI-TEST-BEGIN" before and "SOCI-TEST-END: rc=N" after the test on the
# serial console.  /lib/soci-test.sh (for the test to source) has helpers
# that print "SOCI-TEST-RESULT: ok|not ok DESC" lines.
set -eu -o pipefail
umask 022

SELF=$(readlink -f "$0")
KERNEL_SH=$(dirname "$SELF")/../../../scripts/debian-kernel.sh

die() { echo "mkinitramfs.sh: $*" >&2; exit 1; }

# The kernel to boot: vmlinux when there is one.
kernel_path() {
    if [ -f "$KDIR/vmlinux" ]; then echo "$KDIR/vmlinux"; else echo "$KDIR/vmlinuz"; fi
}

write_init() {
    cat > "$1/init" <<'EOF'
#!/bin/sh
# soci-nbd test guest: see tests/kernel/qemu/mkinitramfs.sh.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /mnt /run /out
while read -r m; do
    case $m in
    nbd.ko) insmod /lib/modules/$m nbds_max=16 max_part=0 ;;
    *) insmod /lib/modules/$m ;;
    esac || echo "SOCI-TEST-INIT: insmod $m failed"
done < /lib/modules/load.list
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    ip addr add 10.0.2.15/24 dev eth0
    ip link set eth0 up
fi
OUTDEV=
for d in /sys/block/vd*; do
    [ "$(cat "$d/serial" 2>/dev/null)" = soci-out ] && OUTDEV=/dev/${d##*/}
done
export OUT=/out
echo "SOCI-TEST-BEGIN"
sh /test.sh
rc=$?
if [ -n "$OUTDEV" ]; then
    (cd /out && tar -cf "$OUTDEV" .) || echo "SOCI-TEST-INIT: writing $OUTDEV failed"
fi
sync
echo "SOCI-TEST-END: rc=$rc"
poweroff -f
EOF
    chmod 755 "$1/init"
    cat > "$1/lib/soci-test.sh" <<'EOF'
# soci-nbd test guest: helpers for /test.sh.  Result lines go to the
# console as "SOCI-TEST-RESULT: ok DESC" / "SOCI-TEST-RESULT: not ok DESC"
# (then up to 10 "SOCI-TEST-RESULT: # ..." lines of the command's output).
SOCI_FAILED=0
# check DESC COMMAND...: ok if the command exits 0.
check() {
    desc=$1; shift
    if "$@" > /tmp/.check.out 2>&1; then
        echo "SOCI-TEST-RESULT: ok $desc"
    else
        echo "SOCI-TEST-RESULT: not ok $desc"
        head -10 /tmp/.check.out | sed 's/^/SOCI-TEST-RESULT: # /'
        SOCI_FAILED=$((SOCI_FAILED + 1))
    fi
}
# no_procs NAME...: after a second (a process may take a moment to end),
# no process with one of these names runs (zombies aside); names those
# that do.
no_procs() {
    sleep 1
    for p in /proc/[0-9]*; do
        c=$(cat "$p/comm" 2>/dev/null) s=$(cut -d" " -f3 "$p/stat" 2>/dev/null)
        for n in "$@"; do
            [ "$c" = "$n" ] && [ "$s" != Z ] && { echo "${p#/proc/} $c $s"; return 1; }
        done
    done
    return 0
}
# note TEXT: a diagnostic line the host passes on.
note() { echo "SOCI-TEST-RESULT: # $*"; }
# disk_by_serial SERIAL: the /dev/vdX whose virtio serial is SERIAL.
disk_by_serial() {
    for d in /sys/block/vd*; do
        [ "$(cat "$d/serial" 2>/dev/null)" = "$1" ] && { echo "/dev/${d##*/}"; return 0; }
    done
    return 1
}
# listing DIR: one line per entry below DIR, sorted by path:
#   PATH|RAWMODE(hex)|UID|GID|MTIME|SIZE|NLINK|INODE|MAJOR(hex)|MINOR(hex)|EXTRA
# where EXTRA is the sha256 of a regular file, the target of a symlink.
listing() {
    (cd "$1" || exit 1
     find . -mindepth 1 -exec stat -c '%n|%f|%u|%g|%Y|%s|%h|%i|%t|%T' {} + |
         sort > /tmp/.l.stat
     # Reads in parallel: over nbd-client each small read costs one
     # round trip through QEMU's user network (some ms under TCG), and
     # squashfs reads a small file in one request.  Each sha256sum writes
     # its own file, so that lines do not interleave.
     rm -rf /tmp/.l.d && mkdir /tmp/.l.d
     find . -type f -print0 |
         xargs -0 -r -P 8 -n 32 sh -c 'sha256sum "$@" > /tmp/.l.d/$$' sh
     cat /tmp/.l.d/* 2>/dev/null |
         sed 's/^\([0-9a-f]*\)  \(.*\)$/\2|\1/' | sort > /tmp/.l.sha
     find . -type l | while read -r l; do
         printf '%s|%s\n' "$l" "$(readlink "$l")"; done | sort > /tmp/.l.lnk
     cat /tmp/.l.sha /tmp/.l.lnk | sort > /tmp/.l.extra
     # Join on the path: both lists are sorted the same way.
     awk -F'|' 'NR == FNR { x[$1] = $2; next }
                { print $0 "|" (($1 in x) ? x[$1] : "") }' \
         /tmp/.l.extra /tmp/.l.stat)
}
EOF
}

# fill_base DIR BASE: the base initramfs, gzip'd cpio
fill_base() {
    kdir=$1 base=$2
    [ -f "$base" ] && return 0
    w=$(mktemp -d "$CACHE/.work.XXXXXX")
    r=$w/root
    mkdir -p "$r"/bin "$r"/sbin "$r"/usr/bin "$r"/usr/sbin "$r"/lib/modules \
        "$r"/proc "$r"/sys "$r"/dev "$r"/tmp "$r"/mnt "$r"/etc
    cp /bin/busybox "$r/bin/busybox"
    for a in $("$r/bin/busybox" --list); do
        [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"
    done
    ln -s ../bin/busybox "$r/sbin/busybox"
    nbdc=$(command -v nbd-client || echo /usr/sbin/nbd-client)
    [ -x "$nbdc" ] || die "nbd-client is not installed"
    cp "$nbdc" "$r/usr/sbin/nbd-client"
    ln -s ../usr/sbin/nbd-client "$r/sbin/nbd-client"
    # nbd-client's libraries, at the same paths (the loader included).
    for lib in $(ldd "$nbdc" | awk '/=> \// { print $3 } /^\t\// { print $1 }'); do
        mkdir -p "$r$(dirname "$lib")"
        cp -L "$lib" "$r$lib"
    done
    cp "$kdir"/modules/*.ko "$kdir"/modules/load.list "$r/lib/modules/"
    echo "root:x:0:0:root:/:/bin/sh" > "$r/etc/passwd"
    echo "root:x:0:" > "$r/etc/group"
    write_init "$r"
    (cd "$r" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) |
        gzip -1 -n > "$w/base.cpio.gz"
    mv "$w/base.cpio.gz" "$base"
    rm -rf "$w"
}

prepare() {
    KDIR=$("$KERNEL_SH") || die "no kernel (scripts/debian-kernel.sh failed)"
    CACHE=$(dirname "$KDIR")
    # One builder at a time.
    exec 9> "$CACHE/.lock"
    flock 9
    # The base depends on this script (/init), the modules and the host's
    # busybox and nbd-client: name it after them.
    stamp=$( { sha256sum "$SELF"; cat "$KDIR/modules/load.list"; sha256sum /bin/busybox;
               sha256sum "$(command -v nbd-client || echo /usr/sbin/nbd-client)"; } |
             sha256sum | cut -c1-16)
    BASE=$KDIR/base-$stamp.cpio.gz
    fill_base "$KDIR" "$BASE"
    # Drop bases of older versions of this script.
    for b in "$KDIR"/base-*.cpio.gz; do
        [ "$b" = "$BASE" ] || rm -f "$b"
    done
    exec 9>&-
}

if [ "${1:-}" = --kernel ]; then
    prepare
    kernel_path
    exit 0
fi

FILES=() BINS=()
while [ $# -gt 0 ]; do
    case $1 in
    -f) FILES+=("$2"); shift 2 ;;
    -b) BINS+=("$2"); shift 2 ;;
    -*) die "unknown option $1" ;;
    *) break ;;
    esac
done
[ $# -eq 2 ] || die "usage: mkinitramfs.sh [-f SRC=DST]... [-b SRC=DST]... TEST_SCRIPT INITRD | --kernel"
TEST=$1 INITRD=$2
[ -f "$TEST" ] || die "no test script $TEST"
prepare

w=$(mktemp -d "${TMPDIR:-/tmp}/soci-nbd-initrd.XXXXXX")
trap 'rm -rf "$w"' EXIT
cp "$TEST" "$w/test.sh"
chmod 755 "$w/test.sh"
for f in ${FILES[@]+"${FILES[@]}"}; do
    src=${f%%=*} dst=${f#*=}
    mkdir -p "$w/$(dirname "$dst")"
    cp -a "$src" "$w/$dst"
done
for f in ${BINS[@]+"${BINS[@]}"}; do
    src=${f%%=*} dst=${f#*=}
    [ -f "$src" ] || die "no file $src"
    mkdir -p "$w/$(dirname "$dst")"
    cp -L "$src" "$w/$dst"
    # A static program has no libraries (ldd fails on it).
    for lib in $(ldd "$src" 2>/dev/null |
                 awk '/=> \// { print $3 } /^\t\// { print $1 }'); do
        [ -f "$w$lib" ] && continue
        mkdir -p "$w$(dirname "$lib")"
        cp -L "$lib" "$w$lib"
    done
done
# Concatenated archives: the kernel unpacks one after the other.
{ cat "$BASE"
  (cd "$w" && find . -mindepth 1 | LC_ALL=C sort |
      cpio -o -H newc --quiet -R 0:0) | gzip -1 -n; } > "$INITRD"
kernel_path
