#!/usr/bin/env python3
# soci-nbd tests: turn a listing made in the QEMU test guest (the
# `listing` helper of /lib/soci-test.sh, see tests/kernel/qemu/mkinitramfs.sh) into
# the JSON tree form of tests/helpers/mkfs-tree.py (without xattrs: the guest has no
# getfattr), for `mkfs-tree.py cmp ... --no-xattrs`.
#
#   listing.py tree LISTING            the JSON tree
#   listing.py inode LISTING PATH...   ok if the paths share one inode and
#                                      its link count is their number
import json, stat, sys


def parse(path):
    rows = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            # The path comes first and may not hold '|' (the test's names
            # do not); a symlink target last and may.
            p, mode, uid, gid, mtime, size, nlink, ino, maj, mnr, extra = \
                line.split("|", 10)
            if p.startswith("./"):
                p = p[2:]
            rows[p] = dict(mode=int(mode, 16), uid=int(uid), gid=int(gid),
                           mtime=int(mtime), size=int(size), nlink=int(nlink),
                           ino=int(ino), dev=[int(maj, 16), int(mnr, 16)],
                           extra=extra)
    return rows


def tree(rows):
    out = {}
    for p, r in rows.items():
        m = r["mode"]
        t = ("d" if stat.S_ISDIR(m) else "f" if stat.S_ISREG(m) else
             "l" if stat.S_ISLNK(m) else "c" if stat.S_ISCHR(m) else
             "b" if stat.S_ISBLK(m) else "p" if stat.S_ISFIFO(m) else "?")
        e = {"type": t, "mode": stat.S_IMODE(m), "uid": r["uid"],
             "gid": r["gid"], "mtime": r["mtime"], "xattrs": {}}
        if t == "f":
            e["size"] = r["size"]
            e["sha"] = r["extra"]
        if t == "l":
            e["link"] = r["extra"]
        if t in "cb":
            e["dev"] = r["dev"]
        out[p] = e
    return out


def main():
    rows = parse(sys.argv[2])
    if sys.argv[1] == "tree":
        json.dump(tree(rows), sys.stdout, sort_keys=True, indent=0)
        return 0
    if sys.argv[1] == "inode":
        paths = sys.argv[3:]
        got = [(rows[p]["ino"], rows[p]["nlink"]) for p in paths]
        print("# %s" % list(zip(paths, got)))
        return 0 if set(got) == {(got[0][0], len(paths))} else 1
    return 2


sys.exit(main())
