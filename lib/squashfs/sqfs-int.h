/* soci-nbd: internal to lib/squashfs/sqfs*.c: the image, the in-memory
 * file the libsquashfs writers write to, the writer's state, and the steps
 * the files share.  Not a public API.
 *
 * sqfs.c builds the image (sn_sqfs_new), its in-memory file and its
 * region map (docs/squashfs-layout.md §1) and serves reads;
 * sqfs-tables.c writes the metadata tables in order (§1, §2, §4);
 * sqfs-inodes.c makes each inode with its ids and xattrs (§3-§5).
 */
#ifndef SN_SQFS_INT_H
#define SN_SQFS_INT_H

#include <stddef.h>
#include <stdint.h>

#include <sqfs/compressor.h>
#include <sqfs/dir_writer.h>
#include <sqfs/error.h>
#include <sqfs/id_table.h>
#include <sqfs/inode.h>
#include <sqfs/io.h>
#include <sqfs/meta_writer.h>
#include <sqfs/super.h>
#include <sqfs/xattr_writer.h>

#include "squashfs/sqfs-tree.h"
#include "squashfs/sqfs.h"

#define SB_SIZE 96
#define ALIGN 4096
#define NO_XATTR 0xFFFFFFFFu
#define NO_FRAG 0xFFFFFFFFu
#define SYMLINK_MAX 4096
#define ID_SLOTS (1u << 17)     /* twice the squashfs limit of 65536 ids */

/* The image: its geometry, superblock and metadata bytes, layer bases and
 * region map (docs/squashfs-layout.md §1). */
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

/* An in-memory sqfs_file_t: superblock at 0, metadata at the end. */
struct memfile {
  sqfs_file_t base;
  struct sn_sqfs *img;
  size_t cap;
};

/* The state of one sn_sqfs_new: the tree, libsquashfs's writers and the
 * write order (scratch; only img survives). */
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

/* sqfs.c: the file's end as the writers see it (meta_start + metadata so
 * far). */
sqfs_u64 sqw_memfile_get_size(const sqfs_file_t *file);

/* sqfs-inodes.c: a libsquashfs error code turned into our convention (-1,
 * message set). */
int sqw_fail(int err, const char *what);

/* sqfs-inodes.c: write the inode's xattr set; *idx = NO_XATTR when it has
 * none.  0 or -1. */
int sqw_write_xattrs(struct writer *w, const struct sn_inode *i,
                     const struct sn_node *n, uint32_t *idx);

/* sqfs-inodes.c: the inode of a regular file (§3), or of any other
 * non-directory; malloc'd, or NULL with the error set. */
sqfs_inode_generic_t *sqw_file_inode(struct writer *w,
                                     const struct sn_inode *i,
                                     const struct sn_node *n, uint32_t xattr);
sqfs_inode_generic_t *sqw_other_inode(const struct sn_inode *i,
                                      const struct sn_node *n,
                                      uint32_t xattr);

/* sqfs-inodes.c: fill in's common fields, record i->ref and append it to
 * the inode table; frees in.  0 or -1. */
int sqw_emit_inode(struct writer *w, sqfs_inode_generic_t *in,
                   struct sn_inode *i, const struct sn_node *n);

/* sqfs-tables.c: write all metadata (inodes, directory, export, id and
 * xattr tables, superblock); sets bytes_used and inode_count.  0 or -1. */
int sqw_write_tables(struct writer *w);

#endif
