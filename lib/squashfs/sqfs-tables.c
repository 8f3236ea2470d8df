/* soci-nbd: the squashfs image's metadata tables, in the write order of
 * docs/squashfs-layout.md §4 (non-directories in tree order, then
 * directories post-order, numbered 1..N) and the table order of §1:
 * inode table, directory table, export table, id table, xattr tables,
 * then the superblock with its flags (§2).  Inodes are made in
 * sqfs-inodes.c.
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

/* ---- writing the metadata ----------------------------------------------- */

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
    return sqw_fail(err, "directory table");
  for (k = 0; k < d->nkids; k++) {
    const struct sn_node *c = d->kids[k];

    err = sqfs_dir_writer_add_entry(w->dw, c->name, c->inode->ino,
                                    c->inode->ref, type_bits(c->inode->kind));
    if (err)
      return sqw_fail(err, "directory table");
  }
  if ((err = sqfs_dir_writer_end(w->dw)) != 0)
    return sqw_fail(err, "directory table");
  if (sqw_write_xattrs(w, i, d, &xattr) == -1)
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
  return sqw_emit_inode(w, in, i, d);
}

/* Write all metadata in the order of docs/squashfs-layout.md §1 and §4:
 * inodes, directory table, export table, id table, xattr tables, then the
 * superblock with its flags (§2).  Sets bytes_used and inode_count. */
int
sqw_write_tables(struct writer *w)
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
    if (sqw_write_xattrs(w, i, n, &xattr) == -1)
      return -1;
    in = i->kind == SN_K_REG ? sqw_file_inode(w, i, n, xattr)
                             : sqw_other_inode(i, n, xattr);
    if (in == NULL || sqw_emit_inode(w, in, i, n) == -1)
      return -1;
  }
  if ((err = sqfs_meta_writer_flush(w->im)) != 0)
    return sqw_fail(err, "inode table");

  w->super.root_inode_ref = root->inode->ref;
  w->super.inode_count = (sqfs_u32) w->norder;
  img->inode_count = (uint32_t) w->norder;
  w->super.directory_table_start = sqw_memfile_get_size(&w->file.base);
  if ((err = sqfs_meta_writer_flush(w->dm)) != 0 ||
      (err = sqfs_meta_write_write_to_file(w->dm)) != 0)
    return sqw_fail(err, "directory table");

  w->super.fragment_table_start = UINT64_MAX;
  w->super.fragment_entry_count = 0;
  if ((err = sqfs_dir_writer_write_export_table(w->dw, &w->file.base,
                                                &w->cmp, root->inode->ino,
                                                root->inode->ref,
                                                &w->super)) != 0)
    return sqw_fail(err, "export table");
  /* The root inode put at least one id in the table, as the kernel
   * requires. */
  if ((err = sqfs_id_table_write(w->ids, &w->file.base, &w->super,
                                 &w->cmp)) != 0)
    return sqw_fail(err, "id table");
  if ((err = sqfs_xattr_writer_flush(w->xw, &w->file.base, &w->super,
                                     &w->cmp)) != 0)
    return sqw_fail(err, "xattr table");

  img->bytes_used = sqw_memfile_get_size(&w->file.base);
  w->super.bytes_used = img->bytes_used;
  w->super.flags &= ~SQFS_FLAG_NO_DUPLICATES;
  w->super.flags |= SQFS_FLAG_UNCOMPRESSED_INODES |
                    SQFS_FLAG_UNCOMPRESSED_DATA |
                    SQFS_FLAG_UNCOMPRESSED_XATTRS |
                    SQFS_FLAG_UNCOMPRESSED_IDS |
                    SQFS_FLAG_NO_FRAGMENTS;
  if ((err = sqfs_super_write(&w->super, &w->file.base)) != 0)
    return sqw_fail(err, "superblock");
  return 0;
}
