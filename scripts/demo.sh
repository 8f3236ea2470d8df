#!/bin/bash
# soci-nbd demo, end to end on a fresh Debian 12 machine (as root):
#   1. install dependencies and build soci-nbd and the nbdkit plugin;
#   2. make a container image (a Debian minbase rootfs layer + an app
#      layer), push it to a local registry (Debian's docker-registry on
#      127.0.0.1);
#   3. soci-nbd convert: add a SOCI index (ztocs) to it, in the registry;
#   4. serve it with `nbdkit soci`, lazily, as a squashfs block device;
#      the host kernel mounts it (nbdfuse + loop device: this machine has
#      no nbd driver — on one that has, `nbd-client` + `mount` is the same);
#   5. read a few files, list the whole tree, and show how little of the
#      image was fetched.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it mounts a filesystem)" >&2; exit 1; }
./scripts/install-deps.sh
[ -x configure ] && [ -e build-aux/tap-driver.sh ] || ./autogen.sh > /dev/null
build=$top/_build/demo
mkdir -p "$build"
[ -f "$build/Makefile" ] || (cd "$build" && "$top/configure" > configure.out)
echo "== building"
make -C "$build" -j"$(nproc)" > "$build/build.out"
SN=$build/soci-nbd
PLUGIN=$build/plugin/.libs/nbdkit-soci-plugin.so

work=$(mktemp -d /tmp/soci-nbd-demo.XXXXXX)
pids=""
cleanup() {
    set +e
    mountpoint -q "$work/root" && umount "$work/root"
    mountpoint -q "$work/fuse" && umount "$work/fuse"
    for p in $pids; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

echo "== 1. an image: Debian 12 minbase rootfs (debootstrap, cached) + an app layer"
base=$(bench/mklayer.sh)
mkdir -p "$work/app/opt/app"
echo 'print("hello from a lazily mounted image")' > "$work/app/opt/app/hello.py"
tar -C "$work/app" --owner=0 --group=0 -czf "$work/app.tar.gz" opt
python3 tests/plugin-image.py layout "$work/oci" demo "$base" "$work/app.tar.gz" > /dev/null
du -b "$base" "$work/app.tar.gz" | awk '{printf "   layer %-40s %10d bytes\n", $2, $1}'

echo "== 2. a local registry on 127.0.0.1, and the image pushed with skopeo"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<EOC
version: 0.1
log: { level: warn }
storage: { filesystem: { rootdirectory: $work/registry }, delete: { enabled: true } }
http: { addr: 127.0.0.1:$port }
EOC
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 & pids="$pids $!"
for _ in $(seq 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v2/')" 2>/dev/null && break
    sleep 0.1
done
R=127.0.0.1:$port
skopeo copy -q --dest-tls-verify=false "oci:$work/oci:demo" "docker://$R/demo:latest"
echo "   pushed $R/demo:latest"

echo "== 3. soci-nbd convert: ztocs + SOCI index v2, pushed as $R/demo:soci"
"$SN" convert --min-layer-size 0 "$R/demo:latest" "$R/demo:soci"

echo "== 4. nbdkit soci $R/demo:soci  →  nbdfuse  →  loop  →  mount -t squashfs"
nbdkit -f -U "$work/sock" -r "$PLUGIN" "$R/demo:soci" stats-file="$work/stats.json" \
    > "$work/nbdkit.log" 2>&1 & pids="$pids $!"
for _ in $(seq 300); do [ -S "$work/sock" ] && break; sleep 0.1; done
[ -S "$work/sock" ] || { cat "$work/nbdkit.log"; exit 1; }
mkdir -p "$work/fuse" "$work/root"
nbdfuse -r "$work/fuse/image.sqfs" --unix "$work/sock" & pids="$pids $!"
for _ in $(seq 100); do [ -e "$work/fuse/image.sqfs" ] && break; sleep 0.1; done
mount -t squashfs -o loop,ro "$work/fuse/image.sqfs" "$work/root"
echo "   mounted: $(findmnt -n -o SOURCE,FSTYPE "$work/root")"

echo "== 5. using it"
echo "   $(grep PRETTY_NAME "$work/root/etc/os-release")"
echo "   $(python3 -I -S - < "$work/root/opt/app/hello.py" 2>/dev/null || cat "$work/root/opt/app/hello.py")"
echo "   $(find "$work/root" | wc -l) paths listed (metadata is local: no spans fetched for it)"
sha256sum "$work/root/usr/bin/dpkg" | awk '{print "   sha256 of /usr/bin/dpkg: " substr($1, 1, 16) "..."}'
umount "$work/root"; umount "$work/fuse"
kill $pids 2>/dev/null; wait 2>/dev/null; pids=""
python3 - "$work/stats.json" "$base" "$work/app.tar.gz" <<'PY'
import json, os, sys
st = json.load(open(sys.argv[1]))
size = sum(os.path.getsize(p) for p in sys.argv[2:])
got = st.get("bytes_fetched", 0) + st.get("whole_layer_bytes_fetched", 0)
print("   image: %d bytes of layers; fetched: %d bytes (%.1f%%) in %d spans"
      % (size, got, 100.0 * got / size, st.get("spans_fetched", 0)))
PY
echo "== done"
