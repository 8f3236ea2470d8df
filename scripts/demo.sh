#!/bin/bash
# soci-nbd demo, end to end on a fresh Debian 12 machine (as root):
#   1. install dependencies and build soci-nbd and the nbdkit plugin;
#   2. make a container image — Debian 12 minbase (debootstrap, cached) +
#      Debian's python3 + a small app — and push it to a local registry
#      (Debian's docker-registry on 127.0.0.1);
#   3. soci-nbd convert: add a SOCI index (ztocs) to it, in the registry;
#   4. soci-nbd mount: nbdkit soci serves each layer lazily as a squashfs
#      NBD device, the kernel mounts them and stacks them with overlayfs.
#      This needs the kernel's nbd driver; when the host has none (as on
#      the build machines), the same commands run in a QEMU guest (Debian's
#      kernel, TCG) that reaches the registry through a QEMU guestfwd pipe;
#   5. read a file, run the app with the image's python3, list the tree,
#      and show how little of the image was fetched.
# DEMO_QEMU=1 uses the QEMU guest even when the host has an nbd driver.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it mounts filesystems)" >&2; exit 1; }
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
    [ -d "$work/root" ] && mountpoint -q "$work/root" &&
        SOCI_NBD_RUN_DIR=$work/run "$SN" umount "$work/root"
    for p in $pids; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

echo "== 1. an image: Debian 12 minbase + python3 + an app layer"
base=$(bench/mklayer.sh minbase)
py=$(bench/mklayer.sh python)
mkdir -p "$work/app/opt/app"
cat > "$work/app/opt/app/hello.py" <<'EOF'
import json, sys
print(json.dumps({"hello": "from a lazily mounted image", "python": sys.version.split()[0]}))
EOF
tar -C "$work/app" --owner=0 --group=0 -czf "$work/app.tar.gz" opt
python3 tests/helpers/plugin-image.py layout "$work/oci" demo "$base" "$py" "$work/app.tar.gz" > /dev/null
du -b "$base" "$py" "$work/app.tar.gz" | awk '{printf "   layer %-45s %10d bytes\n", $2, $1}'

echo "== 2. a local registry on 127.0.0.1, and the image pushed with skopeo"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<EOC
version: 0.1
log: { level: warn }
storage: { filesystem: { rootdirectory: $work/registry } }
http: { addr: 127.0.0.1:$port }
EOC
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 & pids="$pids $!"
for _ in $(seq 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v2/')" 2>/dev/null && break
    sleep 0.1
done
R=127.0.0.1:$port
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$work/policy.json"
skopeo --policy "$work/policy.json" copy -q --dest-tls-verify=false \
    "oci:$work/oci:demo" "docker://$R/demo:latest"
echo "   pushed $R/demo:latest"

echo "== 3. soci-nbd convert: ztocs + SOCI index v2, pushed as $R/demo:soci"
"$SN" convert -s 1M --min-layer-size 1M "$R/demo:latest" "$R/demo:soci"

# The commands of step 4-5, for the host or the guest: IMAGE_HOST is how
# that machine names the registry; $OUT receives the stats file.
use_script() { # IMAGE_HOST SOCI_NBD_ARGS...
    local reg=$1; shift
    cat <<EOF
set -e
t0=\$(date +%s)
soci-nbd mount $* --plain-http $reg $reg/demo:soci \$ROOT
echo "   mounted in \$((\$(date +%s) - t0)) s:"
soci-nbd mounts | awk -F'\t' '{ printf "   %s <- %s (%s: %s)\n", \$1, \$2, \$3, \$4 }'
echo "   /etc/os-release: \$(grep PRETTY_NAME \$ROOT/etc/os-release)"
echo "   chroot \$ROOT python3 /opt/app/hello.py: \$(chroot \$ROOT /usr/bin/python3 /opt/app/hello.py)"
echo "   \$(find \$ROOT | wc -l) paths listed (metadata is local: no spans fetched for it)"
sleep 1.5
cp \$RUN/servers/*/stats.json \$OUT/stats.json
soci-nbd umount \$ROOT
echo "   unmounted; nbd devices left connected: \$(cat /sys/block/nbd*/pid 2>/dev/null | wc -l)"
EOF
}

if [ "${DEMO_QEMU:-0}" != 1 ] && { [ -e /sys/module/nbd ] || modprobe -q nbd 2>/dev/null; }; then
    echo "== 4. soci-nbd mount (this host has an nbd driver)"
    mkdir -p "$work/root" "$work/out"
    export SOCI_NBD_PLUGIN=$PLUGIN SOCI_NBD_RUN_DIR=$work/run
    PATH=$build:$PATH ROOT=$work/root RUN=$work/run OUT=$work/out \
        bash -c "$(use_script "$R")"
else
    echo "== 4. soci-nbd mount in a QEMU guest (this host's kernel has no nbd driver)"
    echo "   guest: Debian 12's kernel under TCG; soci-nbd, nbdkit and the plugin copied into"
    echo "   its initramfs; the registry reached as 10.0.2.100:$port through a QEMU guestfwd pipe"
    {
        echo '. /lib/soci-test.sh'
        echo 'export SOCI_NBD_PLUGIN=/usr/lib/soci-nbd/nbdkit-soci-plugin.so'
        echo 'ROOT=/mnt/demo RUN=/run/soci-nbd; mkdir -p $ROOT'
        use_script "10.0.2.100:$port"
    } > "$work/guest.sh"
    st=0
    tests/kernel/qemu/run.sh -p "$port" -m 1536 -t 300 -O "$work/out" -l "$work/console.log" \
        -b "$SN=/usr/bin/soci-nbd" -b "$(command -v nbdkit)=/usr/bin/nbdkit" \
        -b "$PLUGIN=/usr/lib/soci-nbd/nbdkit-soci-plugin.so" \
        "$work/guest.sh" > /dev/null || st=$?
    grep -a '^   ' "$work/console.log" | tr -d '\r'
    [ "$st" = 0 ] || { echo "demo: the guest failed; its console:" >&2; tail -30 "$work/console.log" >&2; exit 1; }
fi

echo "== 5. what was fetched"
python3 - "$work/out/stats.json" "$base" "$py" "$work/app.tar.gz" <<'PY'
import json, os, sys
st = json.load(open(sys.argv[1]))
size = sum(os.path.getsize(p) for p in sys.argv[2:])
got = st.get("bytes_fetched", 0) + st.get("whole_layer_bytes_fetched", 0)
print("   image: %d bytes of layers; fetched: %d bytes (%.1f%%), %d of %d spans, verified: %d"
      % (size, got, 100.0 * got / size, st.get("spans_fetched", 0), st.get("spans_total", 0),
         st.get("spans_verified", 0)))
PY
echo "== done"
