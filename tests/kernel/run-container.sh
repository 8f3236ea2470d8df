#!/bin/bash
# soci-nbd tests: examples/run-container end to end, in the QEMU (TCG)
# guest of tests/kernel/qemu/ (the host kernel has no nbd driver).
#
# The image is Debian: the debootstrap minbase layer plus a layer with
# Debian's python3 (bench/mklayer.sh, cached), pushed to a real
# docker-registry and given a v2 SOCI index by `soci-nbd convert`.  The
# guest runs soci-nbd, nbdkit, the plugin, crun and bash (copied in with
# their libraries) and reaches the registry through a guestfwd pipe.
# examples/run-container mounts the image with `soci-nbd mount --rw` and
# runs python3 in it with crun: the JSON line the container prints shows
# the image's interpreter ran, as pid 1 of its own pid namespace, with the
# example's hostname, that the write it made landed in the writable layer
# and a file of the python layer was read; its exit status comes back;
# afterwards no mount, device or process is left.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

require_tools qemu-system-x86_64 socat cpio busybox nbdkit python3 timeout skopeo crun bash
SN=$SOCI_NBD
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
IMGPY="python3 $top_srcdir/tests/helpers/plugin-image.py"
RUN=$top_srcdir/tests/kernel/qemu/run.sh
[ -f "$PLUGIN" ] || { echo "Bail out! $PLUGIN not built"; exit 1; }

RPID=
cleanup() {
    if [ -n "$RPID" ]; then
        kill "$RPID" 2>/dev/null
        wait "$RPID" 2>/dev/null
    fi
    srv_cleanup
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

check "the example's --help" bash -c "'$top_srcdir/examples/run-container' --help | grep -q 'crun or runc'"
check_fails "the example needs a command" "no command given" \
    "$top_srcdir/examples/run-container" some/image --

# ---- the image ------------------------------------------------------------
base=$("$top_srcdir/bench/mklayer.sh" minbase) &&
py=$("$top_srcdir/bench/mklayer.sh" python) ||
    { echo "Bail out! bench/mklayer.sh failed (debootstrap / apt-get download)"; exit 1; }
reg_start R || { echo "Bail out! registry did not start"; exit 1; }
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$TMP/policy.json"
$IMGPY layout "$TMP/oci" py "$base" "$py" > /dev/null &&
skopeo --policy "$TMP/policy.json" copy -q --dest-tls-verify=false \
    "oci:$TMP/oci:py" "docker://$R_HOST/test/py:1" ||
    { echo "Bail out! push failed"; exit 1; }
check "convert: a v2 SOCI index for the image" \
    "$SN" convert -q -s 1M "$R_HOST/test/py:1" "$R_HOST/test/py:soci"
# What the container must print: the python layer's version, computed here.
pyver=$(tar -tzf "$py" | sed -n 's|^\./usr/bin/python\(3\.[0-9]*\)$|\1|p' | head -1)
[ -n "$pyver" ] || { echo "Bail out! no python3.N in the python layer"; exit 1; }
want="{\"python\": \"$pyver\", \"pid\": 1, \"host\": \"soci-nbd\", \"wrote\": true, \"json_mod\": true}"

# ---- the guest ------------------------------------------------------------
NBDKIT=$(command -v nbdkit)
BINS=(-b "$SN=/usr/bin/soci-nbd" -b "$NBDKIT=/usr/bin/nbdkit"
      -b "$PLUGIN=/usr/lib/soci-nbd/nbdkit-soci-plugin.so"
      -b "$(command -v crun)=/usr/bin/crun" -b "$(command -v bash)=/bin/bash"
      -f "$top_srcdir/examples/run-container=/usr/bin/run-container")
guest_nbdkit_asan "$PLUGIN"
REG=10.0.2.100:$R_PORT
cat > "$TMP/guest.sh" <<EOF
. /lib/soci-test.sh
export SOCI_NBD_PLUGIN=/usr/lib/soci-nbd/nbdkit-soci-plugin.so
REG=$REG
check "run-container without a cgroup hierarchy: a clear error, nothing mounted" sh -c '
    ! run-container $REG/test/py:soci true 2> /tmp/e; cat /tmp/e;
    grep -q "no cgroup hierarchy at /sys/fs/cgroup" /tmp/e && test -z "\$(soci-nbd mounts)"'
# As on any systemd machine: the cgroup2 hierarchy at /sys/fs/cgroup.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
check "run-container: python3 from the image, in crun" sh -c '
    run-container --plain-http $REG $NBDKIT_OPT $REG/test/py:soci -- \\
        python3 -c "
import json, os, socket, sys
open(\"/root/written\", \"w\").write(\"x\")
print(json.dumps({\"python\": \"%d.%d\" % sys.version_info[:2], \"pid\": os.getpid(),
                  \"host\": socket.gethostname(), \"wrote\": os.path.exists(\"/root/written\"),
                  \"json_mod\": json.__file__.startswith(\"/usr/lib/python3\")}))
" > /tmp/out.txt 2> /tmp/err.txt; rc=\$?
    cat /tmp/out.txt /tmp/err.txt; test \$rc = 0'
cp /tmp/out.txt \$OUT/out.txt
cp /tmp/err.txt \$OUT/err.txt
check "run-container: the command's exit status comes back" sh -c '
    run-container --plain-http $REG $NBDKIT_OPT $REG/test/py:soci -- sh -c "exit 7"; test \$? = 7'
check "nothing left: no soci-nbd mounts, squashfs or overlay" sh -c '
    test -z "\$(soci-nbd mounts)" && ! grep -E " (squashfs|overlay) " /proc/mounts'
check "nothing left: every nbd device disconnected" sh -c '
    for d in /sys/block/nbd*; do test "\$(cat \$d/size)" = 0 || { echo \$d; exit 1; }; done'
check "nothing left: no nbdkit, supervisor or container process" \
    no_procs nbdkit soci-nbd-sup python3 crun
exit \$SOCI_FAILED
EOF

t0=$(date +%s)
"$RUN" -p "$R_PORT" -m 1536 "${BINS[@]}" -O "$TMP/out" -l "$TMP/console.txt" -t 400 \
    "$TMP/guest.sh" > "$TMP/res.txt" 2> "$TMP/run.err" &
RPID=$!
guest_wait "$t0"
guest_results "$TMP/res.txt"
check "the guest ran to its end" test "$st" -le 1
[ "$st" -gt 1 ] && tail -30 "$TMP/console.txt" | sed 's/^/# console: /'
check "the container printed the expected line" \
    bash -c "sed 's/^/# got: /' '$TMP/out/out.txt' >&2; grep -qxF '$want' '$TMP/out/out.txt'"
finish
