#!/usr/bin/env python3
# soci-nbd tests: OCI image layouts for umoci comparisons (shared by
# tests/plugin/plugin-more.sh and tests/plugin/plugin-fidelity.sh).
#
#   oci-layout.py layout DIR TAG LAYER...   an OCI layout with real diff_ids
#                                           (umoci checks them); blobs are
#                                           hard links to the layer files;
#                                           LAYER.annotations.json, if there,
#                                           gives the descriptor's annotations
#   oci-layout.py strip SRC.tar DST.tar     drop system.* xattrs
#   oci-layout.py umoci-norm IN.json OUT.json   known umoci differences
#                                           (tests/helpers/mkfs-tree.py scan output)
import gzip, hashlib, json, os, sys, tarfile


def H(b):
    return hashlib.sha256(b).hexdigest()


def strip_system_xattrs(src, dst):
    """copy a tar without system.* xattrs (umoci cannot apply an invalid
    ACL), everything else as is."""
    with tarfile.open(src) as i, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as o:
        for m in i:
            m.pax_headers = {k: v for k, v in m.pax_headers.items()
                             if not k.startswith("SCHILY.xattr.system.")}
            o.addfile(m, i.extractfile(m) if m.isreg() else None)

def umoci_norm(src, dst):
    """drop the known, documented differences between umoci and an OCI
    apply: umoci keeps aufs' .wh..wh.plnk, drops empty xattr values;
    squashfs clamps mtimes to 32 bits."""
    t = json.load(open(src))
    out = {}
    for p, r in t.items():
        if p == ".wh..wh.plnk" or p.startswith(".wh..wh.plnk/"):
            continue
        if isinstance(r, dict):
            if "mtime" in r:
                r["mtime"] = max(0, min(2**32 - 1, r["mtime"]))
            if "xattrs" in r:
                r["xattrs"] = {k: v for k, v in r["xattrs"].items() if v != ""}
        out[p] = r
    json.dump(out, open(dst, "w"))

def sha_file(p, uncompress=False):
    h = hashlib.sha256()
    f = gzip.open(p, "rb") if uncompress else open(p, "rb")
    with f:
        while True:
            b = f.read(1 << 24)
            if not b:
                return "sha256:" + h.hexdigest()
            h.update(b)

def layout(out, tag, layers):
    """an OCI layout with real diff_ids (umoci checks them); blobs are hard
    links to the layer files."""
    MT = {"gz": "application/vnd.oci.image.layer.v1.tar+gzip",
          "tar": "application/vnd.oci.image.layer.v1.tar"}
    bd = os.path.join(out, "blobs", "sha256")
    os.makedirs(bd, exist_ok=True)
    def put(data):
        d = "sha256:" + H(data)
        open(os.path.join(bd, d[7:]), "wb").write(data)
        return d
    descs, diffs = [], []
    for p in layers:
        gz = p.endswith(".gz")
        d = sha_file(p)
        dst = os.path.join(bd, d[7:])
        if not os.path.exists(dst):
            os.link(p, dst)
        desc = {"mediaType": MT["gz" if gz else "tar"], "digest": d,
                "size": os.path.getsize(p)}
        if os.path.exists(p + ".annotations.json"):   # e.g. an eStargz TOC digest
            desc["annotations"] = json.load(open(p + ".annotations.json"))
        descs.append(desc)
        diffs.append(sha_file(p, gz) if gz else d)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()
    man = json.dumps({"schemaVersion": 2,
                      "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": put(cfg), "size": len(cfg)},
                      "layers": descs}).encode()
    md = put(man)
    json.dump({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json",
         "digest": md, "size": len(man),
         "annotations": {"org.opencontainers.image.ref.name": tag}}]},
        open(os.path.join(out, "index.json"), "w"))
    open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')


if __name__ == "__main__":
    c, a = sys.argv[1], sys.argv[2:]
    if c == "strip": strip_system_xattrs(a[0], a[1])
    elif c == "umoci-norm": umoci_norm(a[0], a[1])
    elif c == "layout": layout(a[0], a[1], a[2:])
    else: sys.exit("oci-layout.py: unknown command " + c)
