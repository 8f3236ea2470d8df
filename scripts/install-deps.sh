#!/bin/sh
# Install every Debian 12 package that building, testing, benchmarking and
# the demo of soci-nbd need.  Idempotent: apt-get skips what is installed.
set -eu

PACKAGES="
  build-essential autoconf automake libtool pkg-config git ca-certificates
  zlib1g-dev libisal-dev libcurl4-openssl-dev libssl-dev libjansson-dev
  libpsl-dev publicsuffix libzstd-dev zstd
  nbdkit nbdkit-plugin-dev libnbd-dev libnbd-bin libsquashfs-dev
  flatbuffers-compiler clang libclang-rt-14-dev
  pigz python3 tar gzip coreutils openssl
  squashfs-tools squashfs-tools-ng
  docker-registry skopeo umoci apache2-utils buildah
  debootstrap qemu-system-x86 qemu-utils nbd-client cpio busybox-static socat kmod fuse3
  perl time bc strace crun
  golang-go golang-github-containerd-stargz-snapshotter-dev
  g++ libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev containerd
"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists once per day at most.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    apt-get update -q
fi
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
