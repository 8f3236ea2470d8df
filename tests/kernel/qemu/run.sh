#!/bin/bash
# soci-nbd tests: boot the QEMU test guest (TCG) on a test script.
#
#   run.sh [-s SOCKET] [-p PORT]... [-d EXPORT]... [-r SECONDS] [-O OUTDIR]
#          [-l LOG] [-t SECONDS] [-m MEGABYTES] [-f SRC=DST]... [-b SRC=DST]...
#          [-T PROMPT=LINE]
#          TEST_SCRIPT
#   run.sh [options above] -i INITRD -k KERNEL -A CMDLINE
#
#   -s SOCKET  an NBD server's Unix socket.  The guest reaches it at
#              10.0.2.100:10809 only: QEMU user networking with restrict=on
#              and a guestfwd rule that hands each guest connection to
#              `socat - UNIX-CONNECT:SOCKET`; no packet leaves QEMU.
#              (socat logs to /dev/null: QEMU gives the command the
#              connection as stderr too, and a log line would reach the
#              guest as data.)
#   -p PORT    the guest reaches 127.0.0.1:PORT on the host (a registry)
#              at 10.0.2.100:PORT, the same way: a guestfwd rule to
#              `socat - TCP:127.0.0.1:PORT` (nothing else is reachable).
#   -d EXPORT  also give the guest a read-only virtio disk backed by the
#              export (QEMU's own NBD client on SOCKET), with virtio serial
#              EXPORT cut to 20 bytes; the first -d is /dev/vda.
#   -r SECONDS when the server goes away, QEMU's NBD client of the -d disks
#              reconnects, and holds the guest's requests for up to SECONDS
#              (the nbd driver's reconnect-delay; default 0: they fail).
#   -O OUTDIR  extract there what the test left in $OUT (/out) in the guest
#              (carried back on a scratch virtio disk, serial "soci-out").
#   -l LOG     keep the whole serial console there.
#   -t SECONDS bound on the whole boot (default 120).
#   -m MEGABYTES  guest memory (default 1024).
#   -f SRC=DST copy SRC into the initramfs at DST.
#   -b SRC=DST copy the program or shared library SRC to DST, and every
#              library `ldd SRC` names at its own path (mkinitramfs.sh -b).
#   -T PROMPT=LINE  when the console shows PROMPT (e.g. a rescue shell's
#              "(initramfs) "), type LINE on it, once (QEMU's serial input
#              is a pipe then, not /dev/null).
#   -i INITRD, -k KERNEL, -A CMDLINE  boot that kernel and initramfs (made
#              elsewhere, e.g. by Debian's mkinitramfs) with that command
#              line instead of the test guest; what it runs prints the
#              result lines below itself.
#
# Prints the guest's result lines ("SOCI-TEST-RESULT: " removed) on stdout.
# Exits 0 when the guest ran the test to its end and the test exited 0,
# 1 when the test failed, 2 when the guest did not get to its end (then the
# console's tail goes to stderr).
set -eu -o pipefail

die() { echo "run.sh: $*" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
SOCKET= OUTDIR= LOG= TIMEOUT=120 RECONNECT= MEM=1024 INITRD= KERNEL= CMDLINE=
EXPORTS=() FILES=() PORTS=() PROMPT= TYPE=
while getopts s:p:d:r:O:l:t:m:f:b:i:k:A:T: opt; do
    case $opt in
    T) case $OPTARG in *=*) ;; *) die "-T needs PROMPT=LINE" ;; esac
       PROMPT=${OPTARG%%=*} TYPE=${OPTARG#*=} ;;
    i) INITRD=$OPTARG ;;
    k) KERNEL=$OPTARG ;;
    A) CMDLINE=$OPTARG ;;
    s) SOCKET=$OPTARG ;;
    p) case $OPTARG in ''|*[!0-9]*) die "-p needs a port number" ;; esac
       PORTS+=("$OPTARG") ;;
    m) MEM=$OPTARG ;;
    b) FILES+=(-b "$OPTARG") ;;
    d) EXPORTS+=("$OPTARG") ;;
    r) RECONNECT=",file.reconnect-delay=$OPTARG" ;;
    O) OUTDIR=$OPTARG ;;
    l) LOG=$OPTARG ;;
    t) TIMEOUT=$OPTARG ;;
    f) FILES+=(-f "$OPTARG") ;;
    *) die "bad option" ;;
    esac
done
shift $((OPTIND - 1))
if [ -n "$INITRD" ]; then
    [ $# -eq 0 ] && [ -n "$KERNEL" ] && [ -n "$CMDLINE" ] ||
        die "usage: run.sh [options] -i INITRD -k KERNEL -A CMDLINE"
else
    [ $# -eq 1 ] || die "usage: run.sh [-s SOCKET] [-p PORT]... [-d EXPORT]... [-r SECONDS] [-O OUTDIR] [-l LOG] [-t SECONDS] [-m MB] [-f SRC=DST]... [-b SRC=DST]... TEST_SCRIPT"
    TEST=$1
fi
if [ ${#EXPORTS[@]} -gt 0 ] && [ -z "$SOCKET" ]; then
    die "-d needs -s SOCKET"
fi
case $SOCKET in *,*|*:*) die "QEMU cannot take a socket path with ',' or ':': $SOCKET" ;; esac
for t in qemu-system-x86_64 socat timeout; do
    command -v $t > /dev/null || die "$t is not installed"
done

W=$(mktemp -d "${TMPDIR:-/tmp}/soci-nbd-qemu.XXXXXX")
QPID=
cleanup() {
    [ -n "$QPID" ] && kill "$QPID" 2>/dev/null && wait "$QPID" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

if [ -z "$INITRD" ]; then
    KERNEL=$("$HERE/mkinitramfs.sh" ${FILES[@]+"${FILES[@]}"} "$TEST" "$W/initrd.gz") ||
        die "mkinitramfs.sh failed"
    INITRD=$W/initrd.gz
    CMDLINE="console=ttyS0 quiet panic=-1"
fi

ARGS=(-accel tcg -m "$MEM" -smp 1 -nodefaults -nographic -no-reboot
      -serial stdio -monitor none
      -kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE")
NETDEV=
if [ -n "$SOCKET" ]; then
    NETDEV=",guestfwd=tcp:10.0.2.100:10809-cmd:socat -lf /dev/null - UNIX-CONNECT:$SOCKET"
fi
for p in ${PORTS[@]+"${PORTS[@]}"}; do
    NETDEV="$NETDEV,guestfwd=tcp:10.0.2.100:$p-cmd:socat -lf /dev/null - TCP:127.0.0.1:$p"
done
if [ -n "$NETDEV" ]; then
    ARGS+=(-netdev "user,id=n0,restrict=on$NETDEV"
           -device virtio-net-pci,netdev=n0,romfile=)
fi
i=0
for e in ${EXPORTS[@]+"${EXPORTS[@]}"}; do
    case $e in *,*) die "QEMU cannot take an export name with ',': $e" ;; esac
    ARGS+=(-drive "file=nbd:unix:$SOCKET:exportname=$e$RECONNECT,format=raw,if=none,id=d$i,readonly=on"
           -device "virtio-blk-pci,drive=d$i,serial=${e:0:20}")
    i=$((i + 1))
done
if [ -n "$OUTDIR" ]; then
    truncate -s 256M "$W/out.img"
    ARGS+=(-drive "file=$W/out.img,format=raw,if=none,id=out"
           -device virtio-blk-pci,drive=out,serial=soci-out)
fi

# Background + wait, so that the EXIT trap can end QEMU on a signal.
IN=/dev/null
if [ -n "$PROMPT" ]; then
    IN=$W/serial.in
    mkfifo "$IN"
    exec 3<> "$IN"          # held open: QEMU never sees the end of its input
    : > "$W/console"
fi
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 "${ARGS[@]}" \
    < "$IN" > "$W/console" 2>&1 &
QPID=$!
if [ -n "$PROMPT" ]; then
    while kill -0 "$QPID" 2>/dev/null; do
        if tr -d '\r' < "$W/console" | grep -qF -- "$PROMPT"; then
            printf '%s\n' "$TYPE" >&3
            break
        fi
        sleep 0.2
    done
fi
st=0
wait $QPID || st=$?
QPID=
tr -d '\r' < "$W/console" > "$W/console.txt"
[ -n "$LOG" ] && cp "$W/console.txt" "$LOG"
sed -n 's/^SOCI-TEST-RESULT: //p' "$W/console.txt"
end=$(sed -n 's/^SOCI-TEST-END: rc=\([0-9]*\)$/\1/p' "$W/console.txt")
if [ -z "$end" ]; then
    if [ $st -eq 124 ] || [ $st -eq 137 ]; then
        echo "run.sh: the guest did not finish within $TIMEOUT s" >&2
    else
        echo "run.sh: the guest did not finish (qemu exit status $st)" >&2
    fi
    tail -30 "$W/console.txt" | sed 's/^/run.sh: console: /' >&2
    exit 2
fi
if [ -n "$OUTDIR" ]; then
    mkdir -p "$OUTDIR"
    tar -xf "$W/out.img" -C "$OUTDIR" || die "cannot read the guest's output disk"
fi
[ "$end" -eq 0 ] && exit 0
exit 1
