#!/bin/bash
# soci-nbd tests: the app layer of the network-boot test and benchmark
# (tests/netboot/netboot.sh, bench/netboot), on top of the Debian system
# layer of tests/netboot/mkroot.sh:
#
#   mkapp.sh DIR BASE_LAYER NBD_ATTACH > app.tar.gz
#
# builds the layer's tree in DIR (which must not exist) and writes it,
# gzipped tar, to stdout.  It holds a marker service that runs once
# userland is up and prints result lines for tests/kernel/qemu/run.sh
# ("SOCI-NETBOOT-MARKER: userland up, uptime SECONDS s" first), a 3 MiB
# file of random bytes read only late (after the server restart, in the
# remote placement) and NBD_ATTACH (a static soci-nbd-attach) as
# /usr/local/sbin/nbd-probe.  Which checks the marker runs depends on
# soci_test=tls|local on the kernel command line.
set -eu -o pipefail
[ $# -eq 3 ] || { echo "usage: mkapp.sh DIR BASE_LAYER NBD_ATTACH > app.tar.gz" >&2; exit 2; }
APP=$1 BASE=$2 HELPER=$3
[ ! -e "$APP" ] || { echo "mkapp.sh: $APP exists" >&2; exit 1; }
mkdir -p "$APP/etc/systemd/system/multi-user.target.wants" "$APP/usr/local/sbin"
echo "netboot app layer $(sha256sum "$BASE" | cut -c1-12)" > "$APP/etc/netboot-test.txt"
# Read only after the server restart; and a probe for the server (the
# static soci-nbd-attach: the image itself has no NBD tools).
mkdir -p "$APP/opt/soci-restart"
head -c 3145728 /dev/urandom > "$APP/opt/soci-restart/blob"
BLOBSUM=$(sha256sum "$APP/opt/soci-restart/blob" | cut -d" " -f1)
cp "$HELPER" "$APP/usr/local/sbin/nbd-probe"
cat > "$APP/etc/systemd/system/soci-marker.service" <<'UNIT'
[Unit]
Description=soci-nbd network boot marker
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/soci-marker
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
UNIT
ln -s ../soci-marker.service "$APP/etc/systemd/system/multi-user.target.wants/soci-marker.service"
# No login prompt on the console: agetty would flush the marker's output.
ln -s /dev/null "$APP/etc/systemd/system/serial-getty@ttyS0.service"
cat > "$APP/usr/local/sbin/soci-marker" <<'SH'
#!/bin/sh
# Runs in the booted image: result lines for tests/kernel/qemu/run.sh.
failed=0
check() {
    d=$1; shift
    if "$@" > /tmp/check.out 2>&1; then echo "SOCI-TEST-RESULT: ok $d"
    else echo "SOCI-TEST-RESULT: not ok $d"; failed=1
        head -5 /tmp/check.out | sed 's/^/SOCI-TEST-RESULT: # /'; fi
}
# has_proc PATTERN: a process's command line (spaces for NULs) matches.
has_proc() {
    for f in /proc/[0-9]*/cmdline; do tr "\0" " " < $f; echo; done | grep -q "$1"
}
# The 3 MiB file read late: its bytes are right.
blob_reads_right() { sha256sum /opt/soci-restart/blob | grep -q "^@BLOBSUM@ "; }
finish() {
    echo "SOCI-TEST-END: rc=$failed"
    systemctl poweroff --no-block
    exit 0
}
echo "SOCI-NETBOOT-MARKER: userland up, uptime $(cut -d" " -f1 /proc/uptime) s"
check "PID 1 is the image's systemd" sh -c '[ "$(readlink /proc/1/exe)" = /usr/lib/systemd/systemd ]'
check "/ is an overlay" sh -c '[ "$(findmnt -n -o FSTYPE /)" = overlay ]'
check "its lower layer is the squashfs on /dev/nbd0" sh -c \
    '[ "$(findmnt -n -o SOURCE,FSTYPE /run/soci-nbd/lower | tr -s " ")" = "/dev/nbd0 squashfs" ]'
check "the app layer's file reads right" grep -q '^netboot app layer ' /etc/netboot-test.txt
check "/ is writable (the tmpfs upper layer)" sh -c 'echo x > /var/tmp/w && [ "$(cat /var/tmp/w)" = x ]'
check "the system reached multi-user.target" systemctl is-active -q multi-user.target
if grep -q soci_test=local /proc/cmdline; then
    check "local: nbdkit soci runs in the machine, marked for systemd (@)" \
        has_proc "^@nbdkit .*nbdkit-soci-plugin.so image=10.0.2.100:"
    check "local: a file not read before reads right" blob_reads_right
    finish
fi
check "the supervisor of the root device runs, marked for systemd (@)" \
    has_proc "^@oci-nbd-attach .*supervise -m "
if grep -q soci_test=tls /proc/cmdline; then
    check "TLS: the supervisor has the key" \
        has_proc "^@oci-nbd-attach --tls-psk [^ ]* supervise -m "
    check "TLS: the carrier of the root's link runs, marked for systemd (@)" \
        has_proc "^@oci-nbd-attach --tls-psk [^ ]* attach -r -m "
    check "TLS: a file not read before reads right" blob_reads_right
    finish
fi

# The server restarts under the running root.  Asking for this export tells
# the host to kill the server at once (and start it again 3 s later); a
# second later, with the page cache dropped, a file that was never read is
# read: the kernel holds the root's reads while the link is dead, until the
# supervisor has reattached the device.  (The guest cannot watch for the
# gap itself: every program it would run to look is read from the root.)
P=/usr/local/sbin/nbd-probe S=10.0.2.100:10809
$P connect $S netboot-restart-server > /dev/null 2>&1
sleep 1
sync; echo 3 > /proc/sys/vm/drop_caches
t=$(date +%s)
check "after the restart, a file not read before reads right" blob_reads_right
echo "SOCI-TEST-RESULT: # that read took $(($(date +%s) - t)) s (the server came back after 3 s)"
check "... and the server is back" $P connect $S flat
finish
SH
sed -i "s/@BLOBSUM@/$BLOBSUM/g" "$APP/usr/local/sbin/soci-marker"
chmod 755 "$APP/usr/local/sbin/soci-marker"
tar -C "$APP" --sort=name --numeric-owner --owner=0 --group=0 \
    --mtime=@1700000000 -cf - ./etc ./opt ./usr | gzip -n
