#!/bin/bash
# soci-nbd tests: a container started through containerd with
# soci-nbd-snapshotter, its layers served lazily from NBD devices
# (docs/snapshotter.md), in the QEMU (TCG) guest of tests/kernel/qemu/ (the
# host kernel has no nbd driver).
#
# The image is Debian: the debootstrap minbase layer plus a layer with
# Debian's python3 (bench/mklayer.sh, cached), pushed to a real
# docker-registry and converted by `soci-nbd convert` (SOCI index v2 and
# dense index).  The guest runs Debian's containerd 1.6 with its CRI plugin
# (snapshot annotations on) and the daemon as a proxy plugin, crun as the
# runtime (installed as runc; --no-pivot: the guest's / is an initramfs),
# and reaches the registries through guestfwd pipes.  The registry needs a
# password, and a mirror of it (a copy, with the same password) is named
# in containerd's hosts.toml (CRI's config_path), which the daemon reads
# too; the guest has no docker config:
#  - CRI PullImage with the password (`soci-nbd-snapshotter rpull`, as
#    the kubelet asks), through the daemon's CRI image-service proxy, pulls
#    the image: both layers are remote snapshots (mounted lazily, with the
#    pull's credentials, from the mirror), none is downloaded whole; the
#    password is in no log, its file is root's alone;
#  - `ctr run --snapshotter soci-nbd` runs python3 from the image;
#  - the daemon is restarted while a container runs; the container goes on
#    reading files of the image and prints;
#  - a second image with the same base layer reuses its snapshot and
#    device; its own small layer, which has no index, is unpacked by
#    containerd (soci-nbd mount --lazy-only refuses it);
#  - containerd's own commands remove everything: no snapshot, mount,
#    device or server is left.
# The host then reads the registries' logs: the layer bytes fetched from
# the mirror are a fraction of the layers, and none came from the registry.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

require_tools qemu-system-x86_64 socat cpio busybox nbdkit python3 timeout skopeo crun \
    containerd ctr containerd-shim-runc-v2
SN=$SOCI_NBD
PLUGIN=$top_builddir/plugin/.libs/nbdkit-soci-plugin.so
SNAPD=$top_builddir/soci-nbd-snapshotter
SNAPC=$top_builddir/tests/helpers/snap-client
OCIPY="python3 $top_srcdir/tests/helpers/oci-layout.py"
RUN=$top_srcdir/tests/kernel/qemu/run.sh
for f in "$PLUGIN" "$SNAPD" "$SNAPC"; do
    [ -f "$f" ] || { echo "Bail out! $f not built"; exit 1; }
done

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

# ---- the image ------------------------------------------------------------
base=$("$top_srcdir/bench/mklayer.sh" minbase) &&
py=$("$top_srcdir/bench/mklayer.sh" python) ||
    { echo "Bail out! bench/mklayer.sh failed (debootstrap / apt-get download)"; exit 1; }
RUSER=ctduser
RPASS=pw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
reg_start R --htpasswd "$RUSER" "$RPASS" ||
    { echo "Bail out! registry did not start"; exit 1; }
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$TMP/policy.json"
$OCIPY layout "$TMP/oci" py "$base" "$py" &&
skopeo --policy "$TMP/policy.json" copy -q --dest-tls-verify=false \
    --dest-creds "$RUSER:$RPASS" "oci:$TMP/oci:py" "docker://$R_HOST/test/py:1" ||
    { echo "Bail out! push failed"; exit 1; }
convert() { echo "$RPASS" | "$SN" convert -q -u "$RUSER" --password-stdin "$@"; }
check "convert: SOCI and dense indexes for the image" \
    convert --min-layer-size 0 "$R_HOST/test/py:1" "$R_HOST/test/py:soci"
# A second image: the same base layer and a small one of its own, which
# convert leaves without an index (under --min-layer-size).
mkdir -p "$TMP/l2/etc"
echo "hello from the second image" > "$TMP/l2/etc/second"
tar -C "$TMP/l2" -cf - etc | gzip -n > "$TMP/second.tar.gz"
$OCIPY layout "$TMP/oci2" py2 "$base" "$TMP/second.tar.gz" &&
skopeo copy -q --dest-tls-verify=false --dest-creds "$RUSER:$RPASS" \
    "oci:$TMP/oci2:py2" "docker://$R_HOST/test/py2:1" ||
    { echo "Bail out! push of the second image failed"; exit 1; }
check "convert the second image (its small layer gets no index)" \
    convert "$R_HOST/test/py2:1" "$R_HOST/test/py2:soci"
# The mirror: a copy of the registry's storage, with the same password.
mkdir -p "$REG_BASE/M/data" && cp -a "$R_ROOT/." "$REG_BASE/M/data/" &&
reg_start M --htpasswd "$RUSER" "$RPASS" ||
    { echo "Bail out! the mirror did not start"; exit 1; }
LAYERS=$(skopeo inspect --tls-verify=false --creds "$RUSER:$RPASS" --raw "docker://$R_HOST/test/py:1" |
    python3 -c 'import json,sys; print(" ".join(l["digest"] + "=" + str(l["size"]) for l in json.load(sys.stdin)["layers"]))')
pyver=$(tar -tzf "$py" | sed -n 's|^\./usr/bin/python\(3\.[0-9]*\)$|\1|p' | head -1)
[ -n "$pyver" ] || { echo "Bail out! no python3.N in the python layer"; exit 1; }

# ---- the guest ------------------------------------------------------------
NBDKIT=$(command -v nbdkit)
BINS=(-b "$SN=/usr/bin/soci-nbd" -b "$NBDKIT=/usr/bin/nbdkit"
      -b "$PLUGIN=/usr/lib/soci-nbd/nbdkit-soci-plugin.so"
      -b "$SNAPD=/usr/bin/soci-nbd-snapshotter"
      -b "$SNAPC=/usr/bin/snap-client"
      -b "$(command -v containerd)=/usr/bin/containerd" -b "$(command -v ctr)=/usr/bin/ctr"
      -b "$(command -v containerd-shim-runc-v2)=/usr/bin/containerd-shim-runc-v2"
      -b "$(command -v crun)=/usr/bin/runc")   # crun, as the shim's runc
guest_nbdkit_asan "$PLUGIN"
# (An ASan build: soci-nbd mount runs nbdkit through the preloading wrapper.)
MOUNT_NBDKIT=${NBDKIT_OPT:+--mount-arg=--nbdkit --mount-arg=${NBDKIT_OPT#--nbdkit }}
REG=10.0.2.100:$R_PORT
MIRROR=10.0.2.100:$M_PORT
IMG=$REG/test/py:soci
cat > "$TMP/guest.sh" <<EOF
. /lib/soci-test.sh
export SOCI_NBD_PLUGIN=/usr/lib/soci-nbd/nbdkit-soci-plugin.so
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
REG=$REG IMG=$IMG IMG2=$REG/test/py2:soci RUSER=$RUSER RPASS=$RPASS
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /var/lib/ctd /run/ctd /etc/containerd /var/lib/snap \
    /etc/containerd/certs.d/\$REG
# containerd's hosts directory: the registry over plain HTTP, its mirror
# first.  containerd and the daemon both read it.
cat > /etc/containerd/certs.d/\$REG/hosts.toml <<TOML
server = "http://$REG"

[host."http://$MIRROR"]
  capabilities = ["pull", "resolve"]
TOML
cat > /etc/containerd/config.toml <<CFG
version = 2
root = "/var/lib/ctd"
state = "/run/ctd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "/run/ctd/ctd.sock"
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "soci-nbd"
  disable_snapshot_annotations = false
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
[proxy_plugins.soci-nbd]
  type = "snapshot"
  address = "/run/snap.sock"
CFG
snap_start() {
    soci-nbd-snapshotter -r /var/lib/snap -a /run/snap.sock --state /run/snap-state \\
        --cri-address /run/snap-cri.sock --cri-upstream /run/ctd/ctd.sock \\
        $MOUNT_NBDKIT >> /tmp/snap.log 2>&1 &
    SNAPPID=\$!
    for i in \$(seq 100); do test -S /run/snap.sock && return 0; sleep 0.1; done
    return 1
}
check "the snapshotter starts" snap_start
containerd --config /etc/containerd/config.toml > /tmp/containerd.log 2>&1 &
CTR="ctr -a /run/ctd/ctd.sock -n k8s.io"
c_containerd() {
    for i in \$(seq 300); do \$CTR version > /dev/null 2>&1 && break; sleep 0.1; done
    \$CTR plugins ls | grep -q "snapshotter.v1 *soci-nbd .* ok"
}
check "containerd starts, with CRI and the snapshotter" c_containerd
c_nocreds() {
    ! soci-nbd-snapshotter rpull --cri-address /run/snap-cri.sock \$IMG 2> /tmp/nocreds
    cat /tmp/nocreds
    grep -q "401\\|nauthorized" /tmp/nocreds
}
check "rpull (CRI PullImage) without the password, through the daemon's proxy: refused by the registry" c_nocreds
c_pull() {
    echo "\$RPASS" | soci-nbd-snapshotter rpull --cri-address /run/snap-cri.sock \\
        -u \$RUSER --password-stdin \$IMG; rc=\$?; tail -5 /tmp/snap.log; test \$rc = 0
}
check "rpull with the password (CRI PullImage through the daemon's proxy): the image pulled through the snapshotter" c_pull
c_remote() {
    snap-client /run/snap.sock list > /tmp/l; cat /tmp/l; soci-nbd mounts
    test \$(grep -c "io.soci-nbd.snapshot.remote-layer=" /tmp/l) = 2 &&
        test \$(soci-nbd mounts | grep -c "	layer	") = 2
}
check "both layers are remote snapshots, mounted lazily with the pull's credentials (none downloaded)" c_remote
c_secret() {
    ls -l /run/snap-state/auth
    test "\$(stat -c %a /run/snap-state/auth)" = 700 &&
        test "\$(stat -c %a /run/snap-state/auth/*.json | sort -u)" = 600 &&
        test "\$(ls /run/snap-state/auth | wc -l)" = 2 &&
        # (a pattern file: grep's own command line holds no password)
        printf '%s\\n' "\$RPASS" > /tmp/pw &&
        # (-xdev: the layers' own mounts under these directories stay unread)
        ! find /tmp/snap.log /run/soci-nbd /var/lib/snap -xdev -type f \\
            -exec cat {} + 2>/dev/null | grep -qFf /tmp/pw &&
        ! grep -qFf /tmp/pw /proc/[0-9]*/cmdline 2>/dev/null
}
check "the password: in a file per layer that only root reads, on the state tmpfs, in no log, command line or file of the root" c_secret
c_run() {
    \$CTR run --rm --snapshotter soci-nbd --no-pivot \$IMG c1 \\
        python3 -c 'import sys; print("python %d.%d" % sys.version_info[:2])' > /tmp/out1 2>&1
    cat /tmp/out1; grep -qx "python $pyver" /tmp/out1
}
check "ctr run: python3 from the image" c_run
cp /tmp/out1 \$OUT/out1.txt
c_restart() {
    \$CTR run --rm --snapshotter soci-nbd --no-pivot \$IMG c2 \\
        python3 -c '
import time; time.sleep(6)
import email.mime.text, http.client, xml.dom.minidom
print("read after the restart")' > /tmp/out2 2>&1 &
    cpid=\$!
    # Once it runs (its rootfs prepared and mounted), the daemon goes.
    for i in \$(seq 300); do
        \$CTR task ls 2>/dev/null | grep -q "^c2 .*RUNNING" && break; sleep 0.1
    done
    kill \$SNAPPID; wait \$SNAPPID; snap_start || return 1
    wait \$cpid; rc=\$?; cat /tmp/out2
    test \$rc = 0 && grep -qx "read after the restart" /tmp/out2
}
check "a container runs while the snapshotter restarts, and goes on reading the image" c_restart
c_second() {
    # (this time the credentials of a docker config.json)
    printf '{"auths":{"%s":{"auth":"%s"}}}' \$REG \$(printf %s "\$RUSER:\$RPASS" | base64) \\
        > /tmp/docker-config.json
    soci-nbd-snapshotter rpull -q --cri-address /run/snap-cri.sock \\
        --auth-file /tmp/docker-config.json \$IMG2 || return 1
    snap-client /run/snap.sock list > /tmp/l2; soci-nbd mounts; grep "has no index" /tmp/snap.log
    test \$(grep -c " committed " /tmp/l2) = 3 &&
        test \$(grep -c "io.soci-nbd.snapshot.remote-layer=" /tmp/l2) = 2 &&
        test \$(soci-nbd mounts | grep -c "	layer	") = 2 &&
        grep -q "not served lazily, containerd unpacks it: .*has no index" /tmp/snap.log &&
        \$CTR run --rm --snapshotter soci-nbd --no-pivot \$IMG2 c3 cat /etc/second > /tmp/out3 &&
        grep -qx "hello from the second image" /tmp/out3
}
check "a second image (rpull with a docker config) with the same base layer reuses its snapshot and device; its unindexed layer is unpacked" c_second
c_rm() {
    \$CTR images rm --sync \$(\$CTR images ls -q) > /dev/null
    for i in \$(seq 50); do test -z "\$(snap-client /run/snap.sock list)" && break; sleep 0.2; done
    snap-client /run/snap.sock list; test -z "\$(snap-client /run/snap.sock list)"
}
check "containerd removes the image: no snapshot left" c_rm
c_nomount() {
    test -z "\$(soci-nbd mounts)" && ! grep -q " squashfs " /proc/mounts &&
        for d in /sys/block/nbd*; do test "\$(cat \$d/size)" = 0 || { echo \$d; return 1; }; done
}
check "nothing left: no soci-nbd mount, squashfs or device" c_nomount
check "nothing left: no credentials file" test -z "\$(ls /run/snap-state/auth)"
check "nothing left: no nbdkit or supervisor" no_procs nbdkit soci-nbd-sup
cp /tmp/snap.log /tmp/containerd.log \$OUT/ 2>/dev/null
exit \$SOCI_FAILED
EOF

# What the registry sends from here on is the guest's (convert read the
# layers whole above).
LOG0=$(wc -l < "$M_LOG")
RLOG0=$(wc -l < "$R_LOG")
t0=$(date +%s)
"$RUN" -p "$R_PORT" -p "$M_PORT" -m 2048 "${BINS[@]}" -O "$TMP/out" -l "$TMP/console.txt" -t 600 \
    "$TMP/guest.sh" > "$TMP/res.txt" 2> "$TMP/run.err" &
RPID=$!
guest_wait "$t0"
guest_results "$TMP/res.txt"
check "the guest ran to its end" test "$st" -le 1
[ "$st" -gt 1 ] && tail -30 "$TMP/console.txt" | sed 's/^/# console: /'
[ "$st" -gt 0 ] && [ -f "$TMP/out/snap.log" ] && tail -20 "$TMP/out/snap.log" | sed 's/^/# snap.log: /'
# The layer bytes the mirror sent (its access log: status 200 or 206 and
# the response size, for the layer blobs) against the layers' sizes.
check "the mirror sent a fraction of the layers (lazy), never a whole layer" \
    python3 - "$M_LOG" "$LOG0" $LAYERS <<'PY'
import re, sys
log, skip = sys.argv[1], int(sys.argv[2])
layers = dict(a.split("=") for a in sys.argv[3:])
sent = {d: 0 for d in layers}
whole = []
for line in open(log, errors="replace").readlines()[skip:]:
    m = re.search(r'"GET /v2/[^ ]*/blobs/(sha256:[0-9a-f]{64})(?:\?[^ ]*)? HTTP/[0-9.]+" (200|206) ([0-9]+)', line)
    if m and m.group(1) in sent:
        sent[m.group(1)] += int(m.group(3))
        if m.group(2) == "200":
            whole.append(m.group(1))
total, got = sum(int(v) for v in layers.values()), sum(sent.values())

with open(log + ".fraction", "w") as f:
    f.write("# layer bytes the guest fetched: %d of %d (%.1f%%)\n"
            % (got, total, 100.0 * got / total))
assert not whole, whole
assert 0 < got < total // 2, (got, total)
PY
cat "$M_LOG.fraction" 2>/dev/null
check "the registry itself sent no blob: the guest used the mirror of hosts.toml" \
    bash -c "! tail -n +$((RLOG0 + 1)) '$R_LOG' | grep -q 'GET /v2/[^ ]*/blobs/'"
finish
