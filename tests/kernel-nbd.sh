#!/bin/bash
# soci-nbd tests: `soci-nbd mkfs` images served over NBD and mounted by a
# real kernel's nbd driver — Debian 12's kernel in a QEMU (TCG) guest built
# by tests/qemu/, since the build machines' kernel has no nbd driver.
#
# Boot 1: the guest runs nbd-client for the FLAT image and three per-layer
# images, mounts them squashfs read-only, stacks the layers with overlayfs,
# and lists both trees (type, mode, ids, mtime, size, sha256 of every file,
# symlink targets, device numbers, inodes).  Boot 2: the same exports as
# virtio disks (QEMU's own NBD client), the "VM boot image" path.  The host
# compares every listing with the reference tree of tests/mkfs-tree.py.
#
# The NBD server is a parameter: KERNEL_NBD_SERVER, a shell command run with
# $SOCK, $DIR and $PIDFILE set, that must serve each file of $DIR as the
# export of its name on the Unix socket $SOCK, read-only, and write its pid
# to $PIDFILE once it listens.  The default is nbdkit's file plugin.
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

SN=$SOCI_NBD
PY="python3 $top_srcdir/tests/mkfs-tree.py"
LST="python3 $top_srcdir/tests/qemu/listing.py"
RUN=$top_srcdir/tests/qemu/run.sh
: "${KERNEL_NBD_SERVER:=nbdkit -U \"\$SOCK\" -r -P \"\$PIDFILE\" -f file dir=\"\$DIR\"}"

for tool in qemu-system-x86_64 socat cpio busybox nbd-client depmod \
            apt-get dpkg-deb xz nbdkit python3 timeout; do
    if ! command -v $tool > /dev/null && ! [ -x "/usr/sbin/$tool" ] &&
       ! [ -x "/sbin/$tool" ]; then
        echo "Bail out! $tool is not installed (scripts/install-deps.sh)"
        exit 1
    fi
done

SPID= RPID=
cleanup() {
    if [ -n "$RPID" ]; then
        kill "$RPID" 2>/dev/null        # run.sh ends its QEMU
        wait "$RPID" 2>/dev/null
    fi
    if [ -n "$SPID" ]; then
        [ -s "$TMP/server.pid" ] && kill "$(cat "$TMP/server.pid")" 2>/dev/null
        kill "$SPID" 2>/dev/null
        wait "$SPID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ---- images ---------------------------------------------------------------
$PY gen "$TMP"
gzip -n "$TMP/L1.tar"                           # L1 gzip, L2 plain, L3 gzip
gzip -n "$TMP/L3.tar"
L1=$TMP/L1.tar.gz L2=$TMP/L2.tar L3=$TMP/L3.tar.gz L4=$TMP/L4.tar
EX=$TMP/exports
mkdir -p "$EX"
check "mkfs: FLAT image of 4 layers" \
    "$SN" mkfs -q -o "$EX/flat.sqfs" "$L1" "$L2" "$L3" "$L4"
for i in 1 2 3; do
    eval "L=\$L$i"
    check "mkfs --layer L$i" "$SN" mkfs -q --layer -o "$EX/l$i.sqfs" "$L"
done
$PY ref "$L1" "$L2" "$L3" "$L4" > "$TMP/ref4.json"
$PY ref "$L1" "$L2" "$L3" > "$TMP/ref3.json"

# ---- the server -----------------------------------------------------------
SOCK=$TMP/nbd.sock DIR=$EX PIDFILE=$TMP/server.pid
export SOCK DIR PIDFILE
sh -c "exec $KERNEL_NBD_SERVER" > "$TMP/server.log" 2>&1 &
SPID=$!
for _ in $(seq 100); do
    [ -s "$PIDFILE" ] && [ -S "$SOCK" ] && break
    kill -0 $SPID 2>/dev/null || break
    sleep 0.1
done
if ! [ -S "$SOCK" ]; then
    echo "Bail out! the NBD server did not start: $KERNEL_NBD_SERVER"
    sed 's/^/# /' "$TMP/server.log"
    exit 1
fi

# ---- guest scripts --------------------------------------------------------
# gcheck DESC COMMAND: a check the guest runs (COMMAND is guest shell text);
# the host then expects "ok DESC" from the guest.
# Each becomes a function of the guest script whose body runs in a subshell.
GN=0
gcheck() {
    GN=$((GN + 1))
    printf 'c%d() (\n%s\n)\ncheck '\''%s'\'' c%d\n' "$GN" "$2" "$1" "$GN" >> "$G"
    echo "ok $1" >> "$G.expect"
}
# The guest's result lines as TAP, then one check that every expected line
# is there (so a guest that stops early fails).
guest_tap() {
    out=$1 expect=$2 st=$3
    while IFS= read -r l; do
        case $l in
        "ok "*)
            TAP_N=$((TAP_N + 1))
            echo "ok $TAP_N - guest: ${l#ok }" ;;
        "not ok "*)
            TAP_N=$((TAP_N + 1))
            TAP_FAILED=$((TAP_FAILED + 1))
            echo "not ok $TAP_N - guest: ${l#not ok }" ;;
        *) echo "$l" ;;
        esac
    done < "$out"
    check "guest printed all $(wc -l < "$expect") expected results (run.sh status $st)" \
        bash -c "test $st -eq 0 && ! grep -vxFf '$out' '$expect'"
}

SERVER=10.0.2.100
NAMES="flat l1 l2 l3"

G=$TMP/guest1.sh
: > "$G.expect"
echo '. /lib/soci-test.sh' > "$G"
gcheck "nbd-client -l lists the exports" \
    "nbd-client -l $SERVER 10809 > /tmp/list; cat /tmp/list;
     for e in $(echo $NAMES | sed 's/\([a-z0-9]*\)/\1.sqfs/g'); do grep -qx \$e /tmp/list || exit 1; done"
i=0
for n in $NAMES; do
    size=$(stat -c %s "$EX/$n.sqfs")
    sum=$(sha "$EX/$n.sqfs")
    gcheck "nbd-client -N $n.sqfs -b 4096 -readonly /dev/nbd$i" \
        "nbd-client $SERVER 10809 /dev/nbd$i -N $n.sqfs -b 4096 -readonly"
    gcheck "/dev/nbd$i has the size of $n.sqfs ($size)" \
        "test \$(blockdev --getsize64 /dev/nbd$i) = $size"
    gcheck "/dev/nbd$i has the bytes of $n.sqfs" \
        "sha256sum /dev/nbd$i | grep -q ^$sum"
    gcheck "mount -t squashfs -o ro /dev/nbd$i (from $n.sqfs)" \
        "mkdir -p /m/$n && mount -t squashfs -o ro /dev/nbd$i /m/$n"
    i=$((i + 1))
done
cat >> "$G" <<'EOF'
listing /m/flat > $OUT/flat.txt
EOF
gcheck "L2: whiteout is a 0/0 char device" \
    "test \"\$(stat -c '%F %t:%T' /m/l2/d/gone)\" = 'character special file 0:0'"
gcheck "mount -t overlay lowerdir=L3:L2:L1" \
    "mkdir -p /merged && mount -t overlay overlay -o lowerdir=/m/l3:/m/l2:/m/l1 /merged"
cat >> "$G" <<'EOF'
listing /merged > $OUT/merged.txt
EOF
# The ioctl path (no netlink) and -persist: the device's bytes and a file
# across blocks (a full listing again would cost ~10 s).
big=data/size-1048583
bigsum=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]["sha"])' "$TMP/ref4.json" $big)
gcheck "nbd-client -nonetlink -persist: FLAT again on /dev/nbd8" \
    "nbd-client $SERVER 10809 /dev/nbd8 -N flat.sqfs -b 4096 -readonly -nonetlink -persist &&
     sha256sum /dev/nbd8 | grep -q ^$(sha "$EX/flat.sqfs") &&
     mkdir -p /m/flat8 && mount -t squashfs -o ro /dev/nbd8 /m/flat8 &&
     sha256sum /m/flat8/$big | grep -q ^$bigsum &&
     umount /m/flat8 && nbd-client -d /dev/nbd8"
gcheck "umount everything" "umount /merged && umount /m/l3 /m/l2 /m/l1 /m/flat"
i=0
for n in $NAMES; do
    gcheck "nbd-client -d /dev/nbd$i" "nbd-client -d /dev/nbd$i"
    i=$((i + 1))
done
echo 'exit $SOCI_FAILED' >> "$G"

G2=$TMP/guest2.sh
G=$G2
: > "$G.expect"
echo '. /lib/soci-test.sh' > "$G"
for n in $NAMES; do
    gcheck "virtio disk of $n.sqfs mounts" \
        "d=\$(disk_by_serial $n.sqfs) && mkdir -p /m/$n && mount -t squashfs -o ro \$d /m/$n"
done
gcheck "the FLAT disk is /dev/vda" "grep -q ' /m/flat ' /proc/mounts && grep -q '^/dev/vda /m/flat ' /proc/mounts"
cat >> "$G" <<'EOF'
listing /m/flat > $OUT/flat.txt
EOF
gcheck "mount -t overlay of the virtio disks" \
    "mkdir -p /merged && mount -t overlay overlay -o lowerdir=/m/l3:/m/l2:/m/l1 /merged"
cat >> "$G" <<'EOF'
listing /merged > $OUT/merged.txt
EOF
gcheck "umount everything" "umount /merged && umount /m/l3 /m/l2 /m/l1 /m/flat"
echo 'exit $SOCI_FAILED' >> "$G"

# compare_trees BOOT: the listings of one boot against the references.
compare_trees() {
    o=$TMP/out$1
    check "$2: FLAT listing came back" test -s "$o/flat.txt"
    $LST tree "$o/flat.txt" > "$o/flat.json" 2>"$TMP/lst.err"
    check "$2: FLAT tree = reference (data, types, modes, ids, mtimes, links, devices)" \
        $PY cmp "$TMP/ref4.json" "$o/flat.json" --no-xattrs
    check "$2: hard links share an inode (FLAT)" \
        $LST inode "$o/flat.txt" data/size-513 data/hard data/hard2
    check "$2: merged listing came back" test -s "$o/merged.txt"
    $LST tree "$o/merged.txt" > "$o/merged.json" 2>"$TMP/lst.err"
    check "$2: overlay of L3:L2:L1 = reference of 3 layers" \
        $PY cmp "$TMP/ref3.json" "$o/merged.json" --no-xattrs
}

# boot N RUN-ARGS...: run.sh in the background (so that a signal reaches
# the cleanup at once); st = its status.
boot() {
    n=$1; shift
    "$RUN" -s "$SOCK" -O "$TMP/out$n" -l "$TMP/console$n.txt" -t 75 "$@" \
        > "$TMP/res$n.txt" 2> "$TMP/run$n.err" &
    RPID=$!
    st=0
    wait $RPID || st=$?
    RPID=
}

# ---- boot 1: nbd-client over the guestfwd pipe ------------------------------
t0=$(date +%s)
boot 1 "$TMP/guest1.sh"
echo "# boot 1 (nbd-client) took $(( $(date +%s) - t0 )) s"
sed 's/^/# /' "$TMP/run1.err"
guest_tap "$TMP/res1.txt" "$TMP/guest1.sh.expect" $st
compare_trees 1 "nbd-client"

# ---- boot 2: virtio disks backed by the exports -----------------------------
t0=$(date +%s)
boot 2 -d flat.sqfs -d l1.sqfs -d l2.sqfs -d l3.sqfs "$TMP/guest2.sh"
echo "# boot 2 (virtio disks) took $(( $(date +%s) - t0 )) s"
sed 's/^/# /' "$TMP/run2.err"
guest_tap "$TMP/res2.txt" "$TMP/guest2.sh.expect" $st
compare_trees 2 "virtio"

finish
