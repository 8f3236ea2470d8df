#!/usr/bin/env python3
# soci-nbd tests: helper of tests/format/mkfs.sh — generates test layers, applies
# layers with OCI semantics into a reference tree (written independently of
# lib/squashfs/sqfs-tree.c: each layer's whiteouts first remove lower content, then
# its entries apply in order), and describes trees (a directory, or a tar
# such as sqfs2tar's output) in one JSON form for comparison.
#
#   mkfs-tree.py gen DIR                 write DIR/L1.tar ... DIR/L4.tar
#   mkfs-tree.py ref LAYER.tar...        the merged tree
#   mkfs-tree.py scan DIR                a mounted or extracted tree
#   mkfs-tree.py tar FILE                a tar stream's tree
#   mkfs-tree.py cmp A B [--no-xattrs] [--no-link-mtime]
import errno, hashlib, io, json, os, posixpath, stat, sys, tarfile

PREFIXES = ("user.", "trusted.", "security.")
U32 = 2**32 - 1


def keep_xattr(k):
    return (k.startswith(PREFIXES) and not k.startswith("trusted.overlay.")
            and not k.startswith("user.overlay."))


def clean(name):
    p = posixpath.normpath("/" + name).lstrip("/")
    return "" if p == "." else p


def clamp(t):
    return max(0, min(U32, int(t)))


# ---- generating layers ----------------------------------------------------

def gen(out):
    import random
    r = random.Random(1234)
    sizes = [0, 1, 511, 512, 513, 4095, 4096, 4097, 131071, 131072, 131073,
             262144, 300000, 1048583]

    class Layer:
        def __init__(self, path):
            self.tf = tarfile.open(path, "w", format=tarfile.PAX_FORMAT)
            self.dirs = set()

        def add(self, name, typ=tarfile.REGTYPE, data=b"", mode=0o644,
                uid=0, gid=0, mtime=1700000000, link="", dev=(0, 0),
                xattrs=None):
            parent = posixpath.dirname(name)
            if parent and parent not in self.dirs:
                self.dir(parent)
            ti = tarfile.TarInfo(name)
            ti.type = typ
            ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, mtime
            ti.linkname = link
            ti.devmajor, ti.devminor = dev
            if xattrs:
                ti.pax_headers = {"SCHILY.xattr." + k: v
                                  for k, v in xattrs.items()}
            ti.size = len(data) if typ == tarfile.REGTYPE else 0
            self.tf.addfile(ti, io.BytesIO(data) if ti.size else None)

        # Docker-style: every layer carries the directories it touches.
        def dir(self, name, mode=0o755, uid=0, gid=0, mtime=1690000000,
                xattrs=None):
            parent = posixpath.dirname(name)
            if parent and parent not in self.dirs:
                self.dir(parent)
            self.dirs.add(name)
            self.add(name, tarfile.DIRTYPE, mode=mode, uid=uid, gid=gid,
                     mtime=mtime, xattrs=xattrs)

        def close(self):
            self.tf.close()

    L = Layer(os.path.join(out, "L1.tar"))
    L.dir("etc", mode=0o750, uid=5, gid=6)
    for i, n in enumerate(sizes):
        L.add("data/size-%d" % n, data=r.randbytes(n), mode=0o600 + i,
              uid=1000 + i, gid=100 + i, mtime=1600000000 + i)
    L.add("data/old-mtime", data=b"x", mtime=0)
    L.add("data/future", data=b"y", mtime=2**33)          # clamped
    long1, long2 = "L" * 200, "M" * 250
    L.add("%s/%s/file" % (long1, long2), data=b"long path\n")
    # 255: NAME_MAX of the filesystems the trees are extracted to.
    L.add("data/" + "n" * 255, data=b"a 255-byte name\n")
    L.add("data/link", tarfile.SYMTYPE, link="size-1", mode=0o777)
    L.add("data/longlink", tarfile.SYMTYPE, link="t" * 1000, mode=0o777)
    L.add("data/hard", tarfile.LNKTYPE, link="data/size-513")
    L.add("data/hard2", tarfile.LNKTYPE, link="data/hard")
    L.add("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3))
    L.add("dev/sda1", tarfile.BLKTYPE, mode=0o660, dev=(8, 1), gid=6)
    L.add("dev/big", tarfile.CHRTYPE, mode=0o600, dev=(300, 70000))
    L.add("dev/fifo", tarfile.FIFOTYPE, mode=0o644)
    L.add("x/attrs", data=b"xattrs\n", xattrs={
        "user.foo": "bar", "user.empty": "", "security.sn_test": "\x01\x02",
        "trusted.t": "tv", "trusted.overlay.redirect": "/evil",
        "user.overlay.opaque": "y", "system.posix_acl_access": "acl"})
    L.dir("x/dir-attrs", xattrs={"user.d": "dirval"})
    for i in range(3000):
        L.add("many/f%04d" % i, data=b"%d\n" % i, mode=0o644)
    L.dir("d")
    L.add("d/keep", data=b"keep")
    L.add("d/gone", data=b"gone")
    L.add("d/sub/x", data=b"x")
    L.dir("opq", mtime=1)
    L.add("opq/lower1", data=b"l1")
    L.add("opq/lowerdir/deep", data=b"deep")
    L.add("wh/sub/inner", data=b"inner")
    L.add("wh/file", data=b"file")
    L.add("repl/file-then-dir", data=b"f")
    L.add("repl/dir-then-file/child", data=b"c")
    L.add("usr/bin/tool", data=r.randbytes(5000), mode=0o755)
    L.close()

    L = Layer(os.path.join(out, "L2.tar"))
    L.add("d/.wh.gone")
    L.add("d/new", data=b"new in 2")
    L.add("opq/.wh..wh..opq")
    L.add("opq/upper2", data=b"u2")
    L.add("wh/.wh.sub")
    L.add("wh/.wh.nothing-there")
    L.add(".wh..wh.plnk/123", data=b"aufs")
    L.dir("repl/file-then-dir")
    L.add("repl/file-then-dir/in", data=b"in")
    L.add("repl/dir-then-file", data=b"now a file")
    L.add("data/size-1", data=b"changed in layer 2", mode=0o640)
    L.add("l2/hl-a", data=b"hard in 2")
    L.add("l2/hl-b", tarfile.LNKTYPE, link="l2/hl-a")
    L.close()

    L = Layer(os.path.join(out, "L3.tar"))
    L.add("d/.wh.new")
    L.add("d/gone", data=b"back in 3")
    L.dir("opq", mode=0o700, mtime=3)
    L.add("opq/.wh.upper2")
    L.add("opq/upper3", data=b"u3")
    L.add("wh/sub/again", data=b"again")
    L.add("many/.wh.f0007")
    L.dir("x", mode=0o711)
    L.add("data/.wh.size-0")
    L.close()

    # A hard link into a lower layer: fine flattened, refused per layer.
    L = Layer(os.path.join(out, "L4.tar"))
    L.add("l4/tool-link", tarfile.LNKTYPE, link="usr/bin/tool")
    L.close()

    # A name of 257 bytes.
    L = Layer(os.path.join(out, "longname.tar"))
    L.add("y" * 257, data=b"too long")
    L.close()


# ---- trees ------------------------------------------------------------------

def rec_of(m, data):
    t = {tarfile.REGTYPE: "f", tarfile.AREGTYPE: "f", tarfile.DIRTYPE: "d",
         tarfile.SYMTYPE: "l", tarfile.CHRTYPE: "c", tarfile.BLKTYPE: "b",
         tarfile.FIFOTYPE: "p"}[m.type]
    r = {"type": t, "mode": m.mode & 0o7777, "uid": m.uid, "gid": m.gid,
         "mtime": clamp(m.mtime)}
    if t == "f":
        r["size"] = len(data)
        r["sha"] = hashlib.sha256(data).hexdigest()
    if t == "l":
        r["link"] = m.linkname
    if t in "cb":
        r["dev"] = [m.devmajor, m.devminor]
    xa = {}
    for k, v in m.pax_headers.items():
        if k.startswith("SCHILY.xattr."):
            k = k[len("SCHILY.xattr."):]
            if keep_xattr(k):
                xa[k] = v.encode("utf-8", "surrogateescape").hex()
    r["xattrs"] = xa
    return r


def aufs(p):
    parts = p.split("/")
    return any(c.startswith(".wh..wh.") for c in parts[:-1]) or \
        (parts[-1].startswith(".wh..wh.") and parts[-1] != ".wh..wh..opq")


def ref(paths):
    tree = {}

    def drop(p):
        for k in [k for k in tree if k == p or k.startswith(p + "/")]:
            del tree[k]

    def mkparents(p):
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in tree or tree[d]["type"] != "d":
                drop(d)
                tree[d] = {"type": "d", "mode": 0o755, "uid": 0, "gid": 0,
                           "mtime": 0, "xattrs": {}}

    for path in paths:
        with tarfile.open(path) as tf:
            members = tf.getmembers()
            # Whiteouts remove lower content only: all of them first.
            for m in members:
                p = clean(m.name)
                base = posixpath.basename(p)
                parent = posixpath.dirname(p)
                if aufs(p):
                    continue
                if base == ".wh..wh..opq":
                    for k in [k for k in tree
                              if parent == "" or k.startswith(parent + "/")]:
                        del tree[k]
                elif base.startswith(".wh.") and \
                        not base.startswith(".wh..wh."):
                    drop(posixpath.join(parent, base[4:]))
            for m in members:
                p = clean(m.name)
                base = posixpath.basename(p)
                if p == "" or base.startswith(".wh.") or aufs(p):
                    continue
                mkparents(p)
                if m.islnk():
                    t = clean(m.linkname)
                    r = dict(tree[t])
                elif m.isdir() and p in tree and tree[p]["type"] == "d":
                    r = rec_of(m, b"")
                else:
                    drop(p)
                    data = tf.extractfile(m).read() if m.isreg() else b""
                    r = rec_of(m, data)
                tree[p] = r
    return tree


def scan(root):
    tree = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            full = os.path.join(dirpath, n)
            p = os.path.relpath(full, root)
            st = os.lstat(full)
            m = st.st_mode
            t = ("d" if stat.S_ISDIR(m) else "f" if stat.S_ISREG(m) else
                 "l" if stat.S_ISLNK(m) else "c" if stat.S_ISCHR(m) else
                 "b" if stat.S_ISBLK(m) else "p" if stat.S_ISFIFO(m) else "?")
            r = {"type": t, "mode": stat.S_IMODE(m), "uid": st.st_uid,
                 "gid": st.st_gid, "mtime": int(st.st_mtime)}
            if t == "f":
                with open(full, "rb") as f:
                    data = f.read()
                r["size"] = len(data)
                r["sha"] = hashlib.sha256(data).hexdigest()
            if t == "l":
                r["link"] = os.readlink(full)
            if t in "cb":
                r["dev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
            xa = {}
            try:
                keys = os.listxattr(full, follow_symlinks=False)
            except OSError as e:
                # The kernel's squashfs says EOPNOTSUPP when the image
                # has no xattr table at all (as for mksquashfs images).
                if e.errno != errno.EOPNOTSUPP:
                    raise
                keys = []
            for k in keys:
                if keep_xattr(k):
                    xa[k] = os.getxattr(full, k, follow_symlinks=False).hex()
            r["xattrs"] = xa
            tree[p] = r
    return tree


def tartree(path):
    tree = {}
    with tarfile.open(path) as tf:
        for m in tf:
            p = clean(m.name)
            if p == "":
                continue
            if m.islnk():
                tree[p] = dict(tree[clean(m.linkname)])
            else:
                tree[p] = rec_of(m, tf.extractfile(m).read()
                                 if m.isreg() else b"")
    return tree


def cmp(a, b, opts):
    a, b = json.load(open(a)), json.load(open(b))
    bad = 0
    for p in sorted(set(a) | set(b)):
        x, y = a.get(p), b.get(p)
        if x and y:
            x, y = dict(x), dict(y)
            if "--no-xattrs" in opts:
                x.pop("xattrs"), y.pop("xattrs")
            if "--no-link-mtime" in opts and x["type"] == "l":
                x.pop("mtime"), y.pop("mtime", None)
            # --no-mtime-of P: P's mtime is not compared (a directory an
            # unpacker makes as it goes: containerd's .wh..wh.plnk)
            if any(o == "--no-mtime-of" and i + 1 < len(opts) and opts[i + 1] == p
                   for i, o in enumerate(opts)):
                x.pop("mtime", None), y.pop("mtime", None)
        if x != y:
            bad += 1
            if bad <= 10:
                print("# %s:\n#   want %s\n#   got  %s" % (p, x, y))
    print("# %d entries compared, %d differ" % (len(a), bad))
    return 1 if bad else 0


def main():
    cmd = sys.argv[1]
    if cmd == "gen":
        gen(sys.argv[2])
        return 0
    if cmd == "cmp":
        return cmp(sys.argv[2], sys.argv[3], sys.argv[4:])
    tree = {"ref": lambda: ref(sys.argv[2:]), "scan": lambda: scan(sys.argv[2]),
            "tar": lambda: tartree(sys.argv[2])}[cmd]()
    json.dump(tree, sys.stdout, sort_keys=True, indent=0)
    return 0


sys.exit(main())
