/* soci-nbd: the tar-identity squashfs image — squashfs metadata written
 * with libsquashfs 1.2 (meta, directory, id and xattr writers; never its
 * block processor, which would need the data) over the tree of
 * sqfs-tree.c, and the region map that serves any byte range of the image
 * from the superblock buffer, zeros, the layers' tar bytes and the
 * metadata buffer.
 *
 * Write order (docs/squashfs-layout.md §4): every non-directory
 * inode first, in tree order, then directories post-order, numbered 1..N
 * in write order (the root is N); then the directory table, the export
 * table, the id table, the xattr tables; bytes_used ends there.
 */
#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sqfs/compressor.h>
#include <sqfs/dir_writer.h>
#include <sqfs/error.h>
#include <sqfs/id_table.h>
#include <sqfs/inode.h>
#include <sqfs/io.h>
#include <sqfs/meta_writer.h>
#include <sqfs/super.h>
#include <sqfs/xattr_writer.h>

#include "util/err.h"
#include "squashfs/sqfs-tree.h"
#include "squashfs/sqfs.h"

#define SB_SIZE 96
#define ALIGN 4096
#define NO_XATTR 0xFFFFFFFFu
#define NO_FRAG 0xFFFFFFFFu
#define SYMLINK_MAX 4096
#define ID_SLOTS (1u << 17)     /* twice the squashfs limit of 65536 ids */

struct sn_sqfs {
  uint64_t size, bytes_used, meta_start;
  uint8_t super[SB_SIZE];
  uint8_t *meta;                  /* [meta_start, bytes_used) */
  size_t meta_len;
  uint64_t *bases;                /* per layer */
  size_t nlayers;
  uint32_t inode_count;
  struct sn_sqfs_region *regions;
  size_t nregions;
};

static uint64_t
round_up(uint64_t v)
{
  return (v + ALIGN - 1) & ~(uint64_t) (ALIGN - 1);
}

/* ---- an in-memory sqfs_file_t: superblock at 0, metadata at the end --- */

struct memfile {
  sqfs_file_t base;
  struct sn_sqfs *img;
  size_t cap;
};

static void
memfile_destroy(sqfs_object_t *obj)
{
  (void) obj;                   /* embedded in the writer; nothing to free */
}

static int
memfile_read_at(sqfs_file_t *file, sqfs_u64 off, void *buf, size_t size)
{
  (void) file; (void) off; (void) buf; (void) size;
  return SQFS_ERROR_IO;         /* the writers never read back */
}

/* Store a writer's bytes: the superblock into img->super, everything at or
 * after meta_start into the growing img->meta (gaps zero-filled).  Returns
 * 0 or a SQFS_ERROR_* code, as libsquashfs expects; nothing below it. */
static int
memfile_write_at(sqfs_file_t *file, sqfs_u64 off, const void *buf,
                 size_t size)
{
  struct memfile *m = (struct memfile *) file;
  struct sn_sqfs *img = m->img;
  uint64_t rel, end;

  if (off == 0 && size <= SB_SIZE) {
    memcpy(img->super, buf, size);
    return 0;
  }
  if (off < img->meta_start)
    return SQFS_ERROR_IO;       /* would overwrite the layers' data */
  rel = off - img->meta_start;
  end = rel + size;
  if (end > SIZE_MAX / 2)
    return SQFS_ERROR_OVERFLOW;
  if (end > m->cap) {
    size_t cap = m->cap ? m->cap : 65536;
    uint8_t *p;

    while (cap < end)
      cap *= 2;
    p = realloc(img->meta, cap);
    if (p == NULL)
      return SQFS_ERROR_ALLOC;
    img->meta = p;
    m->cap = cap;
  }
  if (rel > img->meta_len)
    memset(img->meta + img->meta_len, 0, rel - img->meta_len);
  memcpy(img->meta + rel, buf, size);
  if (end > img->meta_len)
    img->meta_len = end;
  return 0;
}

/* The file's end as the writers see it: meta_start + metadata so far. */
static sqfs_u64
memfile_get_size(const sqfs_file_t *file)
{
  const struct memfile *m = (const struct memfile *) file;

  return m->img->meta_start + m->img->meta_len;
}

static int
memfile_truncate(sqfs_file_t *file, sqfs_u64 size)
{
  (void) file; (void) size;
  return SQFS_ERROR_IO;
}

/* ---- a "compressor" that never compresses: blocks are stored raw ------- */

static void
nocomp_destroy(sqfs_object_t *obj)
{
  (void) obj;
}

static void
nocomp_get_configuration(const sqfs_compressor_t *cmp,
                         sqfs_compressor_config_t *cfg)
{
  (void) cmp;
  memset(cfg, 0, sizeof *cfg);
  cfg->id = SQFS_COMP_GZIP;
}

static int
nocomp_options(sqfs_compressor_t *cmp, sqfs_file_t *file)
{
  (void) cmp; (void) file;
  return 0;
}

static sqfs_s32
nocomp_do_block(sqfs_compressor_t *cmp, const sqfs_u8 *in, sqfs_u32 size,
                sqfs_u8 *out, sqfs_u32 outsize)
{
  (void) cmp; (void) in; (void) size; (void) out; (void) outsize;
  return 0;                     /* "no gain": the writer stores it raw */
}

/* ---- writing the metadata ----------------------------------------------- */

struct writer {
  struct sn_sqfs *img;
  struct sn_tree *tree;
  const struct sn_ztoc *const *layers;
  uint32_t block_size;
  struct memfile file;
  sqfs_compressor_t cmp;
  sqfs_super_t super;
  sqfs_meta_writer_t *im, *dm;
  sqfs_dir_writer_t *dw;
  sqfs_id_table_t *ids;
  uint64_t *idcache;            /* ID_SLOTS of (1<<48 | id<<16 | index) */
  sqfs_xattr_writer_t *xw;
  struct sn_inode **order;      /* write order; ino = index + 1 */
  struct sn_node **order_node;  /* a node naming each inode (for messages
                                   and parents) */
  size_t norder, ocap;
};

/* Turn a libsquashfs error code into our convention: -1, message set. */
static int
sqfs_fail(int err, const char *what)
{
  if (err == SQFS_ERROR_ALLOC)
    return sn_oom();
  return sn_set_error("squashfs: %s: libsquashfs error %d", what, err);
}

/* The name to put in messages: the tar entry's, else the node's ("/"). */
static const char *
entry_name(const struct sn_inode *i, const struct sn_node *n)
{
  if (i->f)
    return i->f->name.data;
  return n->namelen ? n->name : "/";
}

/* Append n's inode to the write order and number it (ino = position + 1,
 * docs/squashfs-layout.md §4).  -1 on allocation failure or overflow. */
static int
push(struct writer *w, struct sn_node *n)
{
  if (w->norder == w->ocap) {
    size_t cap = w->ocap ? w->ocap * 2 : 256;
    struct sn_inode **o = realloc(w->order, cap * sizeof *o);
    struct sn_node **on;

    if (o == NULL)
      return sn_oom();
    w->order = o;
    on = realloc(w->order_node, cap * sizeof *on);
    if (on == NULL)
      return sn_oom();
    w->order_node = on;
    w->ocap = cap;
  }
  if (w->norder >= UINT32_MAX - 1)
    return sn_set_error("squashfs: too many inodes");
  w->order[w->norder] = n->inode;
  w->order_node[w->norder] = n;
  w->norder++;
  n->inode->listed = true;
  n->inode->ino = (uint32_t) w->norder;
  return 0;
}

/* Write order, part 1: every non-directory inode once, in tree order. */
static int
collect_nondir(struct sn_node *k, void *opaque)
{
  if (k->inode->kind == SN_K_DIR)
    return 1;
  return k->inode->listed ? 0 : push(opaque, k);
}

/* Write order, part 2: directories post-order (the root last). */
static int
descend_dirs(struct sn_node *k, void *opaque)
{
  (void) opaque;
  return k->inode->kind == SN_K_DIR;
}

static int
collect_dir(struct sn_node *d, void *opaque)
{
  return push(opaque, d);
}

static bool
has_prefix(const char *s, const char *p)
{
  return strncmp(s, p, strlen(p)) == 0;
}

/* Write the inode's xattr set; *idx = NO_XATTR when it has none. */
static int
write_xattrs(struct writer *w, const struct sn_inode *i,
             const struct sn_node *n, uint32_t *idx)
{
  static const char pfx[] = "SCHILY.xattr.";
  const size_t plen = sizeof pfx - 1;
  bool begun = false;
  size_t k;
  int err;

  *idx = NO_XATTR;
  for (k = 0; i->f && k < i->f->npax; k++) {
    const struct sn_pax *p = &i->f->pax[k];
    const char *key = p->key.data + plen;

    if (p->key.len <= plen || memcmp(p->key.data, pfx, plen) != 0)
      continue;
    if (strlen(key) != p->key.len - plen)
      continue;                 /* a NUL in the key: not representable */
    if (has_prefix(key, "trusted.overlay.") ||
        has_prefix(key, "user.overlay.")) {
      sn_tree_warn(w->tree, "%s: xattr %s stripped (overlayfs metadata "
                   "comes only from whiteout translation)",
                   entry_name(i, n), key);
      continue;
    }
    if (!has_prefix(key, "user.") && !has_prefix(key, "trusted.") &&
        !has_prefix(key, "security.")) {
      sn_tree_warn(w->tree, "%s: xattr %s dropped (squashfs stores only "
                   "user., trusted. and security. xattrs)",
                   entry_name(i, n), key);
      continue;
    }
    if (!begun) {
      if ((err = sqfs_xattr_writer_begin(w->xw, 0)) != 0)
        return sqfs_fail(err, "xattrs");
      begun = true;
    }
    err = sqfs_xattr_writer_add(w->xw, key, p->value.data, p->value.len);
    if (err == SQFS_ERROR_UNSUPPORTED) {
      sn_tree_warn(w->tree, "%s: xattr %s dropped (not representable)",
                   entry_name(i, n), key);
      continue;
    }
    if (err)
      return sqfs_fail(err, "xattrs");
  }
  if (i->opaque) {
    if (!begun) {
      if ((err = sqfs_xattr_writer_begin(w->xw, 0)) != 0)
        return sqfs_fail(err, "xattrs");
      begun = true;
    }
    if ((err = sqfs_xattr_writer_add(w->xw, "trusted.overlay.opaque", "y",
                                     1)) != 0)
      return sqfs_fail(err, "xattrs");
  }
  if (begun && (err = sqfs_xattr_writer_end(w->xw, idx)) != 0)
    return sqfs_fail(err, "xattrs");
  return 0;
}

/* id → id table index; the cache keeps libsquashfs's linear search to the
 * first sight of each id. */
static int
id_index(struct writer *w, uint32_t id, sqfs_u16 *out)
{
  uint32_t j = (id * 2654435761u) >> 15;
  int err;

  for (;; j = (j + 1) & (ID_SLOTS - 1)) {
    uint64_t e = w->idcache[j];

    if (e == 0)
      break;
    if ((uint32_t) (e >> 16) == id) {
      *out = (sqfs_u16) e;
      return 0;
    }
  }
  if ((err = sqfs_id_table_id_to_index(w->ids, id, out)) != 0)
    return err;
  w->idcache[j] = (1ULL << 48) | ((uint64_t) id << 16) | *out;
  return 0;
}

/* Common header fields: type bits excluded, ids, clamped mtime, ino. */
static int
fill_base(struct writer *w, sqfs_inode_generic_t *in,
          const struct sn_inode *i, const struct sn_node *n)
{
  uint32_t uid = 0, gid = 0, mode = 0755;
  int64_t mtime = 0;
  int err;

  if (i->f) {
    uid = i->f->uid;
    gid = i->f->gid;
    mode = (uint32_t) (i->f->mode & 07777);
    mtime = i->f->mtime_sec;
  }
  else if (i->kind == SN_K_WHITEOUT) {
    uid = i->wh_uid;
    gid = i->wh_gid;
    mode = 0;
    mtime = i->wh_mtime;
  }
  if (mtime < 0)
    mtime = 0;
  if (mtime > UINT32_MAX)
    mtime = UINT32_MAX;
  in->base.mode = (sqfs_u16) mode;
  in->base.mod_time = (sqfs_u32) mtime;
  in->base.inode_number = i->ino;
  if ((err = id_index(w, uid, &in->base.uid_idx)) ||
      (err = id_index(w, gid, &in->base.gid_idx))) {
    if (err == SQFS_ERROR_OVERFLOW)
      return sn_set_error("entry '%s': more than 65536 distinct uid/gid "
                          "values (the squashfs limit)", entry_name(i, n));
    return sqfs_fail(err, "id table");
  }
  return 0;
}

/* A zeroed generic inode with room for payload bytes of block sizes or
 * symlink target; NULL with the error set on allocation failure. */
static sqfs_inode_generic_t *
alloc_inode(size_t payload)
{
  sqfs_inode_generic_t *in = calloc(1, sizeof *in + payload);

  if (in == NULL)
    sn_oom();
  else
    in->payload_bytes_available = (sqfs_u32) payload;
  return in;
}

/* The inode of a regular file (docs/squashfs-layout.md §3): its blocks are
 * the file's bytes inside layer i->layer's tar, each stored uncompressed,
 * no fragment; extended when it has xattrs, links or offsets over 4 GiB.
 * Returns a malloc'd inode, or NULL with the error set. */
static sqfs_inode_generic_t *
file_inode(struct writer *w, const struct sn_inode *i,
           const struct sn_node *n, uint32_t xattr)
{
  const struct sn_ztoc_file *f = i->f;
  const struct sn_ztoc *z = w->layers[i->layer];
  uint64_t size = (uint64_t) f->size, start = 0, nblocks, b;
  sqfs_inode_generic_t *in;

  if (f->size < 0 || f->offset < 0 || f->offset > z->uncompressed_size ||
      f->size > z->uncompressed_size - f->offset) {
    sn_set_error("entry '%s': data [%" PRId64 ", +%" PRId64 ") lies "
                 "outside the layer's %" PRId64 " tar bytes",
                 entry_name(i, n), f->offset, f->size,
                 z->uncompressed_size);
    return NULL;
  }
  nblocks = (size + w->block_size - 1) / w->block_size;
  if (nblocks > 0x3FFFFFFF) {
    sn_set_error("entry '%s': file too large", entry_name(i, n));
    return NULL;
  }
  if (size > 0)
    start = w->img->bases[i->layer] + (uint64_t) f->offset;
  in = alloc_inode(nblocks * 4);
  if (in == NULL)
    return NULL;
  in->payload_bytes_used = (sqfs_u32) (nblocks * 4);
  for (b = 0; b < nblocks; b++) {
    uint64_t len = size - b * w->block_size;

    if (len > w->block_size)
      len = w->block_size;
    in->extra[b] = (sqfs_u32) len | (1u << 24);
  }
  if (xattr != NO_XATTR || i->nlink > 1 || size > UINT32_MAX ||
      start > UINT32_MAX) {
    in->base.type = SQFS_INODE_EXT_FILE;
    in->data.file_ext.blocks_start = start;
    in->data.file_ext.file_size = size;
    in->data.file_ext.sparse = 0;
    in->data.file_ext.nlink = i->nlink;
    in->data.file_ext.fragment_idx = NO_FRAG;
    in->data.file_ext.fragment_offset = NO_FRAG;
    in->data.file_ext.xattr_idx = xattr;
  }
  else {
    in->base.type = SQFS_INODE_FILE;
    in->data.file.blocks_start = (sqfs_u32) start;
    in->data.file.fragment_index = NO_FRAG;
    in->data.file.fragment_offset = NO_FRAG;
    in->data.file.file_size = (sqfs_u32) size;
  }
  return in;
}

/* The inode of a symlink, device, whiteout (char 0/0) or FIFO, extended
 * only when it has xattrs.  Refuses targets over SYMLINK_MAX and device
 * numbers outside 12:20 bits.  Malloc'd inode, or NULL with the error. */
static sqfs_inode_generic_t *
other_inode(const struct sn_inode *i, const struct sn_node *n,
            uint32_t xattr)
{
  const struct sn_ztoc_file *f = i->f;
  bool ext = xattr != NO_XATTR;
  sqfs_inode_generic_t *in;

  switch (i->kind) {
  case SN_K_SYMLINK: {
    size_t len = f->linkname.len;

    if (len > SYMLINK_MAX) {
      sn_set_error("entry '%s': symlink target of %zu bytes (the kernel "
                   "reads at most %d)", entry_name(i, n), len, SYMLINK_MAX);
      return NULL;
    }
    if ((in = alloc_inode(len)) == NULL)
      return NULL;
    memcpy(in->extra, f->linkname.data, len);
    in->payload_bytes_used = (sqfs_u32) len;
    in->base.type = ext ? SQFS_INODE_EXT_SLINK : SQFS_INODE_SLINK;
    in->data.slink_ext.nlink = i->nlink;   /* same layout as slink */
    in->data.slink_ext.target_size = (sqfs_u32) len;
    if (ext)
      in->data.slink_ext.xattr_idx = xattr;
    return in;
  }
  case SN_K_CHAR: case SN_K_BLOCK: case SN_K_WHITEOUT: {
    int64_t maj = f ? f->devmajor : 0, min = f ? f->devminor : 0;
    uint32_t devno;

    if (maj < 0 || maj > 0xfff || min < 0 || min > 0xfffff) {
      sn_set_error("entry '%s': device %" PRId64 ":%" PRId64 " does not "
                   "fit squashfs's 12:20-bit encoding", entry_name(i, n),
                   maj, min);
      return NULL;
    }
    devno = ((uint32_t) min & 0xff) | ((uint32_t) maj << 8) |
            (((uint32_t) min & ~0xffu) << 12);
    if ((in = alloc_inode(0)) == NULL)
      return NULL;
    if (i->kind == SN_K_BLOCK)
      in->base.type = ext ? SQFS_INODE_EXT_BDEV : SQFS_INODE_BDEV;
    else
      in->base.type = ext ? SQFS_INODE_EXT_CDEV : SQFS_INODE_CDEV;
    in->data.dev_ext.nlink = i->nlink;     /* same layout as dev */
    in->data.dev_ext.devno = devno;
    if (ext)
      in->data.dev_ext.xattr_idx = xattr;
    return in;
  }
  case SN_K_FIFO:
    if ((in = alloc_inode(0)) == NULL)
      return NULL;
    in->base.type = ext ? SQFS_INODE_EXT_FIFO : SQFS_INODE_FIFO;
    in->data.ipc_ext.nlink = i->nlink;
    if (ext)
      in->data.ipc_ext.xattr_idx = xattr;
    return in;
  default:
    sn_set_error("entry '%s': internal error: unexpected inode kind",
                 entry_name(i, n));
    return NULL;
  }
}

/* Fill in's common fields, record where it lands (i->ref) and append it to
 * the inode table.  Frees in in every case. */
static int
emit_inode(struct writer *w, sqfs_inode_generic_t *in,
           struct sn_inode *i, const struct sn_node *n)
{
  sqfs_u64 block;
  sqfs_u32 offset;
  int err;

  if (fill_base(w, in, i, n) == -1) {
    free(in);
    return -1;
  }
  sqfs_meta_writer_get_position(w->im, &block, &offset);
  i->ref = (block << 16) | offset;
  err = sqfs_meta_writer_write_inode(w->im, in);
  free(in);
  if (err)
    return sqfs_fail(err, "inode table");
  return 0;
}

/* The directory-entry type for a kind (whiteouts are character devices). */
static sqfs_u16
type_bits(enum sn_kind k)
{
  switch (k) {
  case SN_K_DIR: return SQFS_INODE_MODE_DIR;
  case SN_K_REG: return SQFS_INODE_MODE_REG;
  case SN_K_SYMLINK: return SQFS_INODE_MODE_LNK;
  case SN_K_BLOCK: return SQFS_INODE_MODE_BLK;
  case SN_K_FIFO: return SQFS_INODE_MODE_FIFO;
  case SN_K_CHAR: case SN_K_WHITEOUT: default: return SQFS_INODE_MODE_CHR;
  }
}

/* Write directory d's entries (already in bytewise order) and then its
 * inode; the root's parent is the inode count + 1, as squashfs wants. */
static int
write_dir(struct writer *w, struct sn_node *d)
{
  struct sn_inode *i = d->inode;
  sqfs_inode_generic_t *in;
  uint32_t xattr, parent;
  size_t k;
  int err;

  if ((err = sqfs_dir_writer_begin(w->dw, 0)) != 0)
    return sqfs_fail(err, "directory table");
  for (k = 0; k < d->nkids; k++) {
    const struct sn_node *c = d->kids[k];

    err = sqfs_dir_writer_add_entry(w->dw, c->name, c->inode->ino,
                                    c->inode->ref, type_bits(c->inode->kind));
    if (err)
      return sqfs_fail(err, "directory table");
  }
  if ((err = sqfs_dir_writer_end(w->dw)) != 0)
    return sqfs_fail(err, "directory table");
  if (write_xattrs(w, i, d, &xattr) == -1)
    return -1;
  parent = d->parent ? d->parent->inode->ino : (uint32_t) w->norder + 1;
  in = sqfs_dir_writer_create_inode(w->dw, 0, xattr, parent);
  if (in == NULL)
    return sn_oom();
  /* libsquashfs counts entries + 2; the convention is 2 + subdirs. */
  if (in->base.type == SQFS_INODE_DIR)
    in->data.dir.nlink = i->nlink;
  else
    in->data.dir_ext.nlink = i->nlink;
  return emit_inode(w, in, i, d);
}

/* Write all metadata in the order of docs/squashfs-layout.md §1 and §4:
 * inodes, directory table, export table, id table, xattr tables, then the
 * superblock with its flags (§2).  Sets bytes_used and inode_count. */
static int
write_tables(struct writer *w)
{
  struct sn_sqfs *img = w->img;
  struct sn_node *root = sn_tree_root(w->tree);
  size_t k;
  int err;

  if (sn_tree_walk(root, collect_nondir, NULL, w) == -1 ||
      sn_tree_walk(root, descend_dirs, collect_dir, w) == -1)
    return -1;

  w->super.inode_table_start = img->meta_start;
  for (k = 0; k < w->norder; k++) {
    struct sn_inode *i = w->order[k];
    struct sn_node *n = w->order_node[k];
    sqfs_inode_generic_t *in;
    uint32_t xattr;

    if (i->kind == SN_K_DIR) {
      if (write_dir(w, n) == -1)
        return -1;
      continue;
    }
    if (write_xattrs(w, i, n, &xattr) == -1)
      return -1;
    in = i->kind == SN_K_REG ? file_inode(w, i, n, xattr)
                             : other_inode(i, n, xattr);
    if (in == NULL || emit_inode(w, in, i, n) == -1)
      return -1;
  }
  if ((err = sqfs_meta_writer_flush(w->im)) != 0)
    return sqfs_fail(err, "inode table");

  w->super.root_inode_ref = root->inode->ref;
  w->super.inode_count = (sqfs_u32) w->norder;
  img->inode_count = (uint32_t) w->norder;
  w->super.directory_table_start = memfile_get_size(&w->file.base);
  if ((err = sqfs_meta_writer_flush(w->dm)) != 0 ||
      (err = sqfs_meta_write_write_to_file(w->dm)) != 0)
    return sqfs_fail(err, "directory table");

  w->super.fragment_table_start = UINT64_MAX;
  w->super.fragment_entry_count = 0;
  if ((err = sqfs_dir_writer_write_export_table(w->dw, &w->file.base,
                                                &w->cmp, root->inode->ino,
                                                root->inode->ref,
                                                &w->super)) != 0)
    return sqfs_fail(err, "export table");
  /* The root inode put at least one id in the table, as the kernel
   * requires. */
  if ((err = sqfs_id_table_write(w->ids, &w->file.base, &w->super,
                                 &w->cmp)) != 0)
    return sqfs_fail(err, "id table");
  if ((err = sqfs_xattr_writer_flush(w->xw, &w->file.base, &w->super,
                                     &w->cmp)) != 0)
    return sqfs_fail(err, "xattr table");

  img->bytes_used = memfile_get_size(&w->file.base);
  w->super.bytes_used = img->bytes_used;
  w->super.flags &= ~SQFS_FLAG_NO_DUPLICATES;
  w->super.flags |= SQFS_FLAG_UNCOMPRESSED_INODES |
                    SQFS_FLAG_UNCOMPRESSED_DATA |
                    SQFS_FLAG_UNCOMPRESSED_XATTRS |
                    SQFS_FLAG_UNCOMPRESSED_IDS |
                    SQFS_FLAG_NO_FRAGMENTS;
  if ((err = sqfs_super_write(&w->super, &w->file.base)) != 0)
    return sqfs_fail(err, "superblock");
  return 0;
}

/* ---- the region map ----------------------------------------------------- */

/* Append [start, end) to the region map; empty ranges are skipped and
 * neighbouring zero regions merged. */
static int
add_region(struct sn_sqfs *img, size_t *cap, uint64_t start, uint64_t end,
           enum sn_sqfs_region_kind kind, size_t layer)
{
  struct sn_sqfs_region *r;

  if (start == end)
    return 0;
  if (img->nregions > 0 &&
      img->regions[img->nregions - 1].kind == SN_SQFS_REGION_ZERO &&
      kind == SN_SQFS_REGION_ZERO) {
    img->regions[img->nregions - 1].end = end;
    return 0;
  }
  if (img->nregions == *cap) {
    size_t c = *cap ? *cap * 2 : 8;

    r = realloc(img->regions, c * sizeof *r);
    if (r == NULL)
      return sn_oom();
    img->regions = r;
    *cap = c;
  }
  r = &img->regions[img->nregions++];
  r->start = start;
  r->end = end;
  r->kind = kind;
  r->layer = layer;
  return 0;
}

/* The region map of docs/squashfs-layout.md §1: superblock, then each
 * layer's tar between zero padding, then metadata, then zeros to size. */
static int
build_regions(struct sn_sqfs *img, const struct sn_ztoc *const *layers)
{
  size_t cap = 0, l;
  uint64_t pos = SB_SIZE;

  if (add_region(img, &cap, 0, SB_SIZE, SN_SQFS_REGION_SUPER, 0) == -1)
    return -1;
  for (l = 0; l < img->nlayers; l++) {
    uint64_t end = img->bases[l] + (uint64_t) layers[l]->uncompressed_size;

    if (add_region(img, &cap, pos, img->bases[l], SN_SQFS_REGION_ZERO,
                   0) == -1 ||
        add_region(img, &cap, img->bases[l], end, SN_SQFS_REGION_TAR,
                   l) == -1)
      return -1;
    pos = end;
  }
  if (add_region(img, &cap, pos, img->meta_start, SN_SQFS_REGION_ZERO,
                 0) == -1 ||
      add_region(img, &cap, img->meta_start, img->bytes_used,
                 SN_SQFS_REGION_META, 0) == -1 ||
      add_region(img, &cap, img->bytes_used, img->size, SN_SQFS_REGION_ZERO,
                 0) == -1)
    return -1;
  return 0;
}

/* ---- public API --------------------------------------------------------- */

/* Free the writer's libsquashfs objects, tables and tree (not the image). */
static void
writer_cleanup(struct writer *w)
{
  if (w->xw) sqfs_destroy(w->xw);
  if (w->ids) sqfs_destroy(w->ids);
  if (w->dw) sqfs_destroy(w->dw);
  if (w->dm) sqfs_destroy(w->dm);
  if (w->im) sqfs_destroy(w->im);
  free(w->order);
  free(w->idcache);
  free(w->order_node);
  sn_tree_free(w->tree);
}

/* Build the tree of all layers, lay out the bases, write the metadata into
 * memory and map the regions.  The writer is scratch; only img survives. */
struct sn_sqfs *
sn_sqfs_new(const struct sn_ztoc *const *layers, size_t nlayers,
            const struct sn_sqfs_opts *o)
{
  static const struct sn_sqfs_opts defaults = { 0 };
  struct writer w;
  struct sn_sqfs *img;
  uint64_t pos = ALIGN;
  size_t l;
  int err;

  if (o == NULL)
    o = &defaults;
  memset(&w, 0, sizeof w);
  w.block_size = o->block_size ? o->block_size : SN_SQFS_DEFAULT_BLOCK_SIZE;
  if (w.block_size < 4096 || w.block_size > (1u << 20) ||
      (w.block_size & (w.block_size - 1)) != 0) {
    sn_set_error("squashfs: block size %" PRIu32 " is not a power of two "
                 "between 4K and 1M", w.block_size);
    return NULL;
  }
  if (nlayers == 0) {
    sn_set_error("squashfs: no layers");
    return NULL;
  }
  if (o->mode == SN_SQFS_LAYER && nlayers != 1) {
    sn_set_error("squashfs: a per-layer image takes exactly one layer "
                 "(got %zu)", nlayers);
    return NULL;
  }

  img = calloc(1, sizeof *img);
  if (img == NULL || (img->bases = calloc(nlayers, sizeof *img->bases))
                     == NULL) {
    free(img);
    sn_oom();
    return NULL;
  }
  img->nlayers = nlayers;
  for (l = 0; l < nlayers; l++) {
    int64_t len = layers[l]->uncompressed_size;

    if (len < 0 || (uint64_t) len > (UINT64_MAX >> 2) - pos) {
      sn_set_error("squashfs: layer %zu: bad uncompressed size %" PRId64,
                   l, len);
      goto fail;
    }
    img->bases[l] = pos;
    pos = round_up(pos + (uint64_t) len);
  }
  img->meta_start = pos;

  w.img = img;
  w.layers = layers;
  w.tree = sn_tree_new(o->mode, o->warn, o->warn_opaque);
  if (w.tree == NULL)
    goto fail;
  for (l = 0; l < nlayers; l++)
    if (sn_tree_add_layer(w.tree, layers[l], l) == -1) {
      if (nlayers > 1)
        sn_prefix_error("layer %zu: ", l);
      goto fail;
    }
  if (sn_tree_finish(w.tree) == -1)
    goto fail;

  w.file.base.base.destroy = memfile_destroy;
  w.file.base.read_at = memfile_read_at;
  w.file.base.write_at = memfile_write_at;
  w.file.base.get_size = memfile_get_size;
  w.file.base.truncate = memfile_truncate;
  w.file.img = img;
  w.cmp.base.destroy = nocomp_destroy;
  w.cmp.get_configuration = nocomp_get_configuration;
  w.cmp.write_options = nocomp_options;
  w.cmp.read_options = nocomp_options;
  w.cmp.do_block = nocomp_do_block;

  if ((err = sqfs_super_init(&w.super, w.block_size, o->mkfs_time,
                             SQFS_COMP_GZIP)) != 0) {
    sqfs_fail(err, "superblock");
    goto fail;
  }
  w.im = sqfs_meta_writer_create(&w.file.base, &w.cmp, 0);
  w.dm = sqfs_meta_writer_create(&w.file.base, &w.cmp,
                                 SQFS_META_WRITER_KEEP_IN_MEMORY);
  w.dw = w.dm ? sqfs_dir_writer_create(w.dm,
                                       SQFS_DIR_WRITER_CREATE_EXPORT_TABLE)
              : NULL;
  w.ids = sqfs_id_table_create(0);
  w.idcache = calloc(ID_SLOTS, sizeof *w.idcache);
  w.xw = sqfs_xattr_writer_create(0);
  if (!w.im || !w.dm || !w.dw || !w.ids || !w.idcache || !w.xw) {
    sn_oom();
    goto fail;
  }
  if (write_tables(&w) == -1)
    goto fail;
  img->size = round_up(img->bytes_used);
  if (build_regions(img, layers) == -1)
    goto fail;
  writer_cleanup(&w);
  return img;

fail:
  writer_cleanup(&w);
  sn_sqfs_free(img);
  return NULL;
}

void
sn_sqfs_free(struct sn_sqfs *img)
{
  if (img == NULL)
    return;
  free(img->meta);
  free(img->bases);
  free(img->regions);
  free(img);
}

uint64_t
sn_sqfs_size(const struct sn_sqfs *img)
{
  return img->size;
}

uint64_t
sn_sqfs_bytes_used(const struct sn_sqfs *img)
{
  return img->bytes_used;
}

size_t
sn_sqfs_nlayers(const struct sn_sqfs *img)
{
  return img->nlayers;
}

uint64_t
sn_sqfs_layer_base(const struct sn_sqfs *img, size_t layer)
{
  return layer < img->nlayers ? img->bases[layer] : 0;
}

uint32_t
sn_sqfs_inode_count(const struct sn_sqfs *img)
{
  return img->inode_count;
}

size_t
sn_sqfs_nregions(const struct sn_sqfs *img)
{
  return img->nregions;
}

const struct sn_sqfs_region *
sn_sqfs_region(const struct sn_sqfs *img, size_t i)
{
  return i < img->nregions ? &img->regions[i] : NULL;
}

/* Binary-search the region holding off, then copy region by region; a
 * read may span any number of regions. */
int
sn_sqfs_read(const struct sn_sqfs *img, void *buf, size_t len,
             uint64_t off, sn_sqfs_read_tar_fn read_tar, void *opaque)
{
  uint8_t *p = buf;
  size_t lo = 0, hi = img->nregions;

  if (off > img->size || len > img->size - off)
    return sn_set_error("squashfs: read of %zu bytes at %" PRIu64 " is "
                        "beyond the image size %" PRIu64, len, off,
                        img->size);
  if (len == 0)
    return 0;
  /* The last region starting at or before off. */
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;

    if (img->regions[mid].start <= off)
      lo = mid;
    else
      hi = mid;
  }
  while (len > 0) {
    const struct sn_sqfs_region *r = &img->regions[lo];
    uint64_t rel = off - r->start;
    size_t n = r->end - off < len ? (size_t) (r->end - off) : len;

    switch (r->kind) {
    case SN_SQFS_REGION_SUPER:
      memcpy(p, img->super + rel, n);
      break;
    case SN_SQFS_REGION_ZERO:
      memset(p, 0, n);
      break;
    case SN_SQFS_REGION_META:
      memcpy(p, img->meta + rel, n);
      break;
    case SN_SQFS_REGION_TAR:
      if (read_tar == NULL)
        return sn_set_error("squashfs: no tar reader for layer %zu",
                            r->layer);
      if (read_tar(opaque, r->layer, p, n, rel) == -1)
        return -1;
      break;
    }
    p += n;
    off += n;
    len -= n;
    lo++;
  }
  return 0;
}
