/* soci-nbd: internal to sqfs — the file tree built from ztocs (paths,
 * implicit parents, overwrites, hard links, whiteouts, flattening) that
 * lib/squashfs/sqfs.c turns into squashfs metadata.  Not a public API.
 *
 * Ownership: the tree owns every node and inode; it only points into the
 * ztocs (f), which must outlive it.  Errors follow err.h.
 */
#ifndef SN_SQFS_TREE_H
#define SN_SQFS_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "squashfs/sqfs.h"
#include "soci/ztoc.h"

enum sn_kind {
  SN_K_DIR, SN_K_REG, SN_K_SYMLINK, SN_K_CHAR, SN_K_BLOCK, SN_K_FIFO,
  SN_K_WHITEOUT,            /* LAYER mode only: char 0/0 */
};

/* One squashfs inode; several names may share it (hard links). */
struct sn_inode {
  enum sn_kind kind;
  const struct sn_ztoc_file *f;   /* NULL: implicit dir */
  size_t layer;                   /* layer of f (where the data is) */
  bool opaque;                    /* LAYER mode: trusted.overlay.opaque=y */
  uint32_t wh_uid, wh_gid;        /* whiteouts: the header's owner */
  int64_t wh_mtime;
  /* Filled by sn_tree_finish / the writer. */
  uint32_t nlink;
  uint32_t ino;
  uint64_t ref;
  bool listed;                    /* already placed in the write order */
  struct sn_inode *next;          /* all inodes (for freeing) */
};

/* One directory entry (name). */
struct sn_node {
  struct sn_node *parent;
  char *name;                     /* one component, NUL-terminated */
  size_t namelen;
  struct sn_inode *inode;
  size_t layer;                   /* last layer this path was present in */
  bool removed;
  struct sn_node **kids;          /* dirs: children (sorted after finish) */
  size_t nkids, kcap;
  struct sn_node *next;           /* all nodes (for freeing) */
};

struct sn_tree;

struct sn_tree *sn_tree_new(enum sn_sqfs_mode mode, sn_sqfs_warn_fn warn,
                            void *warn_opaque);
void sn_tree_free(struct sn_tree *t);

/* Apply layer number `layer` (layers must come bottom first, numbered
 * 0, 1, ...).  In LAYER mode, call it once. */
int sn_tree_add_layer(struct sn_tree *t, const struct sn_ztoc *z,
                      size_t layer);

/* Drop removed nodes, sort every directory bytewise, count links.  Then
 * the tree is read-only for the writer. */
int sn_tree_finish(struct sn_tree *t);

struct sn_node *sn_tree_root(const struct sn_tree *t);

/* Walk the tree below dir depth first, children in array order, without
 * recursion (so depth costs heap, not stack): visit(k) is called for every
 * child k and returns 1 to descend into a directory child, 0 not to, or -1
 * to stop; leave(d) (may be NULL) is called after all of d's children,
 * last of all for dir itself, and returns 0 or -1 to stop.  Returns 0, or
 * -1 when a callback returned -1 (its error message stands) or on OOM. */
typedef int (*sn_tree_visit_fn)(struct sn_node *n, void *opaque);
int sn_tree_walk(struct sn_node *dir, sn_tree_visit_fn visit,
                 sn_tree_visit_fn leave, void *opaque);
void sn_tree_warn(const struct sn_tree *t, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

#endif
