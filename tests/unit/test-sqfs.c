/* soci-nbd tests: the squashfs synthesis (lib/squashfs/sqfs-tree.c, lib/squashfs/sqfs.c) —
 * tree rules (implicit parents, overwrites, hard links, whiteouts, opaque
 * directories, flattening), limits, determinism and the region map. */
#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "squashfs/sqfs-tree.h"
#include "squashfs/sqfs.h"
#include "tap.h"
#include "soci/ztoc.h"

/* ---- building ztocs by hand ------------------------------------------- */

static struct sn_ztoc *
zt_new(void)
{
  struct sn_ztoc *z = sn_ztoc_new();

  if (z == NULL)
    abort();
  z->uncompressed_size = 1024;
  return z;
}

/* Append an entry; data follows a 512-byte header, as in a real tar. */
static struct sn_ztoc_file *
zt_add(struct sn_ztoc *z, const char *name, enum sn_ftype t, int64_t size,
       const char *link)
{
  struct sn_ztoc_file *f;
  const char *tn = sn_ftype_name(t);
  int64_t hdr = z->uncompressed_size - 1024;

  /* Capacity doubles whenever nfiles reaches a power of two. */
  if ((z->nfiles & (z->nfiles - 1)) == 0) {
    z->files = realloc(z->files, (z->nfiles ? z->nfiles * 2 : 1) *
                                 sizeof *z->files);
    if (z->files == NULL)
      abort();
  }
  f = &z->files[z->nfiles++];
  memset(f, 0, sizeof *f);
  if (sn_bytes_set(&f->name, name, strlen(name)) ||
      sn_bytes_set(&f->type, tn, strlen(tn)) ||
      sn_bytes_set(&f->linkname, link ? link : "", link ? strlen(link) : 0))
    abort();
  f->ftype = t;
  f->header_offset = hdr;
  f->offset = hdr + 512;
  f->size = t == SN_FT_REG ? size : 0;
  f->mode = t == SN_FT_DIR ? 0755 : 0644;
  f->mtime_sec = 1700000000;
  z->uncompressed_size = f->offset + (f->size + 511) / 512 * 512 + 1024;
  return f;
}

static void
zt_xattr(struct sn_ztoc_file *f, const char *key, const char *value)
{
  char k[256];

  snprintf(k, sizeof k, "SCHILY.xattr.%s", key);
  f->pax = realloc(f->pax, (f->npax + 1) * sizeof *f->pax);
  if (f->pax == NULL)
    abort();
  memset(&f->pax[f->npax], 0, sizeof *f->pax);
  if (sn_bytes_set(&f->pax[f->npax].key, k, strlen(k)) ||
      sn_bytes_set(&f->pax[f->npax].value, value, strlen(value)))
    abort();
  f->npax++;
}

/* ---- dumping a tree ----------------------------------------------------- */

static const char *kind_names[] = { "d", "f", "l", "c", "b", "p", "wh" };

struct dump {
  char buf[8192];
  size_t len;
};

static void
dump_node(struct dump *d, const struct sn_node *n, const char *prefix)
{
  char path[1024];
  size_t i;

  for (i = 0; i < n->nkids; i++) {
    const struct sn_node *k = n->kids[i];
    const struct sn_inode *in = k->inode;

    snprintf(path, sizeof path, "%s%s", prefix, k->name);
    d->len += snprintf(d->buf + d->len, sizeof d->buf - d->len, "%s %s%s%s",
                       path, kind_names[in->kind], in->opaque ? " opq" : "",
                       in->f == NULL && in->kind == SN_K_DIR ? " implicit"
                                                             : "");
    if (in->kind != SN_K_DIR && in->nlink > 1)
      d->len += snprintf(d->buf + d->len, sizeof d->buf - d->len,
                         " nlink=%" PRIu32, in->nlink);
    if (in->kind == SN_K_REG)
      d->len += snprintf(d->buf + d->len, sizeof d->buf - d->len,
                         " L%zu:%" PRId64, in->layer, in->f->size);
    d->len += snprintf(d->buf + d->len, sizeof d->buf - d->len, "\n");
    if (in->kind == SN_K_DIR) {
      snprintf(path, sizeof path, "%s%s/", prefix, k->name);
      dump_node(d, k, path);
    }
  }
}

/* Build a tree from the ztocs and compare its dump; NULL expected = the
 * build must fail with an error containing `err`. */
static void
check_tree(const char *what, enum sn_sqfs_mode mode, struct sn_ztoc **z,
           size_t n, const char *expected, const char *err)
{
  struct sn_tree *t = sn_tree_new(mode, NULL, NULL);
  struct dump d = { .len = 0 };
  size_t i;
  int r = 0;

  for (i = 0; i < n && r == 0; i++)
    r = sn_tree_add_layer(t, z[i], i);
  if (r == 0)
    r = sn_tree_finish(t);
  if (expected == NULL) {
    ok(r == -1 && strstr(sn_error(), err) != NULL, "%s: fails (%s)", what,
       r == -1 ? sn_error() : "succeeded");
  }
  else if (r == -1)
    ok(0, "%s: %s", what, sn_error());
  else {
    dump_node(&d, sn_tree_root(t), "");
    d.buf[d.len] = '\0';
    if (!ok(strcmp(d.buf, expected) == 0, "%s", what))
      diag("got:\n%s# expected:\n%s", d.buf, expected);
  }
  sn_tree_free(t);
}

static void
free_all(struct sn_ztoc **z, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    sn_ztoc_free(z[i]);
}

static void
test_basic_rules(void)
{
  struct sn_ztoc *z[1] = { zt_new() };

  zt_add(z[0], "./a/b/c", SN_FT_REG, 5, NULL);
  zt_add(z[0], "x", SN_FT_REG, 1, NULL);
  zt_add(z[0], "/x", SN_FT_REG, 7, NULL);          /* later wins */
  zt_add(z[0], "a/", SN_FT_DIR, 0, NULL);          /* a gets metadata */
  zt_add(z[0], "y//z/../w", SN_FT_SYMLINK, 0, "x");
  zt_add(z[0], "h", SN_FT_HARDLINK, 0, "./x");
  zt_add(z[0], "./", SN_FT_DIR, 0, NULL);          /* the root */
  zt_add(z[0], "q", SN_FT_REG, 1, NULL);
  zt_add(z[0], "q/r", SN_FT_FIFO, 0, NULL);        /* file → implicit dir */
  zt_add(z[0], "B", SN_FT_BLOCK, 0, NULL);
  check_tree("implicit parents, cleaning, overwrite, hard link", SN_SQFS_FLAT,
             z, 1,
             "B b\n"
             "a d\n"
             "a/b d implicit\n"
             "a/b/c f L0:5\n"
             "h f nlink=2 L0:7\n"
             "q d implicit\n"
             "q/r p\n"
             "x f nlink=2 L0:7\n"
             "y d implicit\n"
             "y/w l\n", NULL);
  check_tree("same in LAYER mode", SN_SQFS_LAYER, z, 1,
             "B b\n"
             "a d\n"
             "a/b d implicit\n"
             "a/b/c f L0:5\n"
             "h f nlink=2 L0:7\n"
             "q d implicit\n"
             "q/r p\n"
             "x f nlink=2 L0:7\n"
             "y d implicit\n"
             "y/w l\n", NULL);
  free_all(z, 1);
}

/* Three layers with whiteouts and opaque dirs. */
static void
make_stack(struct sn_ztoc **z)
{
  z[0] = zt_new();
  z[1] = zt_new();
  z[2] = zt_new();
  zt_add(z[0], "d/", SN_FT_DIR, 0, NULL);
  zt_add(z[0], "d/f1", SN_FT_REG, 1, NULL);
  zt_add(z[0], "d/f2", SN_FT_REG, 2, NULL);
  zt_add(z[0], "d/sub/", SN_FT_DIR, 0, NULL);
  zt_add(z[0], "d/sub/g", SN_FT_REG, 3, NULL);
  zt_add(z[0], "d/sub/deep/", SN_FT_DIR, 0, NULL);
  zt_add(z[0], "d/sub/deep/x", SN_FT_REG, 4, NULL);
  zt_add(z[0], "e/", SN_FT_DIR, 0, NULL);
  zt_add(z[0], "e/h", SN_FT_REG, 5, NULL);
  zt_add(z[0], "k", SN_FT_REG, 6, NULL);
  zt_add(z[0], "t", SN_FT_REG, 7, NULL);
  zt_add(z[0], "m/", SN_FT_DIR, 0, NULL);
  zt_add(z[0], "m/old", SN_FT_REG, 8, NULL);

  zt_add(z[1], "d/", SN_FT_DIR, 0, NULL);
  zt_add(z[1], "d/.wh.f1", SN_FT_REG, 0, NULL);
  zt_add(z[1], "d/sub/", SN_FT_DIR, 0, NULL);
  zt_add(z[1], "d/sub/new", SN_FT_REG, 9, NULL);
  zt_add(z[1], "d/sub/deep/", SN_FT_DIR, 0, NULL);
  zt_add(z[1], "d/sub/.wh..wh..opq", SN_FT_REG, 0, NULL);  /* after new */
  zt_add(z[1], ".wh.e", SN_FT_REG, 0, NULL);
  zt_add(z[1], "k/", SN_FT_DIR, 0, NULL);         /* dir replaces file */
  zt_add(z[1], "k/in", SN_FT_REG, 10, NULL);
  zt_add(z[1], "hl", SN_FT_HARDLINK, 0, "t");     /* target in layer 0 */
  zt_add(z[1], ".wh..wh.plnk", SN_FT_DIR, 0, NULL);
  zt_add(z[1], "m/", SN_FT_DIR, 0, NULL);
  zt_add(z[1], "m/mine", SN_FT_REG, 11, NULL);
  zt_add(z[1], ".wh.m", SN_FT_REG, 0, NULL);      /* same layer as dir m */
  zt_add(z[1], "n", SN_FT_REG, 12, NULL);
  zt_add(z[1], ".wh.n", SN_FT_REG, 0, NULL);      /* same layer as file n */

  zt_add(z[2], ".wh.t", SN_FT_REG, 0, NULL);      /* hl keeps the data */
  zt_add(z[2], "e", SN_FT_REG, 13, NULL);
  zt_add(z[2], "k/.wh.in", SN_FT_REG, 0, NULL);
  zt_add(z[2], "d/.wh.nothing", SN_FT_REG, 0, NULL);
}

static void
test_flatten(void)
{
  struct sn_ztoc *z[3];

  make_stack(z);
  check_tree("FLAT: 3 layers with whiteouts and opaque dirs", SN_SQFS_FLAT,
             z, 3,
             "d d\n"
             "d/f2 f L0:2\n"
             "d/sub d\n"
             "d/sub/deep d\n"
             "d/sub/new f L1:9\n"
             "e f L2:13\n"
             "hl f L0:7\n"
             "k d\n"
             "m d\n"
             "m/mine f L1:11\n"
             "n f L1:12\n", NULL);
  check_tree("LAYER 1 with a hard link into layer 0 refused", SN_SQFS_LAYER,
             z + 1, 1, NULL, "hard link 'hl': target 't' is not in this "
             "layer");
  /* Drop the hard link (entry 9) and translate the rest. */
  sn_ztoc_file_clear(&z[1]->files[9]);
  memmove(&z[1]->files[9], &z[1]->files[10],
          (z[1]->nfiles - 10) * sizeof *z[1]->files);
  z[1]->nfiles--;
  check_tree("LAYER 1 translated for overlayfs", SN_SQFS_LAYER, z + 1, 1,
             "d d\n"
             "d/f1 wh\n"
             "d/sub d opq\n"
             "d/sub/deep d\n"
             "d/sub/new f L0:9\n"
             "e wh\n"
             "k d\n"
             "k/in f L0:10\n"
             "m d opq\n"
             "m/mine f L0:11\n"
             "n f L0:12\n", NULL);
  check_tree("LAYER 2 translated for overlayfs", SN_SQFS_LAYER, z + 2, 1,
             "d d implicit\n"
             "d/nothing wh\n"
             "e f L0:13\n"
             "k d implicit\n"
             "k/in wh\n"
             "t wh\n", NULL);
  free_all(z, 3);
}

static void
test_errors(void)
{
  struct sn_ztoc *z[2] = { zt_new(), zt_new() };
  char name[300];

  zt_add(z[0], "t", SN_FT_REG, 1, NULL);
  zt_add(z[0], "dir/", SN_FT_DIR, 0, NULL);
  zt_add(z[1], "hl", SN_FT_HARDLINK, 0, "t");
  check_tree("LAYER: hard link into a lower layer refused", SN_SQFS_LAYER,
             z + 1, 1, NULL, "hard link 'hl': target 't' is not in this "
             "layer");
  check_tree("FLAT: hard link into a lower layer resolves", SN_SQFS_FLAT,
             z, 2, "dir d\nhl f nlink=2 L0:1\nt f nlink=2 L0:1\n", NULL);
  sn_ztoc_free(z[1]);
  z[1] = zt_new();
  zt_add(z[1], "hl", SN_FT_HARDLINK, 0, "dir");
  check_tree("hard link to a directory refused", SN_SQFS_FLAT, z, 2, NULL,
             "hard link 'hl': target 'dir' is a directory");
  sn_ztoc_free(z[1]);
  z[1] = zt_new();
  zt_add(z[1], "hl", SN_FT_HARDLINK, 0, "missing");
  check_tree("dangling hard link refused", SN_SQFS_FLAT, z, 2, NULL,
             "hard link 'hl': target 'missing' does not exist");
  sn_ztoc_free(z[1]);

  z[1] = zt_new();
  memset(name, 'n', 256);
  name[256] = '\0';
  zt_add(z[1], name, SN_FT_REG, 0, NULL);
  {
    char want[320];

    snprintf(want, sizeof want, "%s f L0:0\n", name);
    check_tree("a 256-byte name is fine", SN_SQFS_FLAT, z + 1, 1, want,
               NULL);
  }
  sn_ztoc_free(z[1]);
  z[1] = zt_new();
  memset(name, 'n', 257);
  name[257] = '\0';
  memcpy(name + 257, "/f", 3);
  zt_add(z[1], name, SN_FT_REG, 0, NULL);
  check_tree("a 257-byte directory name is refused", SN_SQFS_FLAT, z + 1, 1,
             NULL, "is 257 bytes long (squashfs allows 256)");
  sn_ztoc_free(z[1]);
  z[1] = zt_new();
  memset(name, 'n', 257);
  name[257] = '\0';
  zt_add(z[1], name, SN_FT_REG, 0, NULL);
  check_tree("a 257-byte name is refused", SN_SQFS_FLAT, z + 1, 1, NULL,
             "is 257 bytes long (squashfs allows 256)");
  sn_ztoc_free(z[1]);
  z[1] = zt_new();
  zt_add(z[1], "./", SN_FT_REG, 0, NULL);
  check_tree("a non-directory root is refused", SN_SQFS_FLAT, z + 1, 1, NULL,
             "the root can only be a directory");
  free_all(z, 2);
}

/* ---- images -------------------------------------------------------------- */

static uint8_t
pattern(size_t layer, uint64_t off)
{
  return (uint8_t) (off * 7 + layer * 101 + (off >> 9));
}

static int
fake_tar(void *opaque, size_t layer, void *buf, size_t len, uint64_t off)
{
  const struct sn_sqfs *img = opaque;
  uint8_t *p = buf;
  size_t i;

  (void) img;
  for (i = 0; i < len; i++)
    p[i] = pattern(layer, off + i);
  return 0;
}

static uint8_t *
read_all(const struct sn_sqfs *img)
{
  uint8_t *buf = malloc(sn_sqfs_size(img));

  if (buf == NULL || sn_sqfs_read(img, buf, sn_sqfs_size(img), 0, fake_tar,
                                  (void *) img) == -1)
    abort();
  return buf;
}

static uint64_t
le64(const uint8_t *p)
{
  uint64_t v = 0;
  int i;

  for (i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

static uint32_t
le32(const uint8_t *p)
{
  return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
         (uint32_t) p[3] << 24;
}

static int nwarn;
static char lastwarn[512];

static void
count_warn(void *opaque, const char *msg)
{
  (void) opaque;
  nwarn++;
  snprintf(lastwarn, sizeof lastwarn, "%s", msg);
}

static void
test_image(void)
{
  struct sn_ztoc *z[3];
  struct sn_sqfs_opts o = { .mode = SN_SQFS_FLAT, .warn = count_warn };
  struct sn_sqfs *a, *b;
  uint8_t *ba, *bb, *buf;
  const struct sn_sqfs_region *r;
  uint64_t size;
  size_t i, l;
  bool good;

  make_stack(z);
  zt_add(z[2], "big", SN_FT_REG, 300000, NULL);
  zt_xattr(zt_add(z[2], "x", SN_FT_REG, 3, NULL), "user.a", "1");
  zt_xattr(&z[2]->files[z[2]->nfiles - 1], "system.posix_acl_access", "z");
  a = sn_sqfs_new((const struct sn_ztoc *const *) z, 3, &o);
  ok(a != NULL, "FLAT image of 3 layers: %s", a ? "built" : sn_error());
  if (a == NULL)
    goto out;
  ok(nwarn == 1 && strstr(lastwarn, "system.posix_acl_access dropped"),
     "dropped xattr reported (%s)", lastwarn);
  b = sn_sqfs_new((const struct sn_ztoc *const *) z, 3, &o);
  size = sn_sqfs_size(a);
  ok(b && sn_sqfs_size(b) == size && size % 4096 == 0,
     "same size twice (%" PRIu64 "), a multiple of 4096", size);
  ba = read_all(a);
  bb = read_all(b);
  ok(memcmp(ba, bb, size) == 0, "byte for byte deterministic");
  ok(memcmp(ba, "hsqs", 4) == 0 && le64(ba + 40) == sn_sqfs_bytes_used(a) &&
     le32(ba + 4) == sn_sqfs_inode_count(a) && le32(ba + 12) == 131072,
     "superblock: magic, bytes_used, inode count, block size");
  ok(sn_sqfs_layer_base(a, 0) == SN_SQFS_FIRST_BASE &&
     sn_sqfs_layer_base(a, 1) % 4096 == 0 &&
     sn_sqfs_layer_base(a, 1) >= SN_SQFS_FIRST_BASE +
       (uint64_t) z[0]->uncompressed_size &&
     sn_sqfs_layer_base(a, 2) > sn_sqfs_layer_base(a, 1),
     "layer bases 4096-aligned, in order");

  /* Regions: contiguous, cover the image, tar bytes where expected. */
  good = sn_sqfs_nregions(a) > 0 && sn_sqfs_region(a, 0)->start == 0;
  for (i = 0; i < sn_sqfs_nregions(a); i++) {
    r = sn_sqfs_region(a, i);
    if (i > 0 && r->start != sn_sqfs_region(a, i - 1)->end)
      good = false;
    if (r->kind == SN_SQFS_REGION_TAR &&
        (r->start != sn_sqfs_layer_base(a, r->layer) ||
         r->end - r->start !=
           (uint64_t) z[r->layer]->uncompressed_size))
      good = false;
  }
  ok(good && sn_sqfs_region(a, sn_sqfs_nregions(a) - 1)->end == size,
     "%zu regions, contiguous, covering the image", sn_sqfs_nregions(a));
  good = true;
  for (l = 0; l < 3; l++)
    for (i = 0; i < (size_t) z[l]->uncompressed_size; i++)
      if (ba[sn_sqfs_layer_base(a, l) + i] != pattern(l, i))
        good = false;
  ok(good, "every layer's tar bytes at its base");
  good = true;
  for (i = 96; i < 4096; i++)
    if (ba[i] != 0)
      good = false;
  for (i = sn_sqfs_bytes_used(a); i < size; i++)
    if (ba[i] != 0)
      good = false;
  ok(good, "zero padding after the superblock and after bytes_used");

  /* Reads of every size at every region boundary, and random reads. */
  buf = malloc(size);
  good = true;
  for (i = 0; i < sn_sqfs_nregions(a); i++) {
    uint64_t edge = sn_sqfs_region(a, i)->start;
    uint64_t s, e;

    for (s = edge > 700 ? edge - 700 : 0; s <= edge + 3 && s < size;
         s += 233)
      for (e = edge; e < edge + 1500 && e <= size; e += 311) {
        if (e < s)
          continue;
        memset(buf, 0xaa, e - s);
        if (sn_sqfs_read(a, buf, e - s, s, fake_tar, a) == -1 ||
            memcmp(buf, ba + s, e - s) != 0)
          good = false;
      }
  }
  srand(7);
  for (i = 0; i < 2000; i++) {
    uint64_t s = (uint64_t) rand() % size;
    size_t n = (size_t) rand() % 20000;

    if (n > size - s)
      n = size - s;
    if (sn_sqfs_read(a, buf, n, s, fake_tar, a) == -1 ||
        memcmp(buf, ba + s, n) != 0)
      good = false;
  }
  ok(good, "reads across region boundaries match the whole image");
  ok(sn_sqfs_read(a, buf, 1, size, fake_tar, a) == -1 &&
     sn_sqfs_read(a, buf, 2, size - 1, fake_tar, a) == -1 &&
     sn_sqfs_read(a, buf, 0, size, fake_tar, a) == 0,
     "reads beyond the end refused");
  ok(sn_sqfs_read(a, buf, 4096, 0, NULL, NULL) == 0 &&
     sn_sqfs_read(a, buf, 4096, SN_SQFS_FIRST_BASE - 4096, NULL,
                  NULL) == 0 &&
     sn_sqfs_read(a, buf, 1, SN_SQFS_FIRST_BASE, NULL, NULL) == -1,
     "no tar reader needed outside tar regions (the first MiB)");
  free(buf);
  free(ba);
  free(bb);
  sn_sqfs_free(b);

  /* LAYER mode: exactly one layer. */
  o.mode = SN_SQFS_LAYER;
  b = sn_sqfs_new((const struct sn_ztoc *const *) z, 2, &o);
  ok(b == NULL && strstr(sn_error(), "exactly one layer"),
     "LAYER mode with 2 layers refused");
  b = sn_sqfs_new((const struct sn_ztoc *const *) z + 1, 1, &o);
  ok(b == NULL && strstr(sn_error(), "hard link 'hl'"),
     "LAYER image of layer 1 (hard link into layer 0) refused");
  b = sn_sqfs_new((const struct sn_ztoc *const *) z + 2, 1, &o);
  ok(b != NULL && sn_sqfs_nlayers(b) == 1 &&
     sn_sqfs_layer_base(b, 0) == SN_SQFS_FIRST_BASE,
     "LAYER image of layer 2");
  sn_sqfs_free(b);
  o.block_size = 3000;
  b = sn_sqfs_new((const struct sn_ztoc *const *) z + 1, 1, &o);
  ok(b == NULL && strstr(sn_error(), "block size"), "bad block size refused");
  sn_sqfs_free(a);
out:
  free_all(z, 3);
}

/* The first inodes follow the 2-byte header of the first (raw) metadata
 * block: "a" (inode 1) at +2, "b" (inode 2, an empty basic file of 32
 * bytes) at +34; the mtime is at offset 8 of an inode. */
static void
test_limits(void)
{
  struct sn_ztoc *z = zt_new();
  struct sn_ztoc_file *f;
  struct sn_sqfs *img;
  uint8_t m[80];
  uint64_t meta = 0;
  size_t i;

  f = zt_add(z, "a", SN_FT_REG, 0, NULL);
  f->mtime_sec = -5;
  f = zt_add(z, "b", SN_FT_REG, 0, NULL);
  f->mtime_sec = (int64_t) 1 << 33;
  img = sn_sqfs_new((const struct sn_ztoc *const *) &z, 1, NULL);
  ok(img != NULL, "image with out-of-range mtimes");
  for (i = 0; img && i < sn_sqfs_nregions(img); i++)
    if (sn_sqfs_region(img, i)->kind == SN_SQFS_REGION_META)
      meta = sn_sqfs_region(img, i)->start;
  ok(img && sn_sqfs_read(img, m, sizeof m, meta, NULL, NULL) == 0 &&
     (le32(m) & 0xffff) == 0x8000 + (le32(m) & 0x7fff) &&
     le32(m + 2 + 8) == 0 && le32(m + 34 + 8) == UINT32_MAX &&
     le32(m + 2 + 12) == 1 && le32(m + 34 + 12) == 2,
     "mtime clamped to 0 and 2^32-1, metadata stored raw");
  sn_sqfs_free(img);
  sn_ztoc_free(z);

  z = zt_new();
  for (i = 0; i < 65536; i++) {
    char name[32];

    snprintf(name, sizeof name, "f%06zu", i);
    f = zt_add(z, name, SN_FT_REG, 0, NULL);
    f->uid = (uint32_t) i + 1000;   /* with gid 0: 65537 ids */
  }
  img = sn_sqfs_new((const struct sn_ztoc *const *) &z, 1, NULL);
  ok(img == NULL && strstr(sn_error(), "more than 65536 distinct uid/gid"),
     "65537 distinct ids refused: %s", img ? "built" : sn_error());
  sn_sqfs_free(img);
  z->nfiles--;
  sn_ztoc_file_clear(&z->files[z->nfiles]);
  img = sn_sqfs_new((const struct sn_ztoc *const *) &z, 1, NULL);
  ok(img != NULL, "65536 distinct ids accepted");
  sn_sqfs_free(img);
  sn_ztoc_free(z);
}

/* A path of `levels` components "a/a/.../f" (levels - 1 directories). */
static char *
deep_path(size_t levels)
{
  char *p = malloc(2 * levels + 1), *q = p;
  size_t i;

  if (p == NULL)
    abort();
  for (i = 0; i + 1 < levels; i++) {
    *q++ = 'a';
    *q++ = '/';
  }
  strcpy(q, "f");
  return p;
}

/* One layer with one deep entry: NULL and the error, or the image. */
static struct sn_sqfs *
deep_image(size_t levels, enum sn_sqfs_mode mode)
{
  struct sn_ztoc *z = zt_new();
  struct sn_sqfs_opts o = { .mode = mode };
  struct sn_sqfs *img;
  char *p = deep_path(levels);

  zt_add(z, p, SN_FT_REG, 3, NULL);
  img = sn_sqfs_new((const struct sn_ztoc *const *) &z, 1, &o);
  free(p);
  sn_ztoc_free(z);
  return img;
}

/* Hostile shapes: paths deep enough to exhaust a recursive walk, huge
 * directories, long hard-link chains, a deep tree hidden by an opaque
 * marker.  None may crash; the limits give one-line errors. */
static void
test_hostile_shapes(void)
{
  struct sn_ztoc *z[2];
  struct sn_sqfs *img;
  char *p;
  size_t i;

  img = deep_image(400000, SN_SQFS_FLAT);
  ok(img == NULL && strstr(sn_error(), "path is 799999 bytes long"),
     "400,000-level path refused: %s", img ? "built" : sn_error());
  sn_sqfs_free(img);
  img = deep_image(400000, SN_SQFS_LAYER);
  ok(img == NULL && strstr(sn_error(), "(the limit is 4096)"),
     "400,000-level path refused in a layer image: %s",
     img ? "built" : sn_error());
  sn_sqfs_free(img);
  img = deep_image(1024, SN_SQFS_FLAT);
  ok(img != NULL && sn_sqfs_inode_count(img) == 1025,
     "1024-level path accepted (1023 dirs, a file, the root): %s",
     img ? "built" : sn_error());
  sn_sqfs_free(img);
  img = deep_image(1025, SN_SQFS_FLAT);
  ok(img == NULL && strstr(sn_error(), "more than 1024 directories deep"),
     "1025-level path refused: %s", img ? "built" : sn_error());
  sn_sqfs_free(img);

  /* A 1000-level tree in layer 0, an opaque root in layer 1: all hidden. */
  z[0] = zt_new();
  z[1] = zt_new();
  p = deep_path(1000);
  zt_add(z[0], p, SN_FT_REG, 3, NULL);
  zt_add(z[1], ".wh..wh..opq", SN_FT_REG, 0, NULL);
  img = sn_sqfs_new((const struct sn_ztoc *const *) z, 2, NULL);
  ok(img != NULL && sn_sqfs_inode_count(img) == 1,
     "opaque root hides a 1000-level tree below it: %s",
     img ? "built" : sn_error());
  sn_sqfs_free(img);
  free(p);
  free_all(z, 2);

  /* 200,000 names in one directory; a hard-link chain of 5,000. */
  z[0] = zt_new();
  for (i = 0; i < 200000; i++) {
    char name[32];

    snprintf(name, sizeof name, "big/f%06zu", i);
    zt_add(z[0], name, SN_FT_REG, 0, NULL);
  }
  zt_add(z[0], "l0", SN_FT_REG, 1, NULL);
  for (i = 1; i <= 5000; i++) {
    char name[32], target[32];

    snprintf(name, sizeof name, "l%zu", i);
    snprintf(target, sizeof target, "l%zu", i - 1);
    zt_add(z[0], name, SN_FT_HARDLINK, 0, target);
  }
  img = sn_sqfs_new((const struct sn_ztoc *const *) z, 1, NULL);
  ok(img != NULL && sn_sqfs_inode_count(img) == 200000 + 1 + 2,
     "200,000-entry directory and a 5,000-link chain (one inode): %s",
     img ? "built" : sn_error());
  sn_sqfs_free(img);
  free_all(z, 1);
}

int
main(void)
{
  test_basic_rules();
  test_flatten();
  test_errors();
  test_image();
  test_limits();
  test_hostile_shapes();
  return done_testing();
}
