#!/bin/bash
# soci-nbd tests: `soci-nbd mkfs` images served over NBD and mounted by a
# real kernel's nbd driver — Debian 12's kernel in a QEMU (TCG) guest built
# by tests/kernel/qemu/, since the build machines' kernel has no nbd driver.
#
# Boot 1: the guest runs nbd-client for the FLAT image and three per-layer
# images, mounts them squashfs read-only, stacks the layers with overlayfs,
# and lists both trees (type, mode, ids, mtime, size, sha256 of every file,
# symlink targets, device numbers, inodes).  Boot 2: the same exports as
# virtio disks (QEMU's own NBD client), the "VM boot image" path.  The host
# compares every listing with the reference tree of tests/helpers/mkfs-tree.py.
#
# The NBD server is a parameter: KERNEL_NBD_SERVER, a shell command run with
# $SOCK, $DIR and $PIDFILE set, that must serve on the Unix socket $SOCK,
# read-only, and write its pid to $PIDFILE once it listens, with errors on
# its stderr.  The default is nbdkit's file plugin serving each file of
# $DIR as the export of its name.  Other parameters (for servers that serve
# the same layers under other names, e.g. tests/kernel/kernel-soci.sh, which
# sources this file):
#   KERNEL_NBD_FLAT    export of the flattened 4-layer image (flat.sqfs),
#                      whose bytes must equal `soci-nbd mkfs` of the layers
#   KERNEL_NBD_LAYERS  exports of layers 1, 2, 3, bottom first, bytes equal
#                      to `soci-nbd mkfs --layer` ("l1.sqfs l2.sqfs l3.sqfs")
#   KERNEL_NBD_RESTART 1: in boot 2, the host kills and restarts the server
#                      (same command) under the attached virtio disks, and
#                      the guest reads the whole FLAT disk again (default 0)
#   KERNEL_NBD_TIMEOUT bound on each boot in seconds (75)
# and, when sourced, these shell functions if the caller defines them:
#   kernel_nbd_setup   after the layers ($L1..$L4, $TMP/ref*.json) and the
#                      mkfs images ($EX/flat.sqfs, $EX/l1.sqfs ...) exist,
#                      before the server starts
#   kernel_nbd_checks  after both boots, before the TAP plan
#   kernel_nbd_cleanup at exit, after the server stopped, before $TMP goes
if [ -z "${TAP_N+x}" ]; then
    . "${top_srcdir:-$(dirname "$0")/../..}/tests/helpers/lib.sh"
fi

SN=$SOCI_NBD
PY="python3 $top_srcdir/tests/helpers/mkfs-tree.py"
LST="python3 $top_srcdir/tests/kernel/qemu/listing.py"
RUN=$top_srcdir/tests/kernel/qemu/run.sh
: "${KERNEL_NBD_SERVER:=nbdkit -U \"\$SOCK\" -r -P \"\$PIDFILE\" -f file dir=\"\$DIR\"}"
: "${KERNEL_NBD_FLAT:=flat.sqfs}"
: "${KERNEL_NBD_LAYERS:=l1.sqfs l2.sqfs l3.sqfs}"
: "${KERNEL_NBD_RESTART:=0}"
: "${KERNEL_NBD_TIMEOUT:=75}"
# The export of each image: X_flat, X_l1, X_l2, X_l3.
X_flat=$KERNEL_NBD_FLAT
read -r X_l1 X_l2 X_l3 <<< "$KERNEL_NBD_LAYERS"
[ -n "$X_l3" ] || { echo "Bail out! KERNEL_NBD_LAYERS needs 3 exports"; exit 1; }

for tool in qemu-system-x86_64 socat cpio busybox nbd-client depmod \
            apt-get dpkg-deb xz nbdkit python3 timeout; do
    if ! command -v $tool > /dev/null && ! [ -x "/usr/sbin/$tool" ] &&
       ! [ -x "/sbin/$tool" ]; then
        echo "Bail out! $tool is not installed (scripts/install-deps.sh)"
        exit 1
    fi
done

SPID= RPID= OSPID=
cleanup() {
    if [ -n "$RPID" ]; then
        kill "$RPID" 2>/dev/null        # run.sh ends its QEMU
        wait "$RPID" 2>/dev/null
    fi
    if [ -n "$OSPID" ]; then
        kill -KILL "$OSPID" 2>/dev/null
        wait "$OSPID" 2>/dev/null
    fi
    if [ -n "$SPID" ]; then
        [ -s "$TMP/server.pid" ] && kill "$(cat "$TMP/server.pid")" 2>/dev/null
        kill "$SPID" 2>/dev/null
        wait "$SPID" 2>/dev/null
    fi
    if [ "$(type -t kernel_nbd_cleanup)" = function ]; then
        kernel_nbd_cleanup
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
if [ "$(type -t kernel_nbd_setup)" = function ]; then
    kernel_nbd_setup
fi

# ---- the server -----------------------------------------------------------
SOCK=$TMP/nbd.sock DIR=$EX PIDFILE=$TMP/server.pid
export SOCK DIR PIDFILE
# start_server: start it, wait until it listens (the log is appended to).
start_server() {
    rm -f "$PIDFILE"
    sh -c "exec $KERNEL_NBD_SERVER" >> "$TMP/server.log" 2>&1 &
    SPID=$!
    for _ in $(seq 300); do
        [ -s "$PIDFILE" ] && [ -S "$SOCK" ] && break
        kill -0 $SPID 2>/dev/null || break
        sleep 0.1
    done
    if ! [ -s "$PIDFILE" ] || ! [ -S "$SOCK" ]; then
        echo "Bail out! the NBD server did not start: $KERNEL_NBD_SERVER"
        sed 's/^/# /' "$TMP/server.log"
        exit 1
    fi
}
# restart_server: the same command again on the same socket path, then
# the old server killed (SIGKILL, a crash: nbdkit waits for its clients on
# SIGTERM).  The new one starts before the old one dies, on the path
# unlinked from under the old one (which keeps its connections), so that a
# client reconnecting at once finds a server.
restart_server() {
    opid=$(cat "$PIDFILE") OSPID=$SPID
    rm -f "$SOCK"
    start_server
    kill -KILL "$opid" 2>/dev/null
    wait "$OSPID" 2>/dev/null
    OSPID=
}
start_server

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
    guest_results "$out"
    check "guest printed all $(wc -l < "$expect") expected results (run.sh status $st)" \
        bash -c "test $st -eq 0 && ! grep -vxFf '$out' '$expect'"
}

SERVER=10.0.2.100
NAMES="flat l1 l2 l3"

G=$TMP/guest1.sh
: > "$G.expect"
echo '. /lib/soci-test.sh' > "$G"
# Listed as "NAME" or "NAME: DESCRIPTION".
gcheck "nbd-client -l lists the exports" \
    "nbd-client -l $SERVER 10809 > /tmp/list; cat /tmp/list;
     sed 's/: .*//' /tmp/list > /tmp/names;
     for e in $X_flat $KERNEL_NBD_LAYERS; do grep -qxF \$e /tmp/names || exit 1; done"
i=0
for n in $NAMES; do
    eval "x=\$X_$n"
    size=$(stat -c %s "$EX/$n.sqfs")
    sum=$(sha "$EX/$n.sqfs")
    gcheck "nbd-client -N $x -b 4096 -readonly /dev/nbd$i" \
        "nbd-client $SERVER 10809 /dev/nbd$i -N $x -b 4096 -readonly"
    gcheck "/dev/nbd$i has the size of $n.sqfs ($size)" \
        "test \$(blockdev --getsize64 /dev/nbd$i) = $size"
    gcheck "/dev/nbd$i has the bytes of $n.sqfs" \
        "sha256sum /dev/nbd$i | grep -q ^$sum"
    gcheck "mount -t squashfs -o ro /dev/nbd$i (from $x)" \
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
# In ioctl mode nbd-client returns before the kernel has the device's size:
# wait for it, or the hash is of zero bytes.
gcheck "nbd-client -nonetlink -persist: FLAT again on /dev/nbd8" \
    "nbd-client $SERVER 10809 /dev/nbd8 -N $X_flat -b 4096 -readonly -nonetlink -persist &&
     for t in \$(seq 50); do [ \$(cat /sys/block/nbd8/size) -gt 0 ] && break; sleep 0.1; done &&
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
    eval "x=\$X_$n"
    gcheck "virtio disk of $x mounts" \
        "d=\$(disk_by_serial ${x:0:20}) && mkdir -p /m/$n && mount -t squashfs -o ro \$d /m/$n"
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
# Server restart under the attached disks (QEMU's NBD client reconnects,
# run.sh -r): the guest asks for it by opening the export
# "kernel-nbd-restart" (the server logs the failure; the host watches the
# log), gives the host 3 s, then reads the whole FLAT disk with O_DIRECT.
# (nbd-client -persist cannot be used: on this kernel NBD_DO_IT returns 0
# when the connection dies, the device is reset, and nbd-client quits.)
if [ "$KERNEL_NBD_RESTART" = 1 ]; then
    gcheck "restart: the guest asks the host to restart the server" \
        "! nbd-client $SERVER 10809 /dev/nbd10 -N kernel-nbd-restart -b 4096 -readonly -nonetlink &&
         sleep 3"
    gcheck "restart: then the FLAT disk (O_DIRECT) has the bytes of $X_flat" \
        "dd if=\$(disk_by_serial ${X_flat:0:20}) bs=1M iflag=direct 2>/dev/null |
         sha256sum | grep -q ^$(sha "$EX/flat.sqfs")"
fi
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
# With KERNEL_NBD_RESTART=1, boot 2 restarts the server when the guest
# asks (then restarted=1).
restarted=0
boot() {
    n=$1; shift
    "$RUN" -s "$SOCK" -O "$TMP/out$n" -l "$TMP/console$n.txt" -t "$KERNEL_NBD_TIMEOUT" "$@" \
        > "$TMP/res$n.txt" 2> "$TMP/run$n.err" &
    RPID=$!
    if [ "$KERNEL_NBD_RESTART" = 1 ] && [ "$n" = 2 ]; then
        while kill -0 $RPID 2>/dev/null; do
            if [ $restarted = 0 ] && grep -q kernel-nbd-restart "$TMP/server.log"; then
                t1=$(date +%s%N)
                restart_server
                restarted=1
                echo "# server restarted in $(( ($(date +%s%N) - t1) / 1000000 )) ms"
            fi
            sleep 0.2
        done
    fi
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
reconnect=
[ "$KERNEL_NBD_RESTART" = 1 ] && reconnect="-r 20"
boot 2 -d "$X_flat" -d "$X_l1" -d "$X_l2" -d "$X_l3" $reconnect "$TMP/guest2.sh"
echo "# boot 2 (virtio disks) took $(( $(date +%s) - t0 )) s"
sed 's/^/# /' "$TMP/run2.err"
guest_tap "$TMP/res2.txt" "$TMP/guest2.sh.expect" $st
compare_trees 2 "virtio"
if [ "$KERNEL_NBD_RESTART" = 1 ]; then
    check "restart: the host restarted the server when the guest asked" test $restarted = 1
fi

if [ "$(type -t kernel_nbd_checks)" = function ]; then
    kernel_nbd_checks
fi
finish
