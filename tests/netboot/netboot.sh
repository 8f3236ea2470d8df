#!/bin/bash
# soci-nbd tests: network boot of a machine with no disk (examples/bare-metal.md,
# "remote" placement).  A Debian 12 system with systemd (tests/netboot/mkroot.sh,
# made once and cached) is pushed to a real docker-registry on 127.0.0.1 with
# a small app layer holding a marker service, indexed with `soci-nbd
# convert`, and served by `nbdkit soci` on the host.  Its initramfs is built
# by Debian's own mkinitramfs with examples/initramfs-tools (hook and
# boot=soci script) installed.  QEMU (TCG) boots the kernel and that
# initramfs with only a NIC: no -drive.  The initramfs configures the
# network (ip=dhcp), attaches the flat export with soci-nbd-attach over
# QEMU's guestfwd pipe (10.0.2.100:10809 -> the server's Unix socket),
# mounts it with a tmpfs overlay as / and hands over to the image's systemd,
# whose marker service checks, from inside: PID 1 is systemd, / is an
# overlay whose lower layer is squashfs on /dev/nbdN, a file of the image
# reads right, the supervisor that keeps the root attached runs, marked for
# systemd.  Then the host kills the server under the running machine and
# starts it again 3 s later, and a file not read before must still read
# right (the supervisor reattached the root device).  Then the marker powers
# the machine off, and the console shows a clean shutdown.  Then two boots
# that must fail (a wrong export name, a server that is not there) end in
# initramfs-tools' rescue shell with a line saying why, and the shell works.
# Then the same boot over TLS (nbdkit --tls=require --tls-psk; the key as a
# second initramfs piece), and rescue shells for a wrong key and a server
# without TLS.  Last, the local placement: the initramfs runs nbdkit soci
# itself against a registry with TLS and a password (credentials and CA in
# a second initramfs piece, 0600), and bad credentials end in a rescue
# shell.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

require_tools qemu-system-x86_64 debootstrap nbdkit python3 socat timeout \
    apt-get dpkg-deb flock cpio
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
[ -f "$PLUGIN" ] || { echo "Bail out! $PLUGIN not built"; exit 1; }
# The plugin the guest's own nbdkit loads (local placement): without
# sanitizers (Makefile.am, GUEST_PLUGIN).
: "${GUEST_PLUGIN:=$PLUGIN}"
[ -f "$GUEST_PLUGIN" ] || { echo "Bail out! $GUEST_PLUGIN not built"; exit 1; }
nbdkit_asan_wrapper "$PLUGIN"
RUN=$top_srcdir/tests/kernel/qemu/run.sh
T0=$(date +%s)
NBDKIT_PIDS=""
HELPER=$top_builddir/tests/helpers/nbd-attach       # static soci-nbd-attach
[ -x "$HELPER" ] || { echo "Bail out! $HELPER not built"; exit 1; }
trap 'for p in $NBDKIT_PIDS; do kill "$p" 2>/dev/null; done; srv_cleanup' EXIT

# ---- the system, its initramfs, the image ------------------------------------
BASE=$("$top_srcdir/tests/netboot/mkroot.sh" image) ||
    { echo "Bail out! tests/netboot/mkroot.sh image failed"; exit 1; }
echo "# Debian system layer: $BASE ($(stat -c %s "$BASE") bytes), ready after $(($(date +%s) - T0)) s"
check "Debian's mkinitramfs builds the initramfs with the soci-nbd hook" \
    bash -c "'$top_srcdir/tests/netboot/mkroot.sh' initrd '$TMP/initrd.img' '$top_builddir/soci-nbd-attach' '$GUEST_PLUGIN' > '$TMP/kernel'"
KERNEL=$(cat "$TMP/kernel")
check "... it holds soci-nbd-attach, the boot=soci script and the nbd module" bash -c "
    grep -q 'sbin/soci-nbd-attach\$' '$TMP/initrd.img.list' && grep -q '^scripts/soci\$' '$TMP/initrd.img.list' &&
    grep -q '/nbd\.ko' '$TMP/initrd.img.list'"
check "... and a root for nbdkit soci (local placement)" bash -c "
    grep -q '^usr/lib/soci-nbd/root/usr/sbin/nbdkit\$' '$TMP/initrd.img.list' &&
    grep -q '^usr/lib/soci-nbd/root/usr/lib/soci-nbd/nbdkit-soci-plugin.so\$' '$TMP/initrd.img.list' &&
    grep -q '^usr/lib/soci-nbd/root/etc/ssl/certs/ca-certificates.crt\$' '$TMP/initrd.img.list'"

# The app layer: the marker service, run once userland is up
# (tests/netboot/mkapp.sh, shared with bench/netboot).
"$top_srcdir/tests/netboot/mkapp.sh" "$TMP/app" "$BASE" "$HELPER" > "$TMP/app.tar.gz" ||
    { echo "Bail out! tests/netboot/mkapp.sh failed"; exit 1; }

reg_start R || { echo "Bail out! registry did not start"; exit 1; }
python3 "$top_srcdir/tests/helpers/plugin-image.py" push "$R_URL" test/netboot \
    "$BASE" "$TMP/app.tar.gz" > /dev/null || { echo "Bail out! push failed"; exit 1; }
check "soci-nbd convert indexes both layers" \
    "$SOCI_NBD" convert -q --min-layer-size 0 --plain-http "$R_HOST" \
    "$R_HOST/test/netboot:v1" "$R_HOST/test/netboot:soci"
echo "# pushed and converted after $(($(date +%s) - T0)) s"

# ---- remote placement: nbdkit soci on the host, the initramfs attaches ---------
SOCK=$TMP/nbd.sock STATS=$TMP/stats.json
CONSOLE=${NETBOOT_CONSOLE:-$TMP/console.log}   # NETBOOT_CONSOLE=FILE keeps it
check "nbdkit soci serves the image" plugin_start "$SOCK" "$R_HOST/test/netboot:soci" \
    plain-http="$R_HOST" stats-file="$STATS"
"$RUN" -s "$SOCK" -t 300 -l "$CONSOLE" -i "$TMP/initrd.img" -k "$KERNEL" \
    -A "console=ttyS0 panic=-1 systemd.show_status=false boot=soci soci.server=10.0.2.100:10809 soci.export=flat ip=dhcp net.ifnames=0" \
    > "$TMP/boot.tap" 2>&1 &
RPID=$!
# The restart: from this shell, which outlives the server (plugin_start).
killed=0 restarted=0
while kill -0 $RPID 2>/dev/null; do
    if [ $killed = 0 ] && grep -q "no export 'netboot-restart-server'" "$SOCK.log"; then
        SPID=$(cat "$SOCK.pid")
        kill -KILL "$SPID"; wait "$SPID" 2>/dev/null
        mv "$SOCK.log" "$SOCK.log.1"
        killed=1 t1=$(date +%s%N)
        echo "# server killed"
    fi
    if [ $killed = 1 ] && [ $restarted = 0 ] &&
       [ $(( ($(date +%s%N) - t1) / 1000000 )) -ge 3000 ]; then
        plugin_start "$SOCK" "$R_HOST/test/netboot:soci" plain-http="$R_HOST" \
            stats-file="$STATS.2" || echo "# the restarted server did not start"
        restarted=1
        echo "# server restarted 3 s later"
    fi
    sleep 0.2
done
wait $RPID
tap_fold "remote boot" "$TMP/boot.tap" $?
check "the host killed the server under the running machine and restarted it" \
    test "$killed$restarted" = 11
check "the file never read before came from the restarted server" python3 -c '
import json, sys
app = [json.load(open(f))["layers"][1]["bytes_fetched"] for f in sys.argv[1:3]]
print("app layer bytes fetched by the first server %d, by the restarted one %d" % tuple(app))
sys.exit(0 if app[0] < 3 << 20 <= app[1] else 1)' "$STATS" "$STATS.2"
echo "# booted and shut down after $(($(date +%s) - T0)) s"
check "the initramfs said where the root is" \
    grep -q '^soci-nbd: root is export flat of 10.0.2.100:10809' "$CONSOLE"
check "the marker service ran in userland" grep -q '^SOCI-NETBOOT-MARKER: userland up' "$CONSOLE"
check "clean shutdown: systemd reached the power-off" \
    grep -q 'reboot: Power down' "$CONSOLE"
check "... with nothing left it could not unmount or detach, and no I/O error" bash -c \
    "! grep -E 'Failed to (unmount|detach)|Unable to (unmount|finalize)|I/O error' '$CONSOLE'"

# ---- failures end in a rescue shell that says why -----------------------------
# rescue_boot NAME WANT ARGS...: boot with boot=soci ARGS (no panic=, so that
# initramfs-tools' panic opens its shell); run.sh types a line at the
# "(initramfs) " prompt that prints the shell's REASON (set by panic) and
# powers off.  WANT (a grep pattern) must be in the console's soci-nbd line
# and in that REASON.
# The server is RB_SOCK's (default $SOCK), the initramfs RB_INITRD (default
# the plain one).
rescue_boot() {
    local name=$1 want=$2 log=$TMP/rescue-$1.log st=0; shift 2
    # (SOCI-TEST-END built by the shell, so that the echo of the typed
    # line itself does not look like the end)
    "$RUN" -s "${RB_SOCK:-$SOCK}" ${RB_PORT:+-p "$RB_PORT"} -t 180 -l "$log" \
        -i "${RB_INITRD:-$TMP/initrd.img}" -k "$KERNEL" \
        -A "console=ttyS0 boot=soci $* ip=dhcp net.ifnames=0" \
        -T '(initramfs) =echo "SOCI-RESCUE: $REASON"; echo SOCI-TEST-END: rc=$((0)); echo o > /proc/sysrq-trigger' \
        > "$TMP/rescue.out" 2>&1 || st=$?
    check "$name: the boot ends in the rescue shell, which runs commands" \
        test "$st" = 0
    check "... the console says why: $want" grep -q "^soci-nbd: .*$want" "$log"
    check "... and so does the rescue shell's REASON" \
        grep -q "^SOCI-RESCUE: soci-nbd: .*$want" "$log"
}
rescue_boot "wrong export" "cannot attach export nosuch of 10.0.2.100:10809: export 'nosuch' not found" \
    soci.server=10.0.2.100:10809 soci.export=nosuch soci.attach_timeout=4
rescue_boot "unreachable server" "cannot attach export flat of 10.0.2.100:10810: 10.0.2.100:10810: connect: " \
    soci.server=10.0.2.100:10810 soci.attach_timeout=4
echo "# rescue boots done after $(($(date +%s) - T0)) s"

# booted_and_off CONSOLE: the marker ran, and the machine powered off with
# nothing it could not unmount or detach, and no I/O error.
booted_and_off() {
    grep -q '^SOCI-NETBOOT-MARKER: userland up' "$1" &&
        grep -q 'reboot: Power down' "$1" &&
        ! grep -E 'Failed to (unmount|detach)|I/O error' "$1"
}

# ---- TLS on the NBD link ---------------------------------------------------------
# The key reaches the machine as a second initramfs piece of its own,
# appended to the shared one (as iPXE loads two initrds): a cpio holding
# /etc/soci-nbd/nbd-psk, 0600.  The server requires TLS with that key.
# append_piece OUT DIR: the shared initramfs with a second piece, a cpio
# of DIR's tree (owned by root), appended: the kernel unpacks both.
append_piece() {
    (cd "$2" && find . | cpio -o -H newc -R 0:0 --quiet) | gzip -n > "$2.cpio.gz" &&
        cat "$TMP/initrd.img" "$2.cpio.gz" > "$1"
}
# key_initrd OUT KEYFILE: the shared initramfs with KEYFILE appended.
key_initrd() {
    rm -rf "$TMP/key"
    mkdir -p "$TMP/key/etc/soci-nbd"
    install -m 0600 "$2" "$TMP/key/etc/soci-nbd/nbd-psk"
    append_piece "$1" "$TMP/key"
}
printf 'netboot:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$TMP/psk"
printf 'netboot:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$TMP/psk-wrong"
chmod 600 "$TMP/psk" "$TMP/psk-wrong"
key_initrd "$TMP/initrd-tls.img" "$TMP/psk" && key_initrd "$TMP/initrd-wrong.img" "$TMP/psk-wrong" ||
    { echo "Bail out! cannot append the key to the initramfs"; exit 1; }
SOCK_TLS=$TMP/tls.sock
NBDKIT_OPTS="--tls=require --tls-psk=$TMP/psk" check "nbdkit soci serves the image with TLS required" \
    plugin_start "$SOCK_TLS" "$R_HOST/test/netboot:soci" plain-http="$R_HOST"
tap_run "TLS boot" "$RUN" -s "$SOCK_TLS" -t 300 -l "$TMP/console-tls.log" \
    -i "$TMP/initrd-tls.img" -k "$KERNEL" \
    -A "console=ttyS0 panic=-1 systemd.show_status=false boot=soci soci.server=10.0.2.100:10809 ip=dhcp net.ifnames=0 soci_test=tls"
check "TLS boot: the initramfs attached the root over TLS" \
    grep -q '^soci-nbd: root is export flat of 10.0.2.100:10809 (squashfs on /dev/nbd0, tmpfs overlay, TLS)' "$TMP/console-tls.log"
check "... the marker service ran, and the machine powered off cleanly" \
    booted_and_off "$TMP/console-tls.log"
RB_SOCK=$SOCK_TLS RB_INITRD=$TMP/initrd-wrong.img rescue_boot "wrong TLS key" \
    "cannot attach export flat of 10.0.2.100:10809: 10.0.2.100:10809: TLS handshake failed (is the key for identity 'netboot' the server's?)" \
    soci.server=10.0.2.100:10809 soci.attach_timeout=4
RB_INITRD=$TMP/initrd-tls.img rescue_boot "TLS key, server without TLS" \
    "cannot attach export flat of 10.0.2.100:10809: 10.0.2.100:10809: the server does not offer TLS" \
    soci.server=10.0.2.100:10809 soci.attach_timeout=4
plugin_stop "$SOCK_TLS"
echo "# TLS boots done after $(($(date +%s) - T0)) s"

# ---- local placement: nbdkit soci in the initramfs, against the registry ---------
# A registry with TLS and a password, reached by the guest at
# 10.0.2.100:PORT, holding the image (converted again from R); its
# credentials and CA reach the machine in a second initramfs piece, 0600,
# in the root the hook made for nbdkit.  (Not a pull-through mirror of R:
# docker-registry answers a range request for a blob it has not cached yet
# with 200 and the whole blob, which the plugin refuses.)
reg_start RL --tls --htpasswd alice s3cret ||
    { echo "Bail out! the registry with a password did not start"; exit 1; }
printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$RL_HOST" \
    "$(printf alice:s3cret | base64 -w0)" > "$TMP/auth-host.json"
check "soci-nbd convert copies the image there" \
    "$SOCI_NBD" convert -q --min-layer-size 0 --plain-http "$R_HOST" \
    --auth-file "$TMP/auth-host.json" --cacert "$REG_CA" \
    "$R_HOST/test/netboot:v1" "$RL_HOST/test/netboot:soci"
# auth_initrd OUT PASSWORD: the shared initramfs with credentials appended.
auth_initrd() {
    local d=$TMP/auth/usr/lib/soci-nbd/root/etc/soci-nbd
    rm -rf "$TMP/auth"
    mkdir -p "$d"
    printf '{"auths": {"10.0.2.100:%s": {"auth": "%s"}}}\n' "$RL_PORT" \
        "$(printf 'alice:%s' "$2" | base64 -w0)" > "$d/registry-auth.json"
    chmod 600 "$d/registry-auth.json"
    cp "$REG_CA" "$d/registry-ca.pem"
    append_piece "$1" "$TMP/auth"
}
auth_initrd "$TMP/initrd-local.img" s3cret && auth_initrd "$TMP/initrd-badauth.img" wrong ||
    { echo "Bail out! cannot append the credentials to the initramfs"; exit 1; }
IMAGE_L=10.0.2.100:$RL_PORT/test/netboot:soci
tap_run "local boot" "$RUN" -p "$RL_PORT" -t 300 -l "$TMP/console-local.log" \
    -i "$TMP/initrd-local.img" -k "$KERNEL" \
    -A "console=ttyS0 panic=-1 systemd.show_status=false boot=soci soci.image=$IMAGE_L ip=dhcp net.ifnames=0 soci_test=local"
check "local boot: the initramfs's nbdkit served the root" \
    grep -q "^soci-nbd: root is export flat of unix:/run/soci-nbd/root/nbd.sock (squashfs on /dev/nbd0, tmpfs overlay)" "$TMP/console-local.log"
check "... the marker service ran, and the machine powered off cleanly" \
    booted_and_off "$TMP/console-local.log"
check "... and the registry log shows it read blobs with the password, by range" bash -c "
    grep -q 'msg=\"authorized request\".*http.request.host=\"10.0.2.100:$RL_PORT\".*/blobs/sha256:' '$RL_LOG' &&
    grep -q '\"GET /v2/test/netboot/blobs/sha256:[0-9a-f]* HTTP/[0-9.]*\" 206 ' '$RL_LOG'"
RB_PORT=$RL_PORT RB_INITRD=$TMP/initrd-badauth.img rescue_boot "bad registry credentials" \
    "nbdkit soci cannot serve $IMAGE_L: .*401" \
    soci.image="$IMAGE_L"
echo "# local boots done after $(($(date +%s) - T0)) s"

plugin_stop "$SOCK"
check "stats: both servers fetched part of the image, lazily, less than half in all" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
size = int(sys.argv[3])
ok, total = True, 0
for f in sys.argv[1:3]:
    s = json.load(open(f))
    got = s["bytes_fetched"] + s["whole_layer_bytes_fetched"]
    total += got
    print("%s: fetched %d of %d bytes" % (f.rsplit("/", 1)[1], got, size))
    ok = ok and got > 0 and all(l["lazy"] for l in s["layers"])
print("in all %.1f%%" % (100.0 * total / size))
sys.exit(0 if ok and total < size / 2 else 1)' "$STATS" "$STATS.2" \
    $(($(stat -c %s "$BASE") + $(stat -c %s "$TMP/app.tar.gz")))
finish
