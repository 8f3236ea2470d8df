#!/usr/bin/env python3
# soci-nbd tests: helper of tests/plugin/plugin.sh — makes an image from local
# layer files (.tar.gz gzip, .tar plain, .tar.zst "zstd") and, for the
# registry tests, SOCI indexes for it (docs/soci-format.md §5).
#
#   plugin-image.py layout DIR TAG LAYER...
#       an OCI image layout; prints the manifest digest
#   plugin-image.py push URL REPO LAYER... [--ztoc LAYER=ZTOC]...
#       pushes to a registry (plain HTTP) with urllib:
#         REPO:v1      the image manifest
#         REPO:multi   an OCI index: linux/amd64 and linux/arm64 → v1
#         a v1 SOCI index (subject = the manifest) + the referrers fallback
#                      tag sha256-<hex>
#         a v2 SOCI index, and REPO:v2 = the manifest annotated with it
#       prints shell assignments: MAN, MAN_V2, IDX1, IDX2
import base64, hashlib, json, os, sys, urllib.request

MT = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
      "tar": "application/vnd.oci.image.layer.v1.tar",
      "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
OCI_M = "application/vnd.oci.image.manifest.v1+json"
OCI_I = "application/vnd.oci.image.index.v1+json"
V1 = "application/vnd.amazon.soci.index.v1+json"
V2 = "application/vnd.amazon.soci.index.v2+json"


def jdump(o):
    return json.dumps(o, separators=(",", ":")).encode()


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def kind(path):
    if path.endswith(".gz"):
        return "gzip"
    if path.endswith(".zst"):
        return "zstd"
    return "tar"


def image(layers):
    """blobs {digest: bytes}, manifest bytes, layer descriptors."""
    blobs, descs = {}, []
    for p in layers:
        data = open(p, "rb").read()
        d = digest(data)
        blobs[d] = data
        descs.append({"mediaType": MT[kind(p)], "digest": d, "size": len(data)})
    cfg = jdump({"architecture": "amd64", "os": "linux",
                 "rootfs": {"type": "layers", "diff_ids": []}})
    blobs[digest(cfg)] = cfg
    man = {"schemaVersion": 2, "mediaType": OCI_M,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": digest(cfg), "size": len(cfg)},
           "layers": descs}
    return blobs, man, descs


def layout(out, tag, layers):
    blobs, man, _ = image(layers)
    mb = jdump(man)
    blobs[digest(mb)] = mb
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    for d, b in blobs.items():
        with open(os.path.join(out, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(b)
    idx = {"schemaVersion": 2, "mediaType": OCI_I,
           "manifests": [{"mediaType": OCI_M, "digest": digest(mb),
                          "size": len(mb), "annotations":
                          {"org.opencontainers.image.ref.name": tag}}]}
    with open(os.path.join(out, "index.json"), "wb") as f:
        f.write(jdump(idx))
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    print(digest(mb))


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def req(method, url, data=None, ctype=None):
    r = urllib.request.Request(url, data=data, method=method)
    if os.environ.get("SN_PUSH_AUTH"):    # USER:PASSWORD for basic auth
        r.add_header("Authorization", "Basic " + base64.b64encode(
            os.environ["SN_PUSH_AUTH"].encode()).decode())
    if ctype:
        r.add_header("Content-Type", ctype)
    with OPENER.open(r, timeout=30) as resp:
        resp.read()
        return resp


def push_blob(url, repo, data):
    d = digest(data)
    loc = req("POST", "%s/v2/%s/blobs/uploads/" % (url, repo)).headers["Location"]
    if loc.startswith("/"):
        loc = url + loc
    loc += ("&" if "?" in loc else "?") + "digest=" + d
    req("PUT", loc, data, "application/octet-stream")
    return d


def get_manifest(url, repo, ref):
    """the bytes of an OCI image manifest, as stored"""
    r = urllib.request.Request("%s/v2/%s/manifests/%s" % (url, repo, ref),
                               headers={"Accept": OCI_M})
    with OPENER.open(r, timeout=30) as resp:
        return resp.read()


def push_manifest(url, repo, ref, data, ctype):
    req("PUT", "%s/v2/%s/manifests/%s" % (url, repo, ref), data, ctype)
    return digest(data)


def soci_index(config_type, ztocs, subject):
    layers = []
    for layer_desc, zdata in ztocs:
        layers.append({"mediaType": "application/octet-stream",
                       "digest": digest(zdata), "size": len(zdata),
                       "annotations": {
                           "com.amazon.soci.image-layer-digest": layer_desc["digest"],
                           "com.amazon.soci.image-layer-mediaType": layer_desc["mediaType"],
                           "com.amazon.soci.span-size": "65536"}})
    idx = {"schemaVersion": 2, "mediaType": OCI_M,
           "config": {"mediaType": config_type, "digest": digest(b"{}"), "size": 2},
           "layers": layers}
    if subject:
        idx["subject"] = subject
    idx["annotations"] = {"com.amazon.soci.build-tool-identifier": "AWS SOCI CLI v0.2"}
    return jdump(idx)


def push(url, repo, args):
    layers, zmap = [], {}
    i = 0
    while i < len(args):
        if args[i] == "--ztoc":
            l, z = args[i + 1].split("=", 1)
            zmap[l] = z
            i += 2
        else:
            layers.append(args[i])
            i += 1
    blobs, man, descs = image(layers)
    for b in blobs.values():
        push_blob(url, repo, b)
    mb = jdump(man)
    mdig = push_manifest(url, repo, "v1", mb, OCI_M)
    plat = [{"os": "linux", "architecture": "amd64"},
            {"os": "linux", "architecture": "arm64", "variant": "v8"}]
    multi = {"schemaVersion": 2, "mediaType": OCI_I,
             "manifests": [{"mediaType": OCI_M, "digest": mdig, "size": len(mb),
                            "platform": p} for p in plat]}
    push_manifest(url, repo, "multi", jdump(multi), OCI_I)

    ztocs = []
    for p, desc in zip(layers, descs):
        if p in zmap:
            zdata = open(zmap[p], "rb").read()
            push_blob(url, repo, zdata)
            ztocs.append((desc, zdata))
    push_blob(url, repo, b"{}")
    # v1: subject + the referrers fallback tag (distribution 2.8 has no
    # referrers API).
    i1 = soci_index(V1, ztocs, {"mediaType": OCI_M, "digest": mdig, "size": len(mb)})
    idx1 = push_manifest(url, repo, digest(i1), i1, OCI_M)
    refs = {"schemaVersion": 2, "mediaType": OCI_I,
            "manifests": [{"mediaType": OCI_M, "digest": idx1, "size": len(i1),
                           "artifactType": V1}]}
    push_manifest(url, repo, "sha256-" + mdig[7:], jdump(refs), OCI_I)
    # v2: no subject; the image manifest carries the index digest.
    i2 = soci_index(V2, ztocs, None)
    idx2 = push_manifest(url, repo, digest(i2), i2, OCI_M)
    man2 = dict(man)
    man2["annotations"] = {"com.amazon.soci.index-digest": idx2}
    m2dig = push_manifest(url, repo, "v2", jdump(man2), OCI_M)
    print("MAN=%s MAN_V2=%s IDX1=%s IDX2=%s" % (mdig, m2dig, idx1, idx2))


if __name__ == "__main__":
    if sys.argv[1] == "layout":
        layout(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif sys.argv[1] == "push":
        push(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit("usage: see the header of this file")
