#!/bin/bash
# soci-nbd tests: soci-nbd-snapshotter, containerd's proxy snapshotter
# (docs/snapshotter.md), against Debian's containerd 1.6 and a real
# registry.
#  1. straight over gRPC (tests/helpers/snap-client): the mounts of active
#     snapshots and views (bind, overlayfs over the parent chain), commit,
#     labels, usage, and the codes containerd's errdefs expects for an
#     unknown key, a parent that does not exist, a taken key, the wrong
#     kind, a removed snapshot;
#  2. the daemon restarted keeps its snapshots; a corrupt metadata file
#     stops it with one line instead of being replaced;
#  3. containerd with the daemon as a proxy plugin: ctr's snapshot commands
#     go through it; an image pulled with --snapshotter soci-nbd is
#     unpacked into its snapshots, mounts with the tree containerd's own
#     overlayfs snapshotter gives (containerd applies the layers; its
#     tree differs from `umoci unpack` for a hard link into a lower layer
#     and trusted.* xattrs), still mounts after the daemon is restarted
#     under containerd,
#     and removing the image (containerd's garbage collection) removes
#     every snapshot and directory.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/registry/lib.sh"

SNAP=$top_builddir/soci-nbd-snapshotter
CLIENT=$top_builddir/tests/helpers/snap-client
TREE="python3 $top_srcdir/tests/helpers/mkfs-tree.py"
OCIPY="python3 $top_srcdir/tests/helpers/oci-layout.py"

if [ "$(id -u)" -ne 0 ]; then
    echo "Bail out! tests/snapshotter/containerd.sh must run as root (containerd, mounts)"
    exit 1
fi
require_tools containerd ctr skopeo
for f in "$SNAP" "$CLIENT"; do
    [ -x "$f" ] || { echo "Bail out! $f not built"; exit 1; }
done
SOCK=$TMP/snap.sock CTD=$TMP/ctd
SNAP_PID="" CTD_PID=""
cleanup() {
    [ -n "$CTD_PID" ] && kill "$CTD_PID" 2>/dev/null
    [ -n "$SNAP_PID" ] && kill "$SNAP_PID" 2>/dev/null
    for m in $(awk -v t="$TMP" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null
    done
    sleep 0.5
    srv_cleanup
}
trap cleanup EXIT

snap_start() {
    "$SNAP" --root "$TMP/snap" --address "$SOCK" --state "$TMP/state" >> "$TMP/snap.log" 2>&1 &
    SNAP_PID=$!
    for _ in $(seq 100); do
        [ -S "$SOCK" ] && return 0
        _reg_running "$SNAP_PID" || return 1
        sleep 0.05
    done
    return 1
}
snap_stop() {  # SIGTERM, then its exit status must be 0
    local st
    kill -TERM "$SNAP_PID" && wait "$SNAP_PID"
    st=$?
    SNAP_PID=""
    [ "$st" = 0 ] && [ ! -e "$SOCK" ]
}
C() { "$CLIENT" "$SOCK" "$@"; }
# is WANT OP ARGS...: the client's output (stdout, or stderr on failure),
# with $TMP shown as T, is WANT.
is() {
    local want=$1 got; shift
    got=$(C "$@" 2>&1 | sed "s|$TMP|T|g")
    [ "$got" = "$want" ] || { echo "got:  $got"; echo "want: $want"; return 1; }
}

# ---- 1. the gRPC service ------------------------------------------------------
check "the daemon starts on its socket" snap_start
check "prepare a: its directory, bind rw" is "bind T/snap/snapshots/1/fs rw,rbind" prepare a
echo hello > "$TMP/snap/snapshots/1/fs/file"
check "commit a as A, with a label" C commit A a x=1
check "stat A: committed, its label" is "A committed - x=1" stat A
check "usage of A: its blocks, two inodes" bash -c "
    u=\$('$CLIENT' '$SOCK' usage A) && [ \"\${u#* }\" = 2 ] && [ \"\${u% *}\" -ge 4096 ]"
check "prepare b on A: overlayfs, b upper, A lower" \
    is "overlay overlay index=off,workdir=T/snap/snapshots/2/work,upperdir=T/snap/snapshots/2/fs,lowerdir=T/snap/snapshots/1/fs" prepare b A
check "view v of A: A's directory, bind ro" is "bind T/snap/snapshots/1/fs ro,rbind" view v A
check "update A's labels (labels.y)" is "A committed - x=1 y=2" update A labels.y -- y=2
check "list: every snapshot" is "A committed - x=1 y=2
b active A
v view A" list
check "stat of an unknown key: NOT_FOUND" \
    is "NOT_FOUND: snapshot zz does not exist" stat zz
check "a parent that does not exist: NOT_FOUND" \
    is "NOT_FOUND: parent snapshot nope of c does not exist" prepare c nope
check "a key that is taken: ALREADY_EXISTS" \
    is "ALREADY_EXISTS: snapshot b: already exists" prepare b A
check "a parent that is not committed: INVALID_ARGUMENT" \
    is "INVALID_ARGUMENT: parent snapshot b of c is not committed" prepare c b
check "commit of a view: FAILED_PRECONDITION" \
    is "FAILED_PRECONDITION: snapshot v is not active: only an active snapshot is committed" commit V v
check "remove of a parent: FAILED_PRECONDITION" \
    is "FAILED_PRECONDITION: cannot remove snapshot A: snapshot b has it as parent" remove A
check "mounts of a committed snapshot: FAILED_PRECONDITION" \
    is "FAILED_PRECONDITION: snapshot A is committed: it has no mounts (view it)" mounts A
check "update of the parent: INVALID_ARGUMENT" \
    is "INVALID_ARGUMENT: cannot update parent of snapshot A: only labels change" update A parent --
check "an empty key: INVALID_ARGUMENT" is "INVALID_ARGUMENT: an empty snapshot key" prepare ""
check "remove b and v, then A" bash -c "'$CLIENT' '$SOCK' remove b && '$CLIENT' '$SOCK' remove v &&
    '$CLIENT' '$SOCK' remove A && [ -z \"\$(ls '$TMP/snap/snapshots')\" ]"
check "mounts of a removed snapshot: NOT_FOUND" \
    is "NOT_FOUND: snapshot b does not exist" mounts b
check "nothing left to list" is "" list

# ---- 2. restarts ------------------------------------------------------------------
C prepare p > /dev/null && C commit P p l=v
check "SIGTERM stops the daemon (status 0, socket removed)" snap_stop
check "restarted" snap_start
check "... P, committed, with its label" is "P committed - l=v" list
check "... and its tree" test -d "$TMP/snap/snapshots/4/fs"
check "stopped again" snap_stop
cp "$TMP/snap/metadata.json" "$TMP/meta.good"
echo '{"version": 1, "next_id": 2, "snapshots": [{"name": "P"}]}' > "$TMP/snap/metadata.json"
check_fails "a corrupt metadata file: refused, in one line" \
    "soci-nbd-snapshotter: $TMP/snap/metadata.json: snapshot 0: a field is missing or malformed" \
    "$SNAP" --root "$TMP/snap" --address "$SOCK"
check "... and left as it was" grep -q '"name": "P"}' "$TMP/snap/metadata.json"
cp "$TMP/meta.good" "$TMP/snap/metadata.json"
check "started again" snap_start
check "remove P" C remove P

# ---- 3. containerd ------------------------------------------------------------------
reg_start R || { echo "Bail out! registry did not start"; exit 1; }
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$TMP/policy.json"
mkdir -p "$TMP/gen"
$TREE gen "$TMP/gen" > /dev/null
for l in L1 L2 L3; do $OCIPY strip "$TMP/gen/$l.tar" "$TMP/$l.tar"; gzip -n "$TMP/$l.tar"; done
$OCIPY layout "$TMP/lay" img "$TMP/L1.tar.gz" "$TMP/L2.tar.gz" "$TMP/L3.tar.gz"
check "skopeo pushes it" skopeo --policy "$TMP/policy.json" copy -q --dest-tls-verify=false \
    "oci:$TMP/lay:img" "docker://$R_HOST/test/img:v1"

mkdir -p "$CTD"
cat > "$CTD/config.toml" <<EOF
version = 2
root = "$CTD/root"
state = "$CTD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$CTD/ctd.sock"
[ttrpc]
  address = "$CTD/ctd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTD/opt"
[proxy_plugins.soci-nbd]
  type = "snapshot"
  address = "$SOCK"
EOF
containerd --config "$CTD/config.toml" > "$CTD/containerd.log" 2>&1 &
CTD_PID=$!
CTR="ctr -a $CTD/ctd.sock"
SN="$CTR snapshots --snapshotter soci-nbd"
check "containerd starts with the proxy plugin" bash -c "
    for i in \$(seq 100); do $CTR version > /dev/null 2>&1 && break; sleep 0.1; done
    $CTR plugins ls | grep -q 'io.containerd.snapshotter.v1 *soci-nbd .* ok'"
check "ctr snapshots prepare and commit go through the daemon" bash -c "
    $SN prepare k1 > /dev/null && $SN commit c1 k1 &&
    '$CLIENT' '$SOCK' list | grep -q 'c1 committed'"
check "ctr snapshots rm of an unknown key: not found" bash -c "
    ! $SN rm nope 2> '$TMP/e' && grep -q 'not found' '$TMP/e'"
check "ctr snapshots rm c1" $SN rm c1
IMG=$R_HOST/test/img:v1
check "ctr images pull --snapshotter soci-nbd: unpacked into its snapshots" \
    $CTR images pull --plain-http --snapshotter soci-nbd "$IMG"
check "... three committed layers, chained" bash -c "
    '$CLIENT' '$SOCK' list > '$TMP/l' && [ \$(grep -c ' committed ' '$TMP/l') = 3 ] &&
    [ \$(grep -c ' committed -\$' '$TMP/l') = 1 ] || { cat '$TMP/l'; exit 1; }"
# containerd makes the directory .wh..wh.plnk as it unpacks (its mtime is
# the unpack's): not compared.
NOPLNK="--no-mtime-of .wh..wh.plnk"
mount_tree() {  # SNAPSHOTTER OUT.json: the image mounted by ctr, scanned, unmounted
    mkdir -p "$TMP/mnt" &&
        $CTR images mount --snapshotter "$1" "$IMG" "$TMP/mnt" > /dev/null &&
        $TREE scan "$TMP/mnt" > "$2" &&
        $CTR images unmount --rm "$TMP/mnt" > /dev/null
}
check "the same image pulled with containerd's overlayfs snapshotter, mounted" bash -c "
    $(declare -f mount_tree); TMP='$TMP' CTR='$CTR' IMG='$IMG' TREE='$TREE'
    $CTR images pull --plain-http --snapshotter overlayfs '$IMG' > /dev/null &&
    mount_tree overlayfs '$TMP/ref.json'"
check "ctr images mount: the same tree (bytes, types, modes, owners, mtimes, links, xattrs)" bash -c "
    $(declare -f mount_tree); TMP='$TMP' CTR='$CTR' IMG='$IMG' TREE='$TREE'
    mount_tree soci-nbd '$TMP/m1.json' && $TREE cmp '$TMP/ref.json' '$TMP/m1.json' $NOPLNK"
check "the daemon restarted under containerd" bash -c "
    kill -TERM $SNAP_PID; while kill -0 $SNAP_PID 2>/dev/null; do sleep 0.1; done"
check "... started again" snap_start
check "... the image still mounts, the same tree" bash -c "
    $(declare -f mount_tree); TMP='$TMP' CTR='$CTR' IMG='$IMG' TREE='$TREE'
    mount_tree soci-nbd '$TMP/m2.json' && $TREE cmp '$TMP/ref.json' '$TMP/m2.json' $NOPLNK"
check "ctr images rm --sync: containerd's garbage collection removes every snapshot" bash -c "
    $CTR images rm --sync '$IMG' > /dev/null &&
    for i in \$(seq 50); do [ -z \"\$('$CLIENT' '$SOCK' list)\" ] && break; sleep 0.1; done
    [ -z \"\$('$CLIENT' '$SOCK' list)\" ] && [ -z \"\$(ls '$TMP/snap/snapshots')\" ]"
check "no mount left under the snapshot root" bash -c "! grep -q '$TMP/snap' /proc/mounts"
kill "$CTD_PID"; wait "$CTD_PID" 2>/dev/null; CTD_PID=""
check "the daemon stops cleanly" snap_stop

# ---- 4. CRI: the labels of remote snapshots --------------------------------------
# containerd's CRI plugin pulls as the kubelet asks (tests/helpers/cri-pull)
# and, with snapshot annotations on, gives each layer's Prepare the image,
# manifest and layer: the daemon then tries soci-nbd mount --layer (this
# host has no nbd driver: the layer is unpacked instead, and the log says
# which layer of which pinned image could not be; the QEMU guest of
# tests/kernel/kernel-mount.sh mounts them).
export SOCI_NBD_RUN_DIR=$TMP/run
# The registry by containerd's hosts directory (CRI's config_path), which
# the daemon reads too; kubelet's calls through the daemon's CRI proxy.
mkdir -p "$TMP/certs.d/$R_HOST"
printf 'server = "http://%s"\n' "$R_HOST" > "$TMP/certs.d/$R_HOST/hosts.toml"
CRISOCK=$TMP/cri.sock
snap_start_remote() {
    "$SNAP" --root "$TMP/snap" --address "$SOCK" --state "$TMP/state" --soci-nbd "$SOCI_NBD" \
        --config-path "$TMP/certs.d" --cri-address "$CRISOCK" \
        --cri-upstream "$CTD/ctd.sock" >> "$TMP/snap.log" 2>&1 &
    SNAP_PID=$!
    for _ in $(seq 100); do [ -S "$SOCK" ] && return 0; sleep 0.05; done
    return 1
}
check "the daemon, with remote snapshots by soci-nbd mount --layer" snap_start_remote
sed -e 's|disabled_plugins = \["io.containerd.grpc.v1.cri", |disabled_plugins = [|' \
    "$CTD/config.toml" > "$CTD/cri.toml"
cat >> "$CTD/cri.toml" <<EOF
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "soci-nbd"
  disable_snapshot_annotations = false
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "$CTD/cni/bin"
  conf_dir = "$CTD/cni/conf"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "$TMP/certs.d"
EOF
containerd --config "$CTD/cri.toml" > "$CTD/containerd-cri.log" 2>&1 &
CTD_PID=$!
check "containerd starts with CRI and the proxy plugin" bash -c "
    for i in \$(seq 100); do $CTR version > /dev/null 2>&1 && break; sleep 0.1; done
    $CTR plugins ls | grep -q 'io.containerd.grpc.v1 *cri .* ok'"
CRIPULL=$top_builddir/tests/helpers/cri-pull
check "rpull (CRI PullImage) of the image, through the daemon's CRI proxy" bash -c "
    '$SNAP' rpull --cri-address '$CRISOCK' '$IMG' > '$TMP/cri.ref' && grep -q '^sha256:' '$TMP/cri.ref'"
check "... ListImages through the proxy: containerd's answer, byte for byte" bash -c "
    '$CRIPULL' '$CRISOCK' --list > '$TMP/l1' && '$CRIPULL' '$CTD/ctd.sock' --list > '$TMP/l2' &&
    cat '$TMP/l1' && cmp '$TMP/l1' '$TMP/l2' && ! grep -q '^0 bytes' '$TMP/l1'"
MANDIG=$(skopeo inspect --tls-verify=false --raw "docker://$IMG" | sha256sum | cut -d' ' -f1)
check "... every layer's Prepare carried the image, its manifest digest and the layer (the daemon tried each)" \
    bash -c "grep 'not served lazily' '$TMP/snap.log' | tail -3 > '$TMP/tried'; cat '$TMP/tried';
    [ \$(grep -c 'layer sha256:[0-9a-f]* of $IMG@sha256:$MANDIG: not served lazily, containerd unpacks it: .*nbd' '$TMP/tried') = 3 ]"
check "... unpacked instead: the same tree" bash -c "
    $(declare -f mount_tree); TMP='$TMP' CTR='$CTR -n k8s.io' IMG='$IMG' TREE='$TREE'
    mount_tree soci-nbd '$TMP/m3.json' && $TREE cmp '$TMP/ref.json' '$TMP/m3.json' $NOPLNK"
check "ctr -n k8s.io images rm --sync (every name CRI gave it): no snapshot left" bash -c "
    $CTR -n k8s.io images rm --sync \$($CTR -n k8s.io images ls -q) > /dev/null &&
    for i in \$(seq 50); do [ -z \"\$('$CLIENT' '$SOCK' list)\" ] && break; sleep 0.1; done
    [ -z \"\$('$CLIENT' '$SOCK' list)\" ]"
kill "$CTD_PID"; wait "$CTD_PID" 2>/dev/null; CTD_PID=""
check_fails "rpull of an image the registry does not have: containerd's error, in one line" \
    "soci-nbd-snapshotter rpull: $R_HOST/test/none:v1: " \
    "$SNAP" rpull --cri-address "$CRISOCK" "$R_HOST/test/none:v1"
check_fails "rpull of something that is not a reference: refused before asking" \
    "soci-nbd-snapshotter rpull: a b: invalid image reference" "$SNAP" rpull "a b"
check "the proxy without containerd: a gRPC error, the daemon keeps serving" bash -c "
    ! '$CRIPULL' '$CRISOCK' --list 2> '$TMP/noup'; cat '$TMP/noup'
    grep -q '^14: ' '$TMP/noup' && '$CLIENT' '$SOCK' list > /dev/null"
check "the daemon stops cleanly" snap_stop
check "... and removes the proxy's socket" test ! -e "$CRISOCK"

finish
