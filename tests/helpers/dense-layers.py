#!/usr/bin/env python3
# soci-nbd tests: layers for the dense-index tests (tests/plugin/dense.sh),
# one per way of writing gzip that the dense index must handle, each with
# its own files under /NAME/ so that the flattened image has them all:
#
#   dense-layers.py OUT
#     OUT/z1.tar.gz OUT/z6.tar.gz OUT/z9.tar.gz   zlib levels 1, 6, 9
#     OUT/multi.tar.gz   three gzip members, split inside files
#     OUT/flush.tar.gz   zlib with a full flush every 48 KiB
#     OUT/pigz.tar.gz    pigz (its own block and window handling)
#     OUT/go.tar         uncompressed: skopeo --dest-compress-format gzip
#                        compresses it with Go's gzip on the way
#   Deterministic: the same files every run (seeded).
import gzip, io, os, random, subprocess, sys, tarfile, zlib

WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do "
         "eiusmod tempor incididunt ut labore et dolore magna aliqua "
         "libc.so.6 /usr/lib/x86_64-linux-gnu ld-linux main start init "
         "config value error warning debug trace open read write close").split()
MTIME = 1700000000


def text(rng, n):
    out = []
    size = 0
    while size < n:
        w = rng.choice(WORDS)
        if rng.random() < 0.05:
            w = "%s_%d" % (w, rng.randrange(100000))
        out.append(w)
        size += len(w) + 1
    return (" ".join(out))[:n].encode()


def layer_tar(name, seed):
    rng = random.Random(seed)
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(path, data=None, kind="file", target=None):
            ti = tarfile.TarInfo("%s/%s" % (name, path) if path else name)
            ti.mtime = MTIME
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            elif kind == "link":
                ti.type, ti.linkname = tarfile.SYMTYPE, target
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                t.addfile(ti, io.BytesIO(data))
        add("", kind="dir")
        for d in ("bin", "lib", "share"):
            add(d, kind="dir")
        for i in range(150):
            add("share/doc%03d.txt" % i, text(rng, rng.randrange(200, 24000)))
        for i in range(12):
            add("lib/lib%02d.so" % i, text(rng, rng.randrange(80000, 700000)))
        for i in range(4):
            add("bin/blob%d" % i, rng.randbytes(rng.randrange(20000, 300000)))
        add("share/big.txt", text(rng, 3 << 20))
        add("bin/tool", text(rng, 150000))
        add("bin/link", kind="link", target="tool")
        add("share/empty", b"")
    return bio.getvalue()


def gz(data, level):
    return gzip.compress(data, compresslevel=level, mtime=0)


def multi(data):
    a, b = len(data) // 3 + 12345, 2 * len(data) // 3 + 777
    return gz(data[:a], 6) + gz(data[a:b], 9) + gz(data[b:], 1)


def full_flush(data):
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    out = []
    for i in range(0, len(data), 48 << 10):
        out.append(c.compress(data[i:i + (48 << 10)]))
        out.append(c.flush(zlib.Z_FULL_FLUSH))
    out.append(c.flush())
    return b"".join(out)


def pigz(data):
    return subprocess.run(["pigz", "-6", "-n", "-c"], input=data,
                          stdout=subprocess.PIPE, check=True).stdout


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    made = {
        "z1.tar.gz": lambda t: gz(t, 1),
        "z6.tar.gz": lambda t: gz(t, 6),
        "z9.tar.gz": lambda t: gz(t, 9),
        "multi.tar.gz": multi,
        "flush.tar.gz": full_flush,
        "pigz.tar.gz": pigz,
        "go.tar": lambda t: t,
    }
    for seed, (fname, fn) in enumerate(made.items()):
        name = fname.split(".")[0]
        with open(os.path.join(out, fname), "wb") as f:
            f.write(fn(layer_tar(name, seed)))


main()
