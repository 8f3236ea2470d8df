#!/bin/bash
# soci-nbd tests: examples/boot-vm end to end.  A Debian 12 image (the
# debootstrap --variant=minbase layer of bench/mklayer.sh, made once and
# cached, plus a small app layer that adds a file and deletes /etc/motd
# with a whiteout) is pushed to a real docker-registry on 127.0.0.1,
# indexed with `soci-nbd convert`, and booted under QEMU TCG by
# examples/boot-vm with Debian's kernel: the initramfs mounts the flattened
# export (a virtio disk over nbd:unix:) with a tmpfs overlay as / and
# switch_roots to a command run by the image's own bash, which prints one
# result line computed with the image's own tools (dpkg-query, sha256sum).
# The host computes the same line from the layer tar and compares.  The
# stats-file shows that the boot fetched a small part of the image, span by
# span.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

require_tools qemu-system-x86_64 debootstrap busybox cpio nbdkit python3 \
    timeout apt-get dpkg-deb xz flock
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
[ -f "$PLUGIN" ] || { echo "Bail out! $PLUGIN not built"; exit 1; }
nbdkit_asan_wrapper "$PLUGIN"
BOOTVM=$top_srcdir/examples/boot-vm
T0=$(date +%s)

# ---- the image -------------------------------------------------------------
BASE=$("$top_srcdir/bench/mklayer.sh") || { echo "Bail out! bench/mklayer.sh (debootstrap) failed"; exit 1; }
echo "# Debian minbase layer: $BASE ($(stat -c %s "$BASE") bytes), ready after $(($(date +%s) - T0)) s"
mkdir -p "$TMP/app/etc" "$TMP/app/usr/sbin"
echo "boot-vm app layer $(sha "$BASE" | cut -c1-12)" > "$TMP/app/etc/boot-vm-test.txt"
: > "$TMP/app/etc/.wh.motd"
# An init for boot 2 (minbase has none); /sbin is a symlink to usr/sbin.
cat > "$TMP/app/usr/sbin/init" <<'EOF'
#!/bin/sh
. /etc/os-release
echo "BOOT-VM-INIT: pid=$$ id=$ID root=$(stat -f -c %T /)"
echo o > /proc/sysrq-trigger
sleep 60
EOF
chmod 755 "$TMP/app/usr" "$TMP/app/usr/sbin" "$TMP/app/usr/sbin/init"
tar -C "$TMP/app" --sort=name --numeric-owner --owner=0 --group=0 \
    --mtime=@1700000000 -cf - ./etc ./usr | gzip -n > "$TMP/app.tar.gz"

reg_start R || { echo "Bail out! registry did not start"; exit 1; }
python3 "$top_srcdir/tests/helpers/plugin-image.py" push "$R_URL" test/debian \
    "$BASE" "$TMP/app.tar.gz" > /dev/null || { echo "Bail out! push failed"; exit 1; }
check "soci-nbd convert indexes both layers" \
    "$SOCI_NBD" convert -q --min-layer-size 0 -s 1M --plain-http "$R_HOST" \
    "$R_HOST/test/debian:v1" "$R_HOST/test/debian:soci"
echo "# pushed and converted after $(($(date +%s) - T0)) s"

# What the guest must print, from the layer tar.
mkdir -p "$TMP/ref"
tar -xzf "$BASE" -C "$TMP/ref" ./etc/debian_version ./var/lib/dpkg/status ./usr/bin/bash ||
    { echo "Bail out! cannot read $BASE"; exit 1; }
WANT="BOOT-VM-RESULT: version=$(cat "$TMP/ref/etc/debian_version")"
WANT="$WANT pkgs=$(grep -c '^Package: ' "$TMP/ref/var/lib/dpkg/status")"
WANT="$WANT bash=$(sha "$TMP/ref/usr/bin/bash" | cut -c1-16)"
WANT="$WANT app=$(tr ' ' _ < "$TMP/app/etc/boot-vm-test.txt") motd=gone root=overlayfs rw=ok"
echo "# want: $WANT"

# ---- the boot ----------------------------------------------------------------
# Run by the image's bash after switch_root; exits 7 to show that boot-vm
# passes the command's status on.
GUEST='v=$(cat /etc/debian_version)
n=$(dpkg-query -W -f "\${Package}\n" | wc -l)
b=$(sha256sum /usr/bin/bash | cut -c1-16)
a=$(tr " " _ < /etc/boot-vm-test.txt)
if [ -e /etc/motd ]; then m=present; else m=gone; fi
r=$(stat -f -c %T /)
echo ok > /root/w && [ "$(cat /root/w)" = ok ] && w=ok || w=failed
echo "BOOT-VM-RESULT: version=$v pkgs=$n bash=$b app=$a motd=$m root=$r rw=$w"
exit 7'
STATS=$TMP/stats.json
T1=$(date +%s)
st=0
"$BOOTVM" --plugin "$PLUGIN" --plain-http "$R_HOST" --stats-file "$STATS" \
    --timeout 150 "$R_HOST/test/debian:soci" -- /bin/bash -c "$GUEST" \
    < /dev/null > "$TMP/console" 2> "$TMP/boot.err" || st=$?
echo "# boot-vm ran $(($(date +%s) - T1)) s, exit status $st"
tr -d '\r' < "$TMP/console" > "$TMP/console.txt"
GOT=$(grep -o 'BOOT-VM-RESULT: .*' "$TMP/console.txt" | head -1)
echo "# got:  $GOT"
check "the guest ran the image's bash after switch_root and printed the result" \
    bash -c '[ -n "$1" ] || { tail -25 "$2"; cat "$3"; exit 1; }' _ "$GOT" "$TMP/console.txt" "$TMP/boot.err"
check "the result (Debian version, dpkg database, bash, app layer, whiteout, overlay root, writable) matches the image" \
    bash -c '[ "$1" = "$2" ] || { echo "got:  $1"; echo "want: $2"; exit 1; }' _ "$GOT" "$WANT"
check "boot-vm exits with the command's status (7)" \
    bash -c '[ "$1" = 7 ] || { echo "status $1"; tail -5 "$2"; cat "$3"; exit 1; }' _ "$st" "$TMP/console.txt" "$TMP/boot.err"

# ---- laziness ----------------------------------------------------------------
IMGSIZE=$(( $(stat -c %s "$BASE") + $(stat -c %s "$TMP/app.tar.gz") ))
stats_ok() {
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$STATS" "$1" ||
        { grep -v '"exports"\|bytes_read' "$STATS" | cut -c1-200; return 1; }
}
check "stats: the v2 index was found, both layers served lazily" \
    stats_ok "s['index_source'] == 'v2' and [l['lazy'] for l in s['layers']] == [True, True] \
        and s['whole_layer_bytes_fetched'] == 0 and s['spans_failed'] == 0 \
        and s['spans_fetched'] == s['spans_verified'] > 0"
check "stats: the boot fetched less than a quarter of the image's $IMGSIZE bytes" \
    stats_ok "0 < s['bytes_fetched'] < $IMGSIZE / 4"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("# fetched %d of %d bytes (%.1f%%), %d of %d spans" % (s["bytes_fetched"], int(sys.argv[2]), 100.0 * s["bytes_fetched"] / int(sys.argv[2]), s["spans_fetched"], s["spans_total"]))' "$STATS" "$IMGSIZE" 2>/dev/null

# ---- boot 2: the image's own init -------------------------------------------
# /sbin/init of the app layer runs as PID 1 and powers the VM off.  The
# kernel hands the word "bootvmword" of its command line to the
# initramfs's /init as an argument: it must not be taken for a command.
T1=$(date +%s)
st=0
"$BOOTVM" --plugin "$PLUGIN" --plain-http "$R_HOST" --cache-dir "$TMP/cache" \
    --timeout 150 --append bootvmword "$R_HOST/test/debian:soci" \
    < /dev/null > "$TMP/console2" 2> "$TMP/boot2.err" || st=$?
echo "# boot 2 ran $(($(date +%s) - T1)) s, exit status $st"
check "without a command, the image's /sbin/init runs as PID 1 on the overlay root" \
    grep -q 'BOOT-VM-INIT: pid=1 id=debian root=overlayfs' "$TMP/console2"
check "when the image's init powers off, boot-vm exits 0" \
    bash -c '[ "$1" = 0 ] || { echo "status $1"; tail -5 "$2"; cat "$3"; exit 1; }' _ "$st" "$TMP/console2" "$TMP/boot2.err"

# ---- boot 3: a missing init ---------------------------------------------------
st=0
"$BOOTVM" --plugin "$PLUGIN" --plain-http "$R_HOST" --cache-dir "$TMP/cache" \
    --timeout 150 --init /sbin/no-such-init "$R_HOST/test/debian:soci" \
    < /dev/null > "$TMP/console3" 2> "$TMP/boot3.err" || st=$?
check "a missing init: the initramfs says so and boot-vm exits 125" \
    bash -c '[ "$1" = 125 ] && grep -q "boot-vm: the image has no /sbin/no-such-init" "$2" ||
             { echo "status $1"; tail -5 "$2"; cat "$3"; exit 1; }' _ "$st" "$TMP/console3" "$TMP/boot3.err"

# Nothing on boot-vm's stderr, where nbdkit's errors (and the sanitizers'
# reports, with an ASan build) would go.
check "no errors from boot-vm, nbdkit or the plugin on stderr" \
    bash -c 'for f; do [ -s "$f" ] && { head -20 "$f"; exit 1; }; done; exit 0' _ \
    "$TMP/boot.err" "$TMP/boot2.err"

# ---- the command line ----------------------------------------------------------
check "boot-vm --help" bash -c '"$1" --help | grep -q "^  boot-vm \[OPTIONS\] IMAGE"' _ "$BOOTVM"
check_fails "boot-vm without IMAGE is a usage error" "no IMAGE" "$BOOTVM"
check_fails "boot-vm IMAGE -- without a command is a usage error" "needs a COMMAND" "$BOOTVM" x --

echo "# total $(($(date +%s) - T0)) s"
finish
