#!/bin/bash
# soci-nbd tests: build deterministic test images as an OCI image layout
# (no Docker, no network) and push them to a test registry with skopeo.
#
#   mkimage.sh build OUT
#       OUT/layout     an OCI image layout with two tags:
#         multi        linux/amd64 image, 3 gzip layers: a GNU-format tar
#                      (long names, symlink, hard link), a PAX tar with a
#                      5 MiB incompressible file ("big", > 5 MB blob) and
#                      xattrs, and a small whiteout layer
#         multiarch    an OCI index: linux/amd64, linux/arm64/v8,
#                      linux/arm/v7 (one small layer each, file /arch)
#       OUT/info.sh    shell variables describing it (source it):
#         IMG_LAYOUT, IMG_MULTI_MANIFEST(_SIZE), IMG_MULTI_CONFIG,
#         IMG_MULTI_NLAYERS, IMG_MULTI_LAYER{0,1,2}(_SIZE), IMG_BIG (=
#         layer 1), IMG_ARCH_INDEX, IMG_ARCH_{AMD64,ARM64,ARMV7} (manifest
#         digests), IMG_ARCH_{AMD64,ARM64,ARMV7}_LAYER
#       OUT/info.json  the same as JSON; blob bytes are at
#                      OUT/layout/blobs/sha256/HEX
#
#   mkimage.sh push OUT HOST:PORT [skopeo copy options...]
#       pushes (options such as --dest-creds U:P, --dest-cert-dir D or
#       --dest-tls-verify=false are passed to every skopeo copy):
#         HOST:PORT/test/multi:v1        multi, unchanged (same digests)
#         HOST:PORT/test/multiarch:v1    multiarch, unchanged (--all)
#         HOST:PORT/test/docker:v1       multi converted to Docker schema 2
#         HOST:PORT/test/dockerlist:v1   multiarch as a Docker manifest list
#       and writes OUT/pushed.sh: PUSHED_DOCKER_MANIFEST,
#       PUSHED_DOCKERLIST_INDEX (digests as stored in the registry).
set -eu


build() {
    local out=$1
    mkdir -p "$out"
    python3 - "$out" <<'PY'
import gzip, hashlib, io, json, os, random, sys, tarfile

out = sys.argv[1]
lay = os.path.join(out, "layout")
blobdir = os.path.join(lay, "blobs", "sha256")
os.makedirs(blobdir, exist_ok=True)
MTIME = 1700000000

def put(data):
    h = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobdir, h), "wb") as f:
        f.write(data)
    return "sha256:" + h, len(data)

def jdump(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

def tar(fmt, entries):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=fmt) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.mtime = e.get("mtime", MTIME)
            ti.uid = e.get("uid", 0); ti.gid = e.get("gid", 0)
            ti.uname = e.get("uname", "root"); ti.gname = e.get("gname", "root")
            ti.mode = e.get("mode", 0o644)
            if "pax" in e:
                ti.pax_headers = e["pax"]
            kind = e.get("type", "file")
            data = None
            if kind == "dir":
                ti.type = tarfile.DIRTYPE; ti.mode = e.get("mode", 0o755)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE; ti.linkname = e["link"]; ti.mode = 0o777
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE; ti.linkname = e["link"]
            else:
                data = e["data"]; ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return bio.getvalue()

def layer(tarbytes):
    gz = gzip.compress(tarbytes, compresslevel=6, mtime=0)
    d, n = put(gz)
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d, "size": n}, "sha256:" + hashlib.sha256(tarbytes).hexdigest()

def image(arch, variant, layers_tars, created="2023-11-14T22:13:20Z"):
    descs, diffids = [], []
    for tb in layers_tars:
        desc, diffid = layer(tb)
        descs.append(desc); diffids.append(diffid)
    cfg = {"architecture": arch, "os": "linux", "created": created,
           "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
           "rootfs": {"type": "layers", "diff_ids": diffids},
           "history": [{"created": created, "created_by": "mkimage.sh"}
                       for _ in diffids]}
    if variant:
        cfg["variant"] = variant
    cd, cn = put(jdump(cfg))
    man = {"schemaVersion": 2,
           "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": cd, "size": cn},
           "layers": descs}
    md, mn = put(jdump(man))
    return {"manifest": md, "size": mn, "config": cd, "layers": descs}

rnd = random.Random(20231114)
longname = "dir/" + "long-directory-name-" * 6 + "/file-with-a-long-name.txt"
gnu = tar(tarfile.GNU_FORMAT, [
    {"name": "etc", "type": "dir"},
    {"name": "etc/hello.txt", "data": b"hello, world\n"},
    {"name": "etc/link", "type": "symlink", "link": "hello.txt"},
    {"name": "etc/hard", "type": "hardlink", "link": "etc/hello.txt"},
    {"name": "dir", "type": "dir"},
    {"name": longname, "data": b"long name\n" * 100},
    {"name": "bin", "type": "dir"},
    {"name": "bin/tool", "mode": 0o755,
     "data": b"#!/bin/sh\necho tool\n" + bytes(range(256)) * 64},
])
pax = tar(tarfile.PAX_FORMAT, [
    {"name": "data", "type": "dir"},
    {"name": "data/big.bin", "data": rnd.randbytes(5 << 20)},
    {"name": "data/caf\u00e9-\u00fcnicode.txt", "data": b"unicode\n",
     "uid": 123456789, "gid": 1000, "uname": "someone-with-a-long-user-name"},
    {"name": "data/xattr.txt", "data": b"xattr\n",
     "pax": {"SCHILY.xattr.user.comment": "hello"}},
    {"name": "data/" + "p" * 150, "data": b"pax long name\n"},
])
wh = tar(tarfile.GNU_FORMAT, [
    {"name": "etc", "type": "dir"},
    {"name": "etc/.wh.hello.txt", "data": b""},
    {"name": "etc/new.txt", "data": b"new\n"},
])
multi = image("amd64", None, [gnu, pax, wh])

arches = [("amd64", None, "AMD64"), ("arm64", "v8", "ARM64"), ("arm", "v7", "ARMV7")]
per = []
for arch, variant, key in arches:
    name = arch + ("/" + variant if variant else "")
    t = tar(tarfile.PAX_FORMAT, [{"name": "arch", "data": ("linux/%s\n" % name).encode()},
                                 {"name": "bin", "type": "dir"},
                                 {"name": "bin/true", "mode": 0o755,
                                  "data": ("fake %s binary\n" % name).encode() * 50}])
    im = image(arch, variant, [t])
    plat = {"architecture": arch, "os": "linux"}
    if variant:
        plat["variant"] = variant
    per.append((key, im, plat))
index = {"schemaVersion": 2,
         "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": im["manifest"], "size": im["size"],
                        "platform": plat} for _, im, plat in per]}
idx_d, idx_n = put(jdump(index))

top = {"schemaVersion": 2,
       "mediaType": "application/vnd.oci.image.index.v1+json",
       "manifests": [
           {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": multi["manifest"], "size": multi["size"],
            "annotations": {"org.opencontainers.image.ref.name": "multi"}},
           {"mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": idx_d, "size": idx_n,
            "annotations": {"org.opencontainers.image.ref.name": "multiarch"}}]}
with open(os.path.join(lay, "index.json"), "wb") as f:
    f.write(jdump(top))
with open(os.path.join(lay, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')

info = {"IMG_LAYOUT": lay,
        "IMG_MULTI_MANIFEST": multi["manifest"],
        "IMG_MULTI_MANIFEST_SIZE": multi["size"],
        "IMG_MULTI_CONFIG": multi["config"],
        "IMG_MULTI_NLAYERS": len(multi["layers"]),
        "IMG_BIG": multi["layers"][1]["digest"],
        "IMG_BIG_SIZE": multi["layers"][1]["size"],
        "IMG_ARCH_INDEX": idx_d, "IMG_ARCH_INDEX_SIZE": idx_n}
for i, l in enumerate(multi["layers"]):
    info["IMG_MULTI_LAYER%d" % i] = l["digest"]
    info["IMG_MULTI_LAYER%d_SIZE" % i] = l["size"]
for key, im, _ in per:
    info["IMG_ARCH_" + key] = im["manifest"]
    info["IMG_ARCH_%s_LAYER" % key] = im["layers"][0]["digest"]
with open(os.path.join(out, "info.json"), "w") as f:
    json.dump(info, f, indent=1, sort_keys=True)
with open(os.path.join(out, "info.sh"), "w") as f:
    for k in sorted(info):
        f.write("%s='%s'\n" % (k, info[k]))
PY
}

push() {
    local out=$1 dest=$2; shift 2
    local lay="$out/layout" log="$out/skopeo.log"
    # skopeo needs no policy beyond "accept anything" for local tests.
    printf '%s\n' '{"default":[{"type":"insecureAcceptAnything"}]}' > "$out/policy.json"
    local sk=(skopeo --policy "$out/policy.json" --override-os linux --override-arch amd64
              copy --quiet --retry-times 0)
    : >> "$log"
    "${sk[@]}" "$@" "oci:$lay:multi" "docker://$dest/test/multi:v1" >>"$log" 2>&1
    "${sk[@]}" "$@" --all "oci:$lay:multiarch" "docker://$dest/test/multiarch:v1" >>"$log" 2>&1
    "${sk[@]}" "$@" --format v2s2 --digestfile "$out/docker.digest" \
        "oci:$lay:multi" "docker://$dest/test/docker:v1" >>"$log" 2>&1
    "${sk[@]}" "$@" --all --format v2s2 --digestfile "$out/dockerlist.digest" \
        "oci:$lay:multiarch" "docker://$dest/test/dockerlist:v1" >>"$log" 2>&1
    {
        echo "PUSHED_DOCKER_MANIFEST='$(cat "$out/docker.digest")'"
        echo "PUSHED_DOCKERLIST_INDEX='$(cat "$out/dockerlist.digest")'"
    } > "$out/pushed.sh"
}

case ${1:-} in
    build) [ $# -eq 2 ] || { echo "usage: $0 build OUT" >&2; exit 2; }; build "$2" ;;
    push) [ $# -ge 3 ] || { echo "usage: $0 push OUT HOST:PORT [skopeo options]" >&2; exit 2; }
          shift; push "$@" ;;
    *) sed -n '2,/^set -eu/p' "$0" | sed 's/^# \{0,1\}//;/^set -eu/d'; exit 2 ;;
esac
