#!/bin/bash
# soci-nbd tests: `soci-nbd mount` / `umount` / `mounts` against a real
# kernel's nbd driver — Debian 12's kernel in a QEMU (TCG) guest
# (tests/kernel/qemu/), since the build machines' kernel has no nbd driver.
#
# On the host: the errors that need no nbd driver (not root, DIR missing
# or not a directory, no nbd driver, umount of something else, usage).
# Then the 4 layers of tests/helpers/mkfs-tree.py are pushed to a real
# docker-registry with v2 SOCI indexes: test/a = L1 L2 L3, test/b = L1 L2
# (its layers are A's bottom two), test/full = L1..L4 (L4 hard-links a
# file of L1, so its layer cannot be served alone).  The guest runs
# soci-nbd, nbdkit and the plugin themselves (copied in with their
# libraries, run.sh -b) and reaches the registry at 10.0.2.100:PORT through
# a QEMU guestfwd pipe to 127.0.0.1:PORT (run.sh -p), plain HTTP.
#
# In the guest: overlay mounts (A; B sharing A's layer devices), one
# layer of A alone (--layer, on A's device; a digest A lacks refused),
# soci-nbd-snapshotter's remote snapshots (two layers of A prepared over
# gRPC with containerd's labels: mounted lazily on A's devices, answered
# ALREADY_EXISTS, a view of them reads the files, removal unmounts), a flat
# mount (FULL), a refused overlay of FULL, an image error, --rw with
# --upper (writes land in the upper dir only; the lower devices keep the
# bytes of `soci-nbd mkfs --layer`) and with a tmpfs, a busy umount, the
# server killed (SIGKILL) under the live mounts and restarted with
# `mount --restart-server` (reads after drop_caches return the right
# bytes), half-made mounts (SOCI_NBD_TEST_ABORT) cleaned by umount, and
# at the end: no devices, mounts, processes or state left.  The host
# compares the listings of A and FULL with tests/helpers/mkfs-tree.py's reference
# trees of the same layers.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

require_tools qemu-system-x86_64 socat cpio busybox nbdkit python3 timeout setpriv umoci
SN=$SOCI_NBD
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
PY="python3 $top_srcdir/tests/helpers/mkfs-tree.py"
LST="python3 $top_srcdir/tests/kernel/qemu/listing.py"
IMGPY="python3 $top_srcdir/tests/helpers/plugin-image.py"
RUN=$top_srcdir/tests/kernel/qemu/run.sh
[ -f "$PLUGIN" ] || { echo "Bail out! $PLUGIN not built"; exit 1; }
export SOCI_NBD_RUN_DIR=$TMP/run

RPID=
cleanup() {
    if [ -n "$RPID" ]; then
        kill "$RPID" 2>/dev/null        # run.sh ends its QEMU
        wait "$RPID" 2>/dev/null
    fi
    srv_cleanup
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ---- host: errors without an nbd driver ------------------------------------
mkdir -p "$TMP/dir"
: > "$TMP/file"
check_fails "not root: a clear error" "must be run as root" \
    setpriv --reuid=65534 --regid=65534 --clear-groups "$SN" mount img "$TMP/dir"
check_fails "umount as not root: a clear error" "must be run as root" \
    setpriv --reuid=65534 --regid=65534 --clear-groups "$SN" umount "$TMP/dir"
check_fails "DIR missing" "$TMP/nope: No such file or directory" \
    "$SN" mount img "$TMP/nope"
check_fails "DIR not a directory" "$TMP/file: not a directory" \
    "$SN" mount img "$TMP/file"
if [ -e /sys/module/nbd ] || modprobe -q nbd 2>/dev/null; then
    echo "ok $((TAP_N += 1)) # SKIP this host has an nbd driver"
else
    check_fails "no nbd driver: says so, points at alternatives" \
        "no nbd driver.*nbdfuse" "$SN" mount img "$TMP/dir"
fi
check_fails "umount of a directory soci-nbd did not mount" \
    "is not mounted by soci-nbd" "$SN" umount "$TMP/dir"
check "mounts with nothing mounted: no output" \
    bash -c "test -z \"\$('$SN' mounts)\""
# The state directory is trusted: a symlink, another owner or a directory
# others can write is refused before anything is read from it.
mkdir -p "$TMP/realrun" "$TMP/wwrun" "$TMP/otherrun" "$TMP/subrun/mounts"
ln -s "$TMP/realrun" "$TMP/linkrun"
ln -s "$TMP/realrun" "$TMP/subrun/servers"
chmod 0777 "$TMP/wwrun"
chown 65534:65534 "$TMP/otherrun"
check_fails "state dir that is a symlink: refused" "linkrun: is a symlink" \
    env SOCI_NBD_RUN_DIR="$TMP/linkrun" "$SN" mounts
check_fails "state dir writable by others: refused" "wwrun: writable by group or others (mode 0777)" \
    env SOCI_NBD_RUN_DIR="$TMP/wwrun" "$SN" mounts
check_fails "state dir of another user: refused" "otherrun: owned by uid 65534, not 0" \
    env SOCI_NBD_RUN_DIR="$TMP/otherrun" "$SN" umount "$TMP/dir"
check_fails "a symlinked state subdirectory: refused" "subrun/servers: is a symlink" \
    env SOCI_NBD_RUN_DIR="$TMP/subrun" "$SN" mounts
check "and nothing was created through the symlinks" \
    bash -c "test -z \"\$(ls -A '$TMP/realrun')\""
check_fails "mount without DIR: usage error" "expected IMAGE and DIR" \
    "$SN" mount img
check_fails "--upper without --rw: usage error" "--upper needs --rw" \
    "$SN" mount --upper "$TMP/dir" img "$TMP/dir"
check "mount --help" bash -c "'$SN' mount --help | grep -q -- --restart-server"
check "--help lists mount, umount, mounts" \
    bash -c "'$SN' --help | grep -q '^  mount IMAGE DIR' && '$SN' --help | grep -q '^  umount DIR' && '$SN' --help | grep -q '^  mounts'"

# ---- images -----------------------------------------------------------------
$PY gen "$TMP"
gzip -n "$TMP/L1.tar"                           # L1 gzip, L2 plain, L3 gzip
gzip -n "$TMP/L3.tar"
L1=$TMP/L1.tar.gz L2=$TMP/L2.tar L3=$TMP/L3.tar.gz L4=$TMP/L4.tar
for l in "$L1" "$L2" "$L3"; do
    "$SN" ztoc create -q -s 64K -o "$l.ztoc" "$l" ||
        { echo "Bail out! ztoc create $l"; exit 1; }
done
Z=(--ztoc "$L1=$L1.ztoc" --ztoc "$L2=$L2.ztoc" --ztoc "$L3=$L3.ztoc")
# test/c: A's bottom two layers with other ztocs (128K spans).
for l in "$L1" "$L2"; do
    "$SN" ztoc create -q -s 128K -o "$l.ztoc128" "$l" ||
        { echo "Bail out! ztoc create $l"; exit 1; }
done
reg_start R || { echo "Bail out! registry did not start"; exit 1; }
$IMGPY push "$R_URL" test/a "$L1" "$L2" "$L3" "${Z[@]}" > /dev/null &&
$IMGPY push "$R_URL" test/b "$L1" "$L2" "${Z[@]:0:4}" > /dev/null &&
$IMGPY push "$R_URL" test/full "$L1" "$L2" "$L3" "$L4" "${Z[@]}" > /dev/null &&
$IMGPY push "$R_URL" test/c "$L1" "$L2" --ztoc "$L1=$L1.ztoc128" --ztoc "$L2=$L2.ztoc128" > /dev/null ||
    { echo "Bail out! push failed"; exit 1; }
# A second registry with basic auth (plain HTTP, as the guest reaches it).
PW=s0ci-Nbd-pw-7c1e
reg_start RA --htpasswd alice "$PW" || { echo "Bail out! registry RA did not start"; exit 1; }
SN_PUSH_AUTH="alice:$PW" $IMGPY push "$RA_URL" test/a "$L1" "$L2" "$L3" "${Z[@]}" > /dev/null ||
    { echo "Bail out! push to RA failed"; exit 1; }
$PY ref "$L1" "$L2" "$L3" > "$TMP/ref3.json"
$PY ref "$L1" "$L2" "$L3" "$L4" > "$TMP/ref4.json"
for i in 1 2 3; do
    eval "l=\$L$i"
    "$SN" mkfs -q --layer -o "$TMP/l$i.sqfs" "$l" ||
        { echo "Bail out! mkfs --layer L$i"; exit 1; }
done
big=data/size-1048583
bigsum=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]["sha"])' "$TMP/ref3.json" $big)

# ---- the guest's programs -------------------------------------------------------
NBDKIT=$(command -v nbdkit)
BINS=(-b "$SN=/usr/bin/soci-nbd" -b "$NBDKIT=/usr/bin/nbdkit"
      -b "$PLUGIN=/usr/lib/soci-nbd/nbdkit-soci-plugin.so")
SNAPD=$top_builddir/soci-nbd-snapshotter SNAPC=$top_builddir/tests/helpers/snap-client
if [ -x "$SNAPD" ]; then        # (configure --disable-snapshotter: none)
    BINS+=(-b "$SNAPD=/usr/bin/soci-nbd-snapshotter" -b "$SNAPC=/usr/bin/snap-client")
fi
guest_nbdkit_asan "$PLUGIN"

# ---- the guest script -----------------------------------------------------------
# gcheck DESC COMMAND: a check the guest runs (COMMAND is guest shell text,
# run in a subshell); the host then expects "ok DESC" from the guest.
G=$TMP/guest.sh
GN=0
gcheck() {
    GN=$((GN + 1))
    printf 'c%d() (\n%s\n)\ncheck '\''%s'\'' c%d\n' "$GN" "$2" "$1" "$GN" >> "$G"
    echo "ok $1" >> "$G.expect"
}
graw() { printf '%s\n' "$1" >> "$G"; }
: > "$G.expect"
REG=10.0.2.100:$R_PORT
REGA=10.0.2.100:$RA_PORT
cat > "$G" <<EOF
. /lib/soci-test.sh
export SOCI_NBD_PLUGIN=/usr/lib/soci-nbd/nbdkit-soci-plugin.so
SN="soci-nbd"
O="--plain-http $REG $NBDKIT_OPT"
REG=$REG
REGA=$REGA PW=$PW
OA="--plain-http $REGA $NBDKIT_OPT"
RUNDIR=/run/soci-nbd
mkdir -p /m/a /m/b /m/c /m/sd /m/l2 /m/flat /m/rw /m/rw2 /m/bad /m/half /m/auth /up
# devs DIR: the devices column of DIR's line in soci-nbd mounts
devs() { soci-nbd mounts | awk -F'\t' -v d="\$1" '\$1 == d { print \$4 }'; }
# field DIR N: column N of DIR's line
field() { soci-nbd mounts | awk -F'\t' -v d="\$1" -v n="\$2" '\$1 == d { print \$n }'; }
EOF

gcheck "mount --overlay A (3 layers)" \
    '$SN mount $O $REG/test/a:v2 /m/a'
graw 'listing /m/a > $OUT/a.txt'
gcheck "mounts: /m/a, image, overlay, 3 devices, a server, ok" \
    "soci-nbd mounts | tee /tmp/m1;
     grep -q \"^/m/a	\$REG/test/a:v2	overlay	/dev/nbd[0-9]*,/dev/nbd[0-9]*,/dev/nbd[0-9]*	[0-9][0-9]*	ok\$\" /tmp/m1"
gcheck "/m/a is an overlay of three squashfs devices, read-only" \
    "grep -q ' /m/a overlay ro' /proc/mounts && test \$(grep -c '^/dev/nbd[0-9]* .* squashfs ro' /proc/mounts) = 3"
gcheck "mount --overlay B (the bottom two layers of A) shares two devices of A" \
    '$SN mount $O $REG/test/b:v2 /m/b &&
     a=$(devs /m/a) && b=$(devs /m/b) && echo "a=$a b=$b" &&
     test "$b" = "${a%,*}" &&
     test $(grep -c "^/dev/nbd[0-9]* .* squashfs ro" /proc/mounts) = 3'
gcheck "nosuid,nodev: the overlay on DIR and the squashfs mount of every device" \
    'grep " /m/a overlay " /proc/mounts; grep " /m/a overlay ro,nosuid,nodev" /proc/mounts &&
     grep "^/dev/nbd" /proc/mounts > /tmp/sq && test -s /tmp/sq && ! grep -v " squashfs ro,nosuid,nodev" /tmp/sq'
gcheck "nodev: /dev/null of the image (char 1:3, mode 0666) cannot be opened" \
    'test -c /m/a/dev/null && ! sh -c "echo x > /m/a/dev/null" 2>/tmp/e; cat /tmp/e; grep -qi "permission denied" /tmp/e'
gcheck "--suid --dev: honoured in DIR, on the same shared devices" \
    '$SN mount --suid --dev $O $REG/test/b:v2 /m/sd && l=$(grep " /m/sd overlay " /proc/mounts) && echo "$l" &&
     case "$l" in *nosuid*|*nodev*) exit 1 ;; esac && echo x > /m/sd/dev/null &&
     test "$(devs /m/sd)" = "$(devs /m/b)" && $SN umount /m/sd'
gcheck "the same layers with other ztocs (index of test/c) get devices of their own" \
    '$SN mount $O $REG/test/c:v2 /m/c && c=$(devs /m/c) && a=$(devs /m/a) && echo "c=$c a=$a" &&
     for d in $(echo $c | tr , " "); do case ",$a," in *",$d,"*) exit 1 ;; esac; done &&
     test "$(cat /m/c/d/new)" = "new in 2" && $SN umount /m/c &&
     test $(ls $RUNDIR/servers | wc -l) = 1'
gcheck "B has the files of layer 2, not those of layer 3" \
    'test "$(cat /m/b/d/new)" = "new in 2" && ! test -e /m/b/d/gone && test "$(cat /m/a/d/gone)" = "back in 3"'
L2D=sha256:$(sha "$L2")
gcheck "mount --layer: layer 2 of A alone (its whiteouts, none of layer 1), read-only, on the device of A" \
    "\$SN mount \$O --layer $L2D \$REG/test/a:v2 /m/l2 && test \"\$(field /m/l2 3)\" = layer &&
     test \"\$(devs /m/l2)\" = \"\$(devs /m/a | cut -d, -f2)\" &&
     test \"\$(cat /m/l2/d/new)\" = 'new in 2' && test -c /m/l2/d/gone && ! test -e /m/l2/$big &&
     grep -q ' /m/l2 squashfs ro,nosuid,nodev' /proc/mounts && ! touch /m/l2/x 2>/dev/null"
gcheck "umount of the layer mount leaves the devices of A" \
    '$SN umount /m/l2 && ! grep -q " /m/l2 " /proc/mounts && test "$(devs /m/a | tr , " " | wc -w)" = 3 &&
     echo 3 > /proc/sys/vm/drop_caches && test "$(cat /m/a/d/gone)" = "back in 3" && cat /m/a/data/size-1 > /dev/null'
if [ -x "$SNAPD" ]; then
L1D=sha256:$(sha "$L1")
graw "snapstart() {
    soci-nbd-snapshotter -r /snap -a /run/snap.sock --soci-nbd /usr/bin/soci-nbd \\
        --mount-arg=--plain-http --mount-arg=$REG ${NBDKIT_OPT:+--mount-arg=--nbdkit --mount-arg=${NBDKIT_OPT#--nbdkit }} >> /tmp/snap.log 2>&1 & SNAPPID=\$!
    for i in \$(seq 100); do test -S /run/snap.sock && break; sleep 0.1; done
}
: > /tmp/snap.log; snapstart
LB='containerd.io/snapshot/cri.image-ref=$REG/test/a:v2 containerd.io/snapshot/cri.layer-digest'
SC='snap-client /run/snap.sock'"
gcheck "snapshotter: a layer prepared with the remote labels is mounted lazily, ALREADY_EXISTS" \
    "\$SC prepare 'extract-1 c1' '' containerd.io/snapshot.ref=c1 \$LB=$L1D 2>/tmp/e; cat /tmp/e /tmp/snap.log;
     grep -q '^ALREADY_EXISTS: target snapshot c1: already exists (layer $L1D of ' /tmp/e &&
     \$SC stat c1 | grep -q '^c1 committed - .*io.soci-nbd.snapshot.remote-layer=$L1D'"
gcheck "snapshotter: the next layer on it too, prepared with the labels of soci-snapshotter" \
    "\$SC prepare 'extract-2 c2' c1 containerd.io/snapshot.ref=c2 \
        containerd.io/snapshot/remote/soci.reference=$REG/test/a:v2 \
        containerd.io/snapshot/remote/soci.digest=$L2D containerd.io/snapshot/remote/soci.index.digest= \
        2>/tmp/e; cat /tmp/e;
     grep -q '^ALREADY_EXISTS: target snapshot c2' /tmp/e && \$SC stat c2 | grep -q '^c2 committed c1 '"
gcheck "snapshotter: both layer mounts on the devices of A (shared)" \
    'soci-nbd mounts > /tmp/ms; cat /tmp/ms; a=$(devs /m/a) &&
     test "$(devs /snap/snapshots/1/fs)" = "${a%%,*}" && test "$(field /snap/snapshots/1/fs 3)" = layer &&
     test "$(devs /snap/snapshots/2/fs)" = "$(echo $a | cut -d, -f2)"'
gcheck "snapshotter: a view of c2 is overlayfs of the two; the files of layers 1 and 2, read lazily" \
    "mkdir -p /m/v && \$SC view v c2 > /tmp/mv && cat /tmp/mv && opts=\$(awk '{print \$3}' /tmp/mv) &&
     mount -t overlay overlay -o \"\$opts\" /m/v && test \"\$(cat /m/v/d/new)\" = 'new in 2' &&
     echo 3 > /proc/sys/vm/drop_caches && test \"\$(sha256sum /m/v/$big | cut -d' ' -f1)\" = $bigsum &&
     umount /m/v"
# A reboot unmounts the layers and keeps /snap: stop the daemon, unmount
# them behind it, start it again.
graw 'kill $SNAPPID; wait $SNAPPID
soci-nbd umount /snap/snapshots/2/fs; soci-nbd umount /snap/snapshots/1/fs
grep " /snap/snapshots/" /proc/mounts > /tmp/left; snapstart'
gcheck "snapshotter: its layers unmounted behind it (as a reboot leaves them), the daemon started again mounts them again" \
    'cat /tmp/left /tmp/snap.log; ! test -s /tmp/left &&
     grep -q "snapshot c1: its layer was not mounted (a reboot?); mounted again" /tmp/snap.log &&
     grep -q "snapshot c2: its layer was not mounted (a reboot?); mounted again" /tmp/snap.log &&
     test "$(field /snap/snapshots/1/fs 3)" = layer && test "$(field /snap/snapshots/2/fs 3)" = layer'
gcheck "snapshotter: ... the view of c2 reads the files of both layers again" \
    "\$SC mounts v > /tmp/mv && opts=\$(awk '{print \$3}' /tmp/mv) &&
     mount -t overlay overlay -o \"\$opts\" /m/v && test \"\$(cat /m/v/d/new)\" = 'new in 2' &&
     test \"\$(sha256sum /m/v/$big | cut -d' ' -f1)\" = $bigsum && umount /m/v"
gcheck "snapshotter: removing the snapshots unmounts the layers; the devices of A stay" \
    '$SC remove v && $SC remove c2 && $SC remove c1 && ! soci-nbd mounts | grep -q /snap/ &&
     test "$(devs /m/a | tr , " " | wc -w)" = 3 && test -z "$($SC list)"'
graw 'kill $SNAPPID; wait $SNAPPID'
fi
gcheck "mount --layer of a digest the image does not have: refused in one line" \
    "! \$SN mount \$O --layer sha256:$(printf '%064d' 0) \$REG/test/a:v2 /m/l2 2>/tmp/e; cat /tmp/e;
     grep -q 'has no layer sha256:0000' /tmp/e && test \$(wc -l < /tmp/e) = 1 && ! grep -q ' /m/l2 ' /proc/mounts"
gcheck "mount --flat FULL (4 layers, one device)" \
    '$SN mount --flat $O $REG/test/full:v2 /m/flat &&
     d=$(devs /m/flat) && echo "$d" && case $d in *,*) exit 1 ;; /dev/nbd*) ;; *) exit 1 ;; esac'
graw 'listing /m/flat > $OUT/flat.txt'
gcheck "flat: DIR is a read-only nosuid,nodev bind of the device" \
    'grep " /m/flat squashfs ro,nosuid,nodev" /proc/mounts'
gcheck "mount --overlay FULL is refused: layer 3 cannot be served alone (one line)" \
    '! $SN mount $O $REG/test/full:v2 /m/bad 2>/tmp/e; cat /tmp/e;
     grep -q "layer 3 (sha256:.*) cannot be served alone.*use --flat" /tmp/e && test $(wc -l < /tmp/e) = 1'
gcheck "after the refused mount nothing of it is left (mount, devices, server)" \
    'ls $RUNDIR/servers; grep "^/dev/nbd" /proc/mounts;
     ! soci-nbd mounts | grep -q /m/bad && ! grep -q " /m/bad " /proc/mounts &&
     test $(ls $RUNDIR/servers | wc -l) = 2 && test $(grep -c "^/dev/nbd.* $RUNDIR/devices/" /proc/mounts) = 4'
gcheck "image error: the message of the plugin, one line" \
    '! $SN mount $O $REG/test/nope:v2 /m/bad 2>/tmp/e; cat /tmp/e;
     grep -q "^soci-nbd: mount /m/bad: nbdkit: .*test/nope.*" /tmp/e && ! grep -q "status 1" /tmp/e &&
     test $(wc -l < /tmp/e) = 1 && test $(ls $RUNDIR/servers | wc -l) = 2'
gcheck "mount DIR twice: refused" \
    '! $SN mount $O $REG/test/a:v2 /m/a 2>/tmp/e; cat /tmp/e; grep -q "already mounted by soci-nbd" /tmp/e'
gcheck "mount on a busy DIR (a mount point): refused" \
    'mkdir -p /m/busy && mount -t tmpfs tmpfs /m/busy &&
     ! $SN mount $O $REG/test/a:v2 /m/busy 2>/tmp/e; cat /tmp/e; umount /m/busy; grep -q "busy" /tmp/e'

# --rw with an upper directory: writes land there only.
gcheck "mount --rw --upper /up A" \
    '$SN mount --rw --upper /up $O $REG/test/a:v2 /m/rw && grep -q " /m/rw overlay rw" /proc/mounts &&
     test "$(devs /m/rw)" = "$(devs /m/a)"'
gcheck "rw: write, modify, delete" \
    'echo new > /m/rw/newfile && echo changed > /m/rw/d/keep && rm /m/rw/d/gone && mkdir /m/rw/newdir && sync'
gcheck "rw: the writes are in /up/upper (the deletion a whiteout)" \
    'test "$(cat /up/upper/newfile)" = new && test "$(cat /up/upper/d/keep)" = changed &&
     test "$(stat -c "%F %t:%T" /up/upper/d/gone)" = "character special file 0:0" && test -d /up/upper/newdir'
gcheck "rw: /m/a on the same lower devices does not see them" \
    '! test -e /m/a/newfile && test "$(cat /m/a/d/keep)" = keep && test "$(cat /m/a/d/gone)" = "back in 3"'
i=0
for n in 1 2 3; do
    gcheck "rw: lower device of layer $n has the bytes of mkfs --layer L$n" \
        "d=\$(devs /m/a | cut -d, -f$n) && echo \$d && sha256sum \$d | grep -q ^$(sha "$TMP/l$n.sqfs")"
done
gcheck "umount /m/rw; the upper dir stays, the shared devices too" \
    '$SN umount /m/rw && ! grep -q " /m/rw " /proc/mounts && test -f /up/upper/newfile &&
     test "$(cat /m/a/d/keep)" = keep'
gcheck "mount --rw B on a tmpfs upper, write, umount: the tmpfs goes" \
    '$SN mount --rw $O $REG/test/b:v2 /m/rw2 && echo x > /m/rw2/newx &&
     grep -q "tmpfs $RUNDIR/mounts/.*/rw tmpfs" /proc/mounts &&
     $SN umount /m/rw2 && ! grep -q "$RUNDIR/mounts/.*/rw" /proc/mounts'

# Busy: the mount and its devices stay.
gcheck "umount of a busy mount fails and keeps it" \
    '(cd /m/b && ! $SN umount /m/b 2>/tmp/e); cat /tmp/e; grep -q "busy" /tmp/e &&
     grep -q " /m/b overlay " /proc/mounts && test "$(field /m/b 6)" = ok'

# Restart: kill the nbdkit behind /m/a and /m/b, start it again from the
# state, read after dropping the caches.
gcheck "restart: kill -9 the nbdkit serving /m/a" \
    'pid=$(field /m/a 5) && echo $pid > /tmp/oldpid && kill -9 $pid && sleep 1 &&
     soci-nbd mounts && test "$(field /m/a 6)" = server-down'
gcheck "restart: soci-nbd mount --restart-server /m/a" \
    '$SN mount --restart-server /m/a && soci-nbd mounts && test "$(field /m/a 6)" = ok &&
     test "$(field /m/a 5)" != "$(cat /tmp/oldpid)"'
gcheck "restart: after drop_caches, a read on /m/a returns the right bytes" \
    "echo 3 > /proc/sys/vm/drop_caches && sha256sum /m/a/$big | grep -q ^$bigsum"
gcheck "restart: and on /m/b (shared devices)" \
    "sha256sum /m/b/data/size-300000 | grep -q ^$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data/size-300000"]["sha"])' "$TMP/ref3.json")"
graw 'cat $RUNDIR/servers/*/log > $OUT/server-logs.txt 2>/dev/null'

# Half-made mounts, as after a crash: umount undoes them.
for step in devices supervisor upper mount; do
    rw=
    [ $step = upper ] && rw=--rw
    gcheck "crash after $step: mount stops half-way, mounts says incomplete, umount cleans it" \
        "SOCI_NBD_TEST_ABORT=$step \$SN mount $rw --flat \$O \$REG/test/b:v2 /m/half; test \$? = 70 &&
         soci-nbd mounts | grep -q '^/m/half	.*	incomplete\$' &&
         ! \$SN mount --flat \$O \$REG/test/b:v2 /m/half 2>/tmp/e && grep -q half-made /tmp/e &&
         \$SN umount /m/half && ! soci-nbd mounts | grep -q /m/half &&
         ! grep -q ' /m/half ' /proc/mounts && ! grep -q '/rw tmpfs' /proc/mounts &&
         test \$(ls \$RUNDIR/servers | wc -l) = 2"
done

# A registry with basic auth: the password goes from stdin to a 0600 file
# of the server's state (nbdkit's password=+FILE), nowhere else.
gcheck "auth: a wrong password: one clear line, nothing left" \
    '! echo wrong | $SN mount --flat --username alice --password-stdin $OA $REGA/test/a:v2 /m/auth 2>/tmp/e;
     cat /tmp/e; test $(wc -l < /tmp/e) = 1 && grep -qi "auth\|401\|denied" /tmp/e &&
     ! soci-nbd mounts | grep -q /m/auth && test $(ls $RUNDIR/servers | wc -l) = 2'
gcheck "auth: without credentials: refused" \
    '! $SN mount --flat $OA $REGA/test/a:v2 /m/auth 2>/tmp/e; cat /tmp/e; test $(wc -l < /tmp/e) = 1'
gcheck "auth: mount --flat --username --password-stdin" \
    'echo "$PW" | $SN mount --flat --username alice --password-stdin $OA $REGA/test/a:v2 /m/auth &&
     test "$(cat /m/auth/d/gone)" = "back in 3"'
gcheck "auth: the password file is 0600 and holds the password" \
    'f=$(ls $RUNDIR/servers/*/password) && echo "$f" && test $(echo "$f" | wc -l) = 1 &&
     test "$(stat -c %a "$f")" = 600 && test "$(cat "$f")" = "$PW"'
gcheck "auth: the password is in no other state file, log, command line or environment" \
    'echo "$PW" > /tmp/pw && find $RUNDIR -xdev -type f ! -name password > /tmp/files &&
     test -s /tmp/files && ! xargs grep -lF -f /tmp/pw < /tmp/files &&
     for p in /proc/[0-9]*; do
       case ${p#/proc/} in $$) continue ;; esac
       for x in cmdline environ; do
         tr "\0" "\n" < $p/$x 2>/dev/null | grep -qF -f /tmp/pw && { echo "${p#/proc/} $x: $(cat $p/comm)"; exit 1; }
       done
     done; true'
gcheck "auth: kill -9 the server, mount --restart-server reads the password file again" \
    'kill -9 $(field /m/auth 5) && sleep 1 && $SN mount --restart-server /m/auth &&
     test "$(field /m/auth 6)" = ok && echo 3 > /proc/sys/vm/drop_caches &&
     sha256sum /m/auth/'"$big"' | grep -q ^'"$bigsum"
gcheck "auth: umount removes the server and its password file" \
    '$SN umount /m/auth && ! ls $RUNDIR/servers/*/password 2>/dev/null && test $(ls $RUNDIR/servers | wc -l) = 2'

gcheck "umount /m/b, /m/a, /m/flat" \
    '$SN umount /m/b && $SN umount /m/a && $SN umount /m/flat'
gcheck "nothing left: soci-nbd mounts is empty" 'test -z "$(soci-nbd mounts)"'
gcheck "nothing left: every nbd device is disconnected (size 0, no pid)" \
    'for d in /sys/block/nbd*; do test "$(cat $d/size)" = 0 && ! test -e $d/pid || { echo $d; exit 1; }; done'
gcheck "nothing left: no squashfs, overlay or state tmpfs mount" \
    '! grep -E " (squashfs|overlay) |/run/soci-nbd" /proc/mounts'
gcheck "nothing left: no nbdkit or supervisor process" 'no_procs nbdkit soci-nbd-sup'
gcheck "nothing left: the state directories are empty" \
    'find $RUNDIR -mindepth 2; test -z "$(find $RUNDIR -mindepth 2)"'
graw 'exit $SOCI_FAILED'

# ---- boot ------------------------------------------------------------------------
t0=$(date +%s)
"$RUN" -p "$R_PORT" -p "$RA_PORT" "${BINS[@]}" -O "$TMP/out" -l "$TMP/console.txt" -t 400 "$G" \
    > "$TMP/res.txt" 2> "$TMP/run.err" &
RPID=$!
guest_wait "$t0"
guest_results "$TMP/res.txt"
check "guest printed all $(wc -l < "$G.expect") expected results (run.sh status $st)" \
    bash -c "test $st -eq 0 && ! grep -vxFf '$TMP/res.txt' '$G.expect'"
if [ $TAP_FAILED -gt 0 ] && [ -f "$TMP/out/server-logs.txt" ]; then
    tail -30 "$TMP/out/server-logs.txt" | sed 's/^/# server log: /'
fi

# ---- the trees ----------------------------------------------------------------------
check "overlay A: listing came back" test -s "$TMP/out/a.txt"
$LST tree "$TMP/out/a.txt" > "$TMP/a.json" 2>/dev/null
check "overlay A (L3:L2:L1) tree = reference of 3 layers" \
    $PY cmp "$TMP/ref3.json" "$TMP/a.json" --no-xattrs
check "flat FULL: listing came back" test -s "$TMP/out/flat.txt"
$LST tree "$TMP/out/flat.txt" > "$TMP/flat.json" 2>/dev/null
check "flat FULL tree = reference of 4 layers" \
    $PY cmp "$TMP/ref4.json" "$TMP/flat.json" --no-xattrs
check "flat FULL: hard links share an inode" \
    $LST inode "$TMP/out/flat.txt" data/size-513 data/hard data/hard2

# And against `umoci unpack` of the same layers (OCI apply semantics by an
# independent implementation).  umoci cannot apply the layers' system.*
# xattrs (an invalid ACL on purpose) and the guest's listing has no xattrs:
# umoci gets copies without them.
OCIPY="python3 $top_srcdir/tests/helpers/oci-layout.py"
umoci_tree() { # OUT.json LAYER...: umoci's tree of an image of these layers
    local out=$1; shift
    rm -rf "$TMP/ulay" "$TMP/bundle" &&
    $OCIPY layout "$TMP/ulay" img "$@" > /dev/null &&
    umoci unpack --image "$TMP/ulay:img" "$TMP/bundle" > /dev/null &&
    $PY scan "$TMP/bundle/rootfs" > "$out.raw" &&
    $OCIPY umoci-norm "$out.raw" "$out" && rm -rf "$TMP/bundle" "$out.raw"
}
for l in L1 L2 L3 L4; do
    eval "src=\$$l"
    case $src in
    *.gz) gunzip -c "$src" > "$TMP/u-$l.tar" ;;
    *) cp "$src" "$TMP/u-$l.tar" ;;
    esac
    $OCIPY strip "$TMP/u-$l.tar" "$TMP/us-$l.tar"
done
check "umoci unpack of A's 3 layers and FULL's 4" bash -c "
    $(declare -f umoci_tree); PY='$PY' OCIPY='$OCIPY' TMP='$TMP'
    umoci_tree '$TMP/u3.json' '$TMP/us-L1.tar' '$TMP/us-L2.tar' '$TMP/us-L3.tar' &&
    umoci_tree '$TMP/u4.json' '$TMP/us-L1.tar' '$TMP/us-L2.tar' '$TMP/us-L3.tar' '$TMP/us-L4.tar'"
check "overlay A tree (kernel, in the guest) = umoci unpack" \
    $PY cmp "$TMP/u3.json" "$TMP/a.json" --no-xattrs
check "flat FULL tree (kernel, in the guest) = umoci unpack" \
    $PY cmp "$TMP/u4.json" "$TMP/flat.json" --no-xattrs
finish
