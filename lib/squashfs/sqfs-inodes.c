/* soci-nbd: the inodes of the squashfs image (docs/squashfs-layout.md
 * §3-§5): regular files whose blocks are their bytes in the layer's tar,
 * symlinks, devices, whiteouts and FIFOs, each with its owner ids (through
 * a cache in front of libsquashfs's id table), its clamped mtime and its
 * xattr set, appended to the inode table.  Directories' inodes come from
 * sqfs-tables.c, through the same sqw_emit_inode.
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
#include "squashfs/sqfs-int.h"
#include "squashfs/sqfs-tree.h"
#include "squashfs/sqfs.h"

/* ---- inodes, ids and xattrs -------------------------------------------- */

/* Turn a libsquashfs error code into our convention: -1, message set. */
int
sqw_fail(int err, const char *what)
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

static bool
has_prefix(const char *s, const char *p)
{
  return strncmp(s, p, strlen(p)) == 0;
}

/* Write the inode's xattr set; *idx = NO_XATTR when it has none. */
int
sqw_write_xattrs(struct writer *w, const struct sn_inode *i,
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
        return sqw_fail(err, "xattrs");
      begun = true;
    }
    err = sqfs_xattr_writer_add(w->xw, key, p->value.data, p->value.len);
    if (err == SQFS_ERROR_UNSUPPORTED) {
      sn_tree_warn(w->tree, "%s: xattr %s dropped (not representable)",
                   entry_name(i, n), key);
      continue;
    }
    if (err)
      return sqw_fail(err, "xattrs");
  }
  if (i->opaque) {
    if (!begun) {
      if ((err = sqfs_xattr_writer_begin(w->xw, 0)) != 0)
        return sqw_fail(err, "xattrs");
      begun = true;
    }
    if ((err = sqfs_xattr_writer_add(w->xw, "trusted.overlay.opaque", "y",
                                     1)) != 0)
      return sqw_fail(err, "xattrs");
  }
  if (begun && (err = sqfs_xattr_writer_end(w->xw, idx)) != 0)
    return sqw_fail(err, "xattrs");
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
    return sqw_fail(err, "id table");
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
sqfs_inode_generic_t *
sqw_file_inode(struct writer *w, const struct sn_inode *i,
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
sqfs_inode_generic_t *
sqw_other_inode(const struct sn_inode *i, const struct sn_node *n,
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
int
sqw_emit_inode(struct writer *w, sqfs_inode_generic_t *in,
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
    return sqw_fail(err, "inode table");
  return 0;
}
