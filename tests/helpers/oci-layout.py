#!/usr/bin/env python3
# soci-nbd tests: OCI image layouts for umoci comparisons (shared by
# tests/plugin/plugin-more.sh and tests/plugin/plugin-fidelity.sh).
#
#   oci-layout.py layout DIR TAG LAYER...   an OCI layout with real diff_ids
#                                           (umoci checks them); blobs are
#                                           hard links to the layer files
#                                           (.tar, .gz, .zst);
#                                           LAYER.annotations.json, if there,
#                                           gives the descriptor's annotations
#   oci-layout.py strip SRC.tar DST.tar     drop system.* xattrs
#   oci-layout.py umoci-norm IN.json OUT.json   known umoci differences
#                                           (tests/helpers/mkfs-tree.py scan output)
#   oci-layout.py seekable SRC DST FRAME    SRC in the zstd seekable format,
#                                           FRAME input bytes per frame
import gzip, hashlib, json, os, struct, subprocess, sys, tarfile


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
    if uncompress and p.endswith(".zst"):
        return "sha256:" + H(subprocess.run(["zstd", "-dc", p], check=True,
                                            capture_output=True).stdout)
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
          "zst": "application/vnd.oci.image.layer.v1.tar+zstd",
          "tar": "application/vnd.oci.image.layer.v1.tar"}
    bd = os.path.join(out, "blobs", "sha256")
    os.makedirs(bd, exist_ok=True)
    def put(data):
        d = "sha256:" + H(data)
        open(os.path.join(bd, d[7:]), "wb").write(data)
        return d
    descs, diffs = [], []
    for p in layers:
        ext = p.rsplit(".", 1)[-1]
        gz = ext in ("gz", "zst")
        d = sha_file(p)
        dst = os.path.join(bd, d[7:])
        if not os.path.exists(dst):
            os.link(p, dst)
        desc = {"mediaType": MT[ext if gz else "tar"], "digest": d,
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


def seekable(src, dst, frame):
    """src compressed to dst in the zstd seekable format (zstd's
    contrib/seekable_format/zstd_seekable_compression_format.md): one zstd
    frame (made by the zstd CLI) per `frame` bytes of input, then the seek
    table, a skippable frame listing every frame's compressed and
    decompressed size, and its footer.  Prints the frames as JSON lines
    [compressed offset, compressed size, decompressed offset, size]."""
    data = open(src, "rb").read()
    out, table, coff = bytearray(), bytearray(), 0
    for i in range(0, len(data), frame):
        chunk = data[i:i + frame]
        c = subprocess.run(["zstd", "-q", "-c", "-3"], input=chunk, check=True,
                           capture_output=True).stdout
        print(json.dumps([len(out), len(c), i, len(chunk)]))
        out += c
        table += struct.pack("<II", len(c), len(chunk))
    n = len(table) // 8
    table += struct.pack("<IBI", n, 0, 0x8F92EAB1)
    out += struct.pack("<II", 0x184D2A5E, len(table)) + table
    open(dst, "wb").write(out)


if __name__ == "__main__":
    c, a = sys.argv[1], sys.argv[2:]
    if c == "strip": strip_system_xattrs(a[0], a[1])
    elif c == "umoci-norm": umoci_norm(a[0], a[1])
    elif c == "layout": layout(a[0], a[1], a[2:])
    elif c == "seekable": seekable(a[0], a[1], int(a[2]))
    else: sys.exit("oci-layout.py: unknown command " + c)
