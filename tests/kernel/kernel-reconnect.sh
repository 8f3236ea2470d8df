#!/bin/bash
# soci-nbd tests: lib/nbd/nbddev.c against a real kernel's nbd driver — Debian
# 12's kernel in a QEMU (TCG) guest (tests/kernel/qemu/), since the build
# machines' kernel has no nbd driver.  The guest runs tests/helpers/nbd-attach (a
# static front of lib/nbd/nbddev.c) against nbdkit on the host, reached through
# QEMU's guestfwd pipe at 10.0.2.100:10809.
#
# One boot:
#  1. attach a squashfs image over netlink (dead_conn_timeout 60 s), check
#     the device's size and bytes, mount it, hash a file;
#  2. start the supervisor; the guest asks the host (by opening the export
#     "reconnect-kill-restart", which the server logs) to kill the server
#     (SIGKILL) and start it again 3 s later; the guest waits for the
#     link-dead event, drops its caches and hashes the file again: the read
#     waits for the reconnect and returns the right bytes;
#  3. umount and detach: the device's size goes to 0, the supervisor ends;
#  4. a link that dies before its supervisor starts ("reconnect-kill-early":
#     killed, restarted 3 s later, then the supervisor starts): its first,
#     silent reconnect revives the device, a read returns the right bytes;
#  5. negative: a device with dead_conn_timeout 3 s, the server killed
#     for good ("reconnect-kill-stay"): a read fails with EIO after about
#     3 s instead of hanging;
#  6. a request in flight when the server dies: a server that delays
#     reads by 3 s comes back; the guest attaches with io_timeout 5 s,
#     starts a read, and asks for a kill and an immediate restart
#     ("reconnect-kill-inflight"): the read completes with the right bytes
#     (the kernel requeues it when it times out, after the reconnect).
. "${top_srcdir:-$(dirname "$0")/../..}/tests/helpers/lib.sh"

require_tools qemu-system-x86_64 socat cpio busybox nbdkit mksquashfs timeout
HELPER=$top_builddir/tests/helpers/nbd-attach
RUN=$top_srcdir/tests/kernel/qemu/run.sh
[ -x "$HELPER" ] || { echo "Bail out! $HELPER not built"; exit 1; }
if ldd "$HELPER" > /dev/null 2>&1; then
    echo "Bail out! $HELPER is not static"
    exit 1
fi

SPID= RPID=
cleanup() {
    if [ -n "$RPID" ]; then
        kill "$RPID" 2>/dev/null        # run.sh ends its QEMU
        wait "$RPID" 2>/dev/null
    fi
    if [ -n "$SPID" ]; then
        kill -KILL "$SPID" 2>/dev/null
        wait "$SPID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ---- the image ---------------------------------------------------------------
EX=$TMP/exports
mkdir -p "$TMP/tree/d" "$EX"
head -c 3145728 /dev/urandom > "$TMP/tree/big"      # 3 MiB: many requests
echo hello > "$TMP/tree/d/small"
mksquashfs "$TMP/tree" "$EX/img.sqfs" -noappend -quiet -no-progress > /dev/null ||
    { echo "Bail out! mksquashfs failed"; exit 1; }
SIZE=$(stat -c %s "$EX/img.sqfs")
SUM=$(sha "$TMP/tree/big")
IMGSUM=$(sha "$EX/img.sqfs")
BLKSUM=$(dd if="$EX/img.sqfs" bs=4096 skip=300 count=1 2>/dev/null | sha256sum | cut -d' ' -f1)

# ---- the server ----------------------------------------------------------------
SOCK=$TMP/nbd.sock PIDFILE=$TMP/server.pid LOG=$TMP/server.log
: > "$LOG"
# start_server [delay]: the same server each time (delay: reads delayed
# by 3 s, for step 5)
start_server() {
    rm -f "$PIDFILE" "$SOCK"
    if [ "${1:-}" = delay ]; then set -- --filter=delay file dir="$EX" rdelay=3
    else set -- file dir="$EX"; fi
    nbdkit -U "$SOCK" -r -P "$PIDFILE" -f "$@" >> "$LOG" 2>&1 &
    SPID=$!
    for _ in $(seq 100); do
        [ -s "$PIDFILE" ] && [ -S "$SOCK" ] && return 0
        sleep 0.1
    done
    echo "Bail out! nbdkit did not start"
    sed 's/^/# /' "$LOG"
    exit 1
}
kill_server() {
    kill -KILL "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    SPID=
}
start_server

# ---- the guest's script ----------------------------------------------------------
G=$TMP/guest.sh
cat > "$G" <<EOF
. /lib/soci-test.sh
S=10.0.2.100:10809 SIZE=$SIZE SUM=$SUM IMGSUM=$IMGSUM BLKSUM=$BLKSUM
EOF
cat >> "$G" <<'EOF'
A=/bin/nbd-attach
# wait_for SECONDS COMMAND...: until the command succeeds (0.2 s steps).
wait_for() {
    n=$(($1 * 5)); shift
    while [ $n -gt 0 ]; do "$@" && return 0; sleep 0.2; n=$((n - 1)); done
    return 1
}
elapsed() { echo $(( $(date +%s) - $1 )); }

check "nbd-attach available" $A available
check "attach img.sqfs read-only, dead_conn_timeout 60" \
    sh -c "$A attach -r -d 60 $S img.sqfs > /tmp/n1"
N=$(cat /tmp/n1)
note "attached /dev/nbd$N"
check "attach returned with the size set ($SIZE bytes)" \
    test "$(cat /sys/block/nbd$N/size)" = $((SIZE / 512))
check "status says connected" sh -c "test \$($A status $N) = 1"
check "the device is read-only" test "$(cat /sys/block/nbd$N/ro)" = 1
check "the device has the image's bytes" \
    sh -c "sha256sum /dev/nbd$N | grep -q ^$IMGSUM"
mkdir -p /m
check "mount -t squashfs" mount -t squashfs -o ro /dev/nbd$N /m
check "file hash before the restart" sh -c "sha256sum /m/big | grep -q ^$SUM"

$A supervise -R 300 $N $S img.sqfs 2> /tmp/sup.log &
SUP=$!
# The host kills the server when it sees this export asked for, and
# starts it again 3 s later.
$A connect $S reconnect-kill-restart > /dev/null 2>&1
t0=$(date +%s)
check "the supervisor saw the link die" \
    wait_for 20 grep -q "connection to .* lost" /tmp/sup.log
note "link dead after $(elapsed $t0) s"
echo 3 > /proc/sys/vm/drop_caches
t1=$(date +%s)
check "after the restart the file reads back right (read waited for the reconnect)" \
    sh -c "sha256sum /m/big | grep -q ^$SUM"
note "the read took $(elapsed $t1) s"
check "the supervisor reconnected" grep -q "reconnected to" /tmp/sup.log
check "small file too" grep -q hello /m/d/small
check "umount" umount /m
check "detach" $A detach $N
check "size 0 after detach" \
    wait_for 10 sh -c "test \$(cat /sys/block/nbd$N/size) = 0"
check "status says disconnected" sh -c "test \$($A status $N) = 0"
check "the supervisor ended by itself" wait_for 10 sh -c "! kill -0 $SUP 2>/dev/null"
wait $SUP
check "the supervisor exited 0" test $? = 0
sed 's/^/supervisor: /' /tmp/sup.log | while read -r l; do note "$l"; done

# A link that dies before its supervisor starts (no one hears the
# LINK_DEAD): the supervisor's first reconnect revives it.
check "attach, dead_conn_timeout 60, no supervisor yet" \
    sh -c "$A attach -r -d 60 $S img.sqfs > /tmp/n4"
N4=$(cat /tmp/n4)
check "mount it" mount -t squashfs -o ro /dev/nbd$N4 /m
dead0=$(dmesg | grep -c "nbd$N4: Receive control failed")
$A connect $S reconnect-kill-early > /dev/null 2>&1
check "the kernel saw the link die (its LINK_DEAD went to nobody)" \
    wait_for 30 sh -c "test \$(dmesg | grep -c 'nbd$N4: Receive control failed') -gt $dead0"
sleep 1
check "the server is back (killed and restarted, the link stays dead)" \
    wait_for 30 sh -c "$A connect $S img.sqfs > /dev/null 2>&1"
$A supervise -R 300 $N4 $S img.sqfs 2> /tmp/sup4.log &
SUP4=$!
echo 3 > /proc/sys/vm/drop_caches
t4=$(date +%s)
check "a supervisor started after the link died: the file reads back right" \
    timeout 50 sh -c "sha256sum /m/big | grep -q ^$SUM"
note "the read took $(elapsed $t4) s (60 s dead_conn_timeout)"
check "umount" umount /m
check "detach" $A detach $N4
check "its supervisor ended by itself" \
    wait_for 10 sh -c "! kill -0 $SUP4 2>/dev/null"
check "... and said nothing about a reconnect it did not need to report" \
    sh -c "! grep -q 'reconnected to' /tmp/sup4.log"

# Negative: no restart within a 3 s dead_conn_timeout.
check "attach again, dead_conn_timeout 3" \
    sh -c "$A attach -r -d 3 $S img.sqfs > /tmp/n2"
N2=$(cat /tmp/n2)
note "attached /dev/nbd$N2"
check "a read works" dd if=/dev/nbd$N2 of=/dev/null bs=4096 count=1 iflag=direct
$A supervise -R 600000 $N2 $S img.sqfs 2> /tmp/sup2.log &
SUP2=$!
sleep 1
$A connect $S reconnect-kill-stay > /dev/null 2>&1
check "link dead (server killed for good)" \
    wait_for 20 grep -q "connection to .* lost" /tmp/sup2.log
t2=$(date +%s)
check "then a read fails with EIO" \
    sh -c "! timeout 60 dd if=/dev/nbd$N2 of=/dev/null bs=4096 count=1 skip=100 iflag=direct 2> /tmp/dd.err && grep -qiE 'input/output|I/O error' /tmp/dd.err"
e=$(elapsed $t2)
note "the failing read took $e s: $(cat /tmp/dd.err)"
check "after about the dead_conn_timeout (2-20 s, not a hang)" \
    test $e -ge 2 -a $e -le 20
check "detach the dead device" $A detach $N2
check "size 0 after detach (dead device)" \
    wait_for 10 sh -c "test \$(cat /sys/block/nbd$N2/size) = 0"
check "its supervisor ended by itself" \
    wait_for 10 sh -c "! kill -0 $SUP2 2>/dev/null"

# A request in flight when the server dies.
check "a server delaying reads by 3 s is back" \
    wait_for 30 sh -c "$A connect $S img.sqfs > /dev/null 2>&1"
check "attach, dead_conn_timeout 60, io_timeout 5" \
    sh -c "$A attach -r -d 60 -t 5 $S img.sqfs > /tmp/n3"
N3=$(cat /tmp/n3)
$A supervise -R 300 $N3 $S img.sqfs 2> /tmp/sup3.log &
SUP3=$!
(dd if=/dev/nbd$N3 of=/tmp/blk bs=4096 count=1 skip=300 iflag=direct 2> /tmp/dd3.err
 echo $? > /tmp/dd3.rc) &
sleep 1
t3=$(date +%s)
$A connect $S reconnect-kill-inflight > /dev/null 2>&1
check "the in-flight read completes" wait_for 90 test -s /tmp/dd3.rc
note "the in-flight read completed $(elapsed $t3) s after the kill"
check "... successfully, with the right bytes" \
    sh -c "test \$(cat /tmp/dd3.rc) = 0 && sha256sum /tmp/blk | grep -q ^$BLKSUM"
check "the supervisor reconnected it" grep -q "reconnected to" /tmp/sup3.log
check "detach" $A detach $N3
check "its supervisor ended by itself" \
    wait_for 10 sh -c "! kill -0 $SUP3 2>/dev/null"
sed 's/^/supervisor: /' /tmp/sup3.log | while read -r l; do note "$l"; done
dmesg | grep -i nbd | tail -30 | while read -r l; do note "dmesg: $l"; done
exit $SOCI_FAILED
EOF

# ---- boot ----------------------------------------------------------------------------
t0=$(date +%s)
"$RUN" -s "$SOCK" -t 260 -l "$TMP/console.txt" -f "$HELPER=/bin/nbd-attach" "$G" \
    > "$TMP/res.txt" 2> "$TMP/run.err" &
RPID=$!
killed=0 restarted=0 early=0 early_back=0 stayed=0 delayed=0 inflight=0
while kill -0 $RPID 2>/dev/null; do
    if [ $killed = 0 ] && grep -q reconnect-kill-restart "$LOG"; then
        kill_server
        killed=1
        t1=$(date +%s%N)
        echo "# server killed"
    fi
    if [ $killed = 1 ] && [ $restarted = 0 ] &&
       [ $(( ($(date +%s%N) - t1) / 1000000 )) -ge 3000 ]; then
        start_server
        restarted=1
        echo "# server restarted 3 s later"
    fi
    if [ $restarted = 1 ] && [ $early = 0 ] && grep -q reconnect-kill-early "$LOG"; then
        kill_server
        early=1
        t1=$(date +%s%N)
        echo "# server killed (no supervisor yet)"
    fi
    if [ $early = 1 ] && [ $early_back = 0 ] &&
       [ $(( ($(date +%s%N) - t1) / 1000000 )) -ge 3000 ]; then
        start_server
        early_back=1
        echo "# server restarted 3 s later"
    fi
    if [ $early_back = 1 ] && [ $stayed = 0 ] && grep -q reconnect-kill-stay "$LOG"; then
        kill_server
        stayed=1
        echo "# server killed for good"
        t2=$(date +%s%N)
    fi
    if [ $stayed = 1 ] && [ $delayed = 0 ] &&
       [ $(( ($(date +%s%N) - t2) / 1000000 )) -ge 15000 ]; then
        start_server delay
        delayed=1
        echo "# server delaying reads by 3 s started"
    fi
    if [ $delayed = 1 ] && [ $inflight = 0 ] && grep -q reconnect-kill-inflight "$LOG"; then
        kill_server
        start_server delay
        inflight=1
        echo "# server killed and restarted (a read in flight)"
    fi
    sleep 0.1
done
guest_wait "$t0"

guest_results "$TMP/res.txt"
expected=$(grep -c '^check ' "$G")
check "the guest ran all its $expected checks (run.sh status $st)" \
    test "$GUEST_N" = "$expected" -a "$st" = 0
check "the host killed and restarted the server (twice), killed it for good, restarted it under a read in flight" \
    test "$killed$restarted$early$early_back$stayed$delayed$inflight" = 1111111
finish
