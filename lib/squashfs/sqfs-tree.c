/* soci-nbd: the file tree behind a synthesized squashfs — tar paths
 * cleaned, implicit parent directories, later entries overwriting earlier
 * ones, hard links sharing their target's inode, OCI whiteouts applied
 * (FLAT) or translated for overlayfs (LAYER).
 *
 * Every path that a layer touches — an entry, or a parent of an entry —
 * records that layer in its node.  A whiteout or an opaque marker in layer
 * L hides exactly the nodes last seen in a layer below L, so the result
 * does not depend on where the marker sits in the tar, and FLAT equals an
 * overlayfs stack of the LAYER images of the same layers.
 *
 * Names are looked up through one hash table keyed by (parent, name).
 * Removed nodes stay allocated until the tree is freed, so a stale entry
 * under a removed parent can never match a live parent's address.
 */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/hash.h"
#include "squashfs/sqfs-tree.h"

#define SN_NAME_MAX 256
/* Limits on a cleaned entry path (documented in sqfs.h): Linux's PATH_MAX,
 * beyond which no absolute path can name the file, and a depth no real
 * image comes near.  They bound the work and memory one entry can cost. */
#define SN_PATH_MAX 4096
#define SN_DEPTH_MAX 1024

struct sn_tree {
  enum sn_sqfs_mode mode;
  sn_sqfs_warn_fn warn;
  void *warn_opaque;
  struct sn_node *root;
  struct sn_node *nodes;        /* every node ever made */
  struct sn_inode *inodes;      /* every inode ever made */
  struct sn_node **slots;       /* open addressing; NULL or TOMB or node */
  size_t nslots, nused, nlive;
  const char *entry;            /* the entry being applied, for errors */
};

static struct sn_node tomb_node;
#define TOMB (&tomb_node)

/* ---- hash table of (parent, name) -------------------------------------- */

/* FNV-1a over the name, seeded with the parent's address. */
static uint64_t
key_hash(const struct sn_node *parent, const char *name, size_t len)
{
  uint64_t h = sn_hash_bytes(1469598103934665603ULL ^
                             (uint64_t) (uintptr_t) parent, name, len);

  h ^= h >> 29;
  return h;
}

static bool
key_eq(const struct sn_node *n, const struct sn_node *parent,
       const char *name, size_t len)
{
  return n->parent == parent && n->namelen == len &&
         memcmp(n->name, name, len) == 0;
}

/* Rebuild the table with nslots (a power of two) slots, dropping the
 * tombstones.  On allocation failure the old table stays and -1 is
 * returned. */
static int
rehash(struct sn_tree *t, size_t nslots)
{
  struct sn_node **old = t->slots;
  size_t oldn = t->nslots, i;

  t->slots = calloc(nslots, sizeof *t->slots);
  if (t->slots == NULL) {
    t->slots = old;
    return sn_oom();
  }
  t->nslots = nslots;
  t->nused = t->nlive = 0;
  for (i = 0; i < oldn; i++) {
    struct sn_node *n = old[i];
    size_t j;

    if (n == NULL || n == TOMB)
      continue;
    j = key_hash(n->parent, n->name, n->namelen) & (nslots - 1);
    while (t->slots[j] != NULL)
      j = (j + 1) & (nslots - 1);
    t->slots[j] = n;
    t->nused++;
    t->nlive++;
  }
  free(old);
  return 0;
}

/* The live node named name under parent, or NULL (linear probing). */
static struct sn_node *
lookup(const struct sn_tree *t, const struct sn_node *parent,
       const char *name, size_t len)
{
  size_t j = key_hash(parent, name, len) & (t->nslots - 1);

  for (; t->slots[j] != NULL; j = (j + 1) & (t->nslots - 1)) {
    struct sn_node *n = t->slots[j];

    if (n != TOMB && key_eq(n, parent, name, len))
      return n;
  }
  return NULL;
}

/* Insert n; the caller has removed any live node with the same key. */
static int
hash_put(struct sn_tree *t, struct sn_node *n)
{
  size_t j;

  if ((t->nused + 1) * 4 >= t->nslots * 3 &&
      rehash(t, t->nlive * 2 + 2 >= t->nslots ? t->nslots * 2
                                              : t->nslots) == -1)
    return -1;
  j = key_hash(n->parent, n->name, n->namelen) & (t->nslots - 1);
  while (t->slots[j] != NULL && t->slots[j] != TOMB)
    j = (j + 1) & (t->nslots - 1);
  if (t->slots[j] == NULL)
    t->nused++;
  t->slots[j] = n;
  t->nlive++;
  return 0;
}

/* Replace n's slot with a tombstone, so probe chains through it hold. */
static void
hash_del(struct sn_tree *t, const struct sn_node *n)
{
  size_t j = key_hash(n->parent, n->name, n->namelen) & (t->nslots - 1);

  for (; t->slots[j] != NULL; j = (j + 1) & (t->nslots - 1))
    if (t->slots[j] == n) {
      t->slots[j] = TOMB;
      t->nlive--;
      return;
    }
}

/* ---- nodes and inodes -------------------------------------------------- */

/* A new inode, owned by the tree (freed with it); NULL on OOM. */
static struct sn_inode *
new_inode(struct sn_tree *t, enum sn_kind kind,
          const struct sn_ztoc_file *f, size_t layer)
{
  struct sn_inode *i = calloc(1, sizeof *i);

  if (i == NULL) {
    sn_oom();
    return NULL;
  }
  i->kind = kind;
  i->f = f;
  i->layer = layer;
  i->next = t->inodes;
  t->inodes = i;
  return i;
}

/* A new name for inode under parent, appended to parent's children and
 * hashed; the tree owns it.  NULL on OOM. */
static struct sn_node *
new_node(struct sn_tree *t, struct sn_node *parent, const char *name,
         size_t len, struct sn_inode *inode, size_t layer)
{
  struct sn_node *n = calloc(1, sizeof *n);

  if (n == NULL || (n->name = malloc(len + 1)) == NULL) {
    free(n);
    sn_oom();
    return NULL;
  }
  memcpy(n->name, name, len);
  n->name[len] = '\0';
  n->namelen = len;
  n->parent = parent;
  n->inode = inode;
  n->layer = layer;
  n->next = t->nodes;
  t->nodes = n;
  if (parent) {
    if (parent->nkids == parent->kcap) {
      size_t cap = parent->kcap ? parent->kcap * 2 : 8;
      struct sn_node **k = realloc(parent->kids, cap * sizeof *k);

      if (k == NULL)
        return sn_oom(), NULL;
      parent->kids = k;
      parent->kcap = cap;
    }
    parent->kids[parent->nkids++] = n;
    if (hash_put(t, n) == -1)
      return NULL;
  }
  return n;
}

/* Unlink n from lookups; it stays in parent's kids until sn_tree_finish
 * and in memory until the tree is freed (see the top of this file). */
static void
remove_node(struct sn_tree *t, struct sn_node *n)
{
  n->removed = true;
  hash_del(t, n);
}

/* A new directory (f NULL: an implicit one) named name under parent. */
static struct sn_node *
new_dir(struct sn_tree *t, struct sn_node *parent, const char *name,
        size_t len, const struct sn_ztoc_file *f, size_t layer)
{
  struct sn_inode *i = new_inode(t, SN_K_DIR, f, layer);

  return i ? new_node(t, parent, name, len, i, layer) : NULL;
}

/* FLAT: hide everything under dir last seen below layer L. */
struct hide_ctx {
  struct sn_tree *t;
  size_t layer;
};

/* Remove k when last seen below the marker's layer; descend into
 * directories the current layer touched, as their lower children may
 * still need hiding. */
static int
hide_visit(struct sn_node *k, void *opaque)
{
  struct hide_ctx *c = opaque;

  if (k->removed)
    return 0;
  if (k->layer < c->layer) {
    remove_node(c->t, k);
    return 0;
  }
  return k->inode->kind == SN_K_DIR;
}

/* FLAT: apply an opaque marker or whiteout of layer `layer` to dir. */
static int
hide_lower(struct sn_tree *t, struct sn_node *dir, size_t layer)
{
  struct hide_ctx c = { t, layer };

  return sn_tree_walk(dir, hide_visit, NULL, &c);
}

/* Mark dir opaque in the current layer. */
static int
make_opaque(struct sn_tree *t, struct sn_node *dir, size_t layer)
{
  if (t->mode == SN_SQFS_LAYER) {
    dir->inode->opaque = true;
    return 0;
  }
  return hide_lower(t, dir, layer);
}

/* ---- applying one entry ------------------------------------------------ */

/* Refuse a cleaned path over SN_PATH_MAX bytes or SN_DEPTH_MAX levels. */
static int
check_path(struct sn_tree *t, const char *path)
{
  size_t len = strlen(path), depth = 1;
  const char *p;

  if (len > SN_PATH_MAX)
    return sn_set_error("entry '%.40s...': path is %zu bytes long (the "
                        "limit is %d)", t->entry, len, SN_PATH_MAX);
  for (p = path; (p = strchr(p, '/')) != NULL; p++)
    if (++depth > SN_DEPTH_MAX)
      return sn_set_error("entry '%.40s...': path is more than %d "
                          "directories deep", t->entry, SN_DEPTH_MAX);
  return 0;
}

/* Refuse a component over SN_NAME_MAX bytes, squashfs's limit. */
static int
check_name(struct sn_tree *t, const char *name, size_t len)
{
  if (len > SN_NAME_MAX)
    return sn_set_error("entry '%s': name '%.40s...' is %zu bytes long "
                        "(squashfs allows %d)", t->entry, name, len,
                        SN_NAME_MAX);
  return 0;
}

/* Walk (and create) the parent directories of path; return the parent
 * directory and the last component. */
static struct sn_node *
walk_parents(struct sn_tree *t, const char *path, size_t layer,
             const char **base, size_t *baselen)
{
  struct sn_node *dir = t->root;
  const char *p = path, *slash;

  dir->layer = layer;
  while ((slash = strchr(p, '/')) != NULL) {
    size_t len = slash - p;
    struct sn_node *n;

    if (check_name(t, p, len) == -1)
      return NULL;
    n = lookup(t, dir, p, len);
    if (n == NULL || n->inode->kind != SN_K_DIR) {
      bool was_whiteout = n && n->inode->kind == SN_K_WHITEOUT;

      if (n)
        remove_node(t, n);
      n = new_dir(t, dir, p, len, NULL, layer);
      if (n == NULL)
        return NULL;
      if (was_whiteout && t->mode == SN_SQFS_LAYER)
        n->inode->opaque = true;
    }
    n->layer = layer;
    dir = n;
    p = slash + 1;
  }
  *base = p;
  *baselen = strlen(p);
  return dir;
}

/* Find an existing path without creating anything. */
static struct sn_node *
find_path(const struct sn_tree *t, const char *path)
{
  struct sn_node *n = t->root;
  const char *p = path, *slash;

  if (*path == '\0')
    return n;
  for (;;) {
    size_t len;

    slash = strchr(p, '/');
    len = slash ? (size_t) (slash - p) : strlen(p);
    if (n->inode->kind != SN_K_DIR || (n = lookup(t, n, p, len)) == NULL)
      return NULL;
    if (slash == NULL)
      return n;
    p = slash + 1;
  }
}

/* DIR/.wh.NAME (docs/squashfs-layout.md §6).  FLAT: delete NAME if it came
 * from a lower layer (a same-layer directory keeps only its own entries).
 * LAYER: a char 0/0 node NAME with the marker's owner and time, unless the
 * layer itself has NAME. */
static int
whiteout(struct sn_tree *t, struct sn_node *dir, const char *name,
         size_t len, const struct sn_ztoc_file *f, size_t layer)
{
  struct sn_node *n = lookup(t, dir, name, len);
  struct sn_inode *i;

  if (t->mode == SN_SQFS_FLAT) {
    if (n == NULL)
      return 0;
    if (n->layer < layer)
      remove_node(t, n);
    else if (n->inode->kind == SN_K_DIR)
      return hide_lower(t, n, layer);   /* same layer: keep the dir, opaque */
    return 0;
  }
  if (n != NULL) {
    /* Same layer: a real entry wins; a directory becomes opaque. */
    if (n->inode->kind == SN_K_DIR)
      n->inode->opaque = true;
    return 0;
  }
  i = new_inode(t, SN_K_WHITEOUT, NULL, layer);
  if (i == NULL)
    return -1;
  i->wh_uid = f->uid;
  i->wh_gid = f->gid;
  i->wh_mtime = f->mtime_sec;
  return new_node(t, dir, name, len, i, layer) ? 0 : -1;
}

/* Put a directory entry: over a directory it merges (newer metadata wins),
 * otherwise it replaces the old node.  In LAYER mode a directory over a
 * whiteout of the same layer becomes opaque. */
static int
put_dir(struct sn_tree *t, struct sn_node *dir, const char *name,
        size_t len, const struct sn_ztoc_file *f, size_t layer)
{
  struct sn_node *n = lookup(t, dir, name, len);
  bool opaque = false;

  if (n && n->inode->kind == SN_K_DIR) {
    /* Directory over directory: merge, the newer metadata wins. */
    n->inode->f = f;
    n->inode->layer = layer;
    n->layer = layer;
    return 0;
  }
  if (n) {
    opaque = n->inode->kind == SN_K_WHITEOUT && t->mode == SN_SQFS_LAYER;
    remove_node(t, n);
  }
  n = new_dir(t, dir, name, len, f, layer);
  if (n == NULL)
    return -1;
  n->inode->opaque = opaque;
  return 0;
}

/* Put a non-directory name for inode, replacing whatever had the name. */
static int
put_nondir(struct sn_tree *t, struct sn_node *dir, const char *name,
           size_t len, struct sn_inode *inode, size_t layer)
{
  struct sn_node *n = lookup(t, dir, name, len);

  if (n)
    remove_node(t, n);
  return new_node(t, dir, name, len, inode, layer) ? 0 : -1;
}

/* Add a name for the inode of the hard link's target, resolved against the
 * tree built so far (cleaned like entry names).  Refuses a missing or
 * whited-out target and a directory. */
static int
hardlink(struct sn_tree *t, struct sn_node *dir, const char *name,
         size_t len, const struct sn_ztoc_file *f, size_t layer)
{
  struct sn_node *target;
  char *path;
  int plen;

  if (memchr(f->linkname.data, '\0', f->linkname.len))
    return sn_set_error("entry '%s': hard link target contains a NUL byte",
                        t->entry);
  path = malloc(f->linkname.len + 1);
  if (path == NULL)
    return sn_oom();
  plen = sn_path_clean(f->linkname.data, f->linkname.len, path,
                       f->linkname.len + 1);
  target = plen < 0 ? NULL : find_path(t, path);
  if (target == NULL || target->inode->kind == SN_K_WHITEOUT) {
    if (t->mode == SN_SQFS_LAYER)
      sn_set_error("hard link '%s': target '%s' is not in this layer "
                   "(a per-layer image cannot point into another layer)",
                   t->entry, f->linkname.data);
    else
      sn_set_error("hard link '%s': target '%s' does not exist",
                   t->entry, f->linkname.data);
    free(path);
    return -1;
  }
  free(path);
  if (target->inode->kind == SN_K_DIR)
    return sn_set_error("hard link '%s': target '%s' is a directory",
                        t->entry, f->linkname.data);
  return put_nondir(t, dir, name, len, target->inode, layer);
}

/* Is some component of path aufs metadata (".wh..wh.*"), other than a
 * last component ".wh..wh..opq"? */
static bool
in_aufs_meta(const char *path)
{
  const char *p = path;

  for (;;) {
    const char *slash = strchr(p, '/');

    if (strncmp(p, ".wh..wh.", 8) == 0 &&
        (slash != NULL || strcmp(p, ".wh..wh..opq") != 0))
      return true;
    if (slash == NULL)
      return false;
    p = slash + 1;
  }
}

/* Apply one ztoc entry to the tree: clean its path (docs/squashfs-layout.md
 * §7), create its parents, then dispatch whiteouts, opaque markers, aufs
 * metadata (dropped), directories, hard links and other kinds (§6).
 * t->entry names the entry in error messages. */
static int
apply_entry(struct sn_tree *t, const struct sn_ztoc_file *f, size_t layer)
{
  struct sn_node *dir;
  struct sn_inode *i;
  const char *base;
  size_t blen;
  enum sn_kind kind;
  char *path;
  int r = -1;

  t->entry = f->name.data;
  if (memchr(f->name.data, '\0', f->name.len))
    return sn_set_error("entry '%s': name contains a NUL byte", t->entry);
  path = malloc(f->name.len + 1);
  if (path == NULL)
    return sn_oom();
  if (sn_path_clean(f->name.data, f->name.len, path, f->name.len + 1) < 0 ||
      check_path(t, path) == -1)
    goto out;

  if (*path == '\0') {                          /* the root itself */
    if (f->ftype != SN_FT_DIR) {
      sn_set_error("entry '%s': the root can only be a directory",
                   t->entry);
      goto out;
    }
    t->root->inode->f = f;
    t->root->inode->layer = layer;
    t->root->layer = layer;
    r = 0;
    goto out;
  }
  if (in_aufs_meta(path)) {                     /* e.g. .wh..wh.plnk/... */
    r = 0;
    goto out;
  }
  dir = walk_parents(t, path, layer, &base, &blen);
  if (dir == NULL || check_name(t, base, blen) == -1)
    goto out;

  if (blen >= 4 && memcmp(base, ".wh.", 4) == 0) {
    const char *rest = base + 4;
    size_t rlen = blen - 4;

    if (strcmp(rest, ".wh..opq") == 0)
      r = make_opaque(t, dir, layer);
    else if (rlen == 0)
      r = 0;
    else
      r = whiteout(t, dir, rest, rlen, f, layer);
    goto out;
  }

  switch (f->ftype) {
  case SN_FT_DIR:
    r = put_dir(t, dir, base, blen, f, layer);
    goto out;
  case SN_FT_HARDLINK:
    r = hardlink(t, dir, base, blen, f, layer);
    goto out;
  case SN_FT_REG: kind = SN_K_REG; break;
  case SN_FT_SYMLINK: kind = SN_K_SYMLINK; break;
  case SN_FT_CHAR: kind = SN_K_CHAR; break;
  case SN_FT_BLOCK: kind = SN_K_BLOCK; break;
  case SN_FT_FIFO: kind = SN_K_FIFO; break;
  default:
    sn_set_error("entry '%s': unsupported type '%.*s'", t->entry,
                 (int) f->type.len, f->type.data);
    goto out;
  }
  i = new_inode(t, kind, f, layer);
  if (i != NULL)
    r = put_nondir(t, dir, base, blen, i, layer);
out:
  free(path);
  return r;
}

/* ---- the tree ------------------------------------------------------------ */

/* An empty tree holding only the root (an implicit directory). */
struct sn_tree *
sn_tree_new(enum sn_sqfs_mode mode, sn_sqfs_warn_fn warn, void *warn_opaque)
{
  struct sn_tree *t = calloc(1, sizeof *t);

  if (t == NULL) {
    sn_oom();
    return NULL;
  }
  t->mode = mode;
  t->warn = warn;
  t->warn_opaque = warn_opaque;
  if (rehash(t, 1024) == -1 ||
      (t->root = new_dir(t, NULL, "", 0, NULL, 0)) == NULL) {
    sn_tree_free(t);
    return NULL;
  }
  return t;
}

/* Free every node and inode ever made, removed ones included. */
void
sn_tree_free(struct sn_tree *t)
{
  if (t == NULL)
    return;
  while (t->nodes) {
    struct sn_node *n = t->nodes;

    t->nodes = n->next;
    free(n->name);
    free(n->kids);
    free(n);
  }
  while (t->inodes) {
    struct sn_inode *i = t->inodes;

    t->inodes = i->next;
    free(i);
  }
  free(t->slots);
  free(t);
}

int
sn_tree_add_layer(struct sn_tree *t, const struct sn_ztoc *z, size_t layer)
{
  size_t i;

  for (i = 0; i < z->nfiles; i++)
    if (apply_entry(t, &z->files[i], layer) == -1)
      return -1;
  return 0;
}

/* Bytewise name order, a prefix first (the order squashfs requires). */
static int
cmp_node(const void *a, const void *b)
{
  const struct sn_node *x = *(struct sn_node *const *) a;
  const struct sn_node *y = *(struct sn_node *const *) b;
  size_t n = x->namelen < y->namelen ? x->namelen : y->namelen;
  int c = memcmp(x->name, y->name, n);

  if (c)
    return c;
  return x->namelen < y->namelen ? -1 : x->namelen > y->namelen;
}

/* Drop dir's removed children, sort the rest bytewise and count its
 * links (2 + subdirectories). */
static void
finish_dir(struct sn_node *dir)
{
  size_t i, w = 0, subdirs = 0;

  for (i = 0; i < dir->nkids; i++)
    if (!dir->kids[i]->removed)
      dir->kids[w++] = dir->kids[i];
  dir->nkids = w;
  if (dir->nkids > 1)
    qsort(dir->kids, dir->nkids, sizeof *dir->kids, cmp_node);
  for (i = 0; i < dir->nkids; i++)
    subdirs += dir->kids[i]->inode->kind == SN_K_DIR;
  dir->inode->nlink = 2 + subdirs;
}

/* A non-directory's link count is the number of names it has. */
static int
finish_visit(struct sn_node *k, void *opaque)
{
  (void) opaque;
  if (k->inode->kind != SN_K_DIR) {
    k->inode->nlink++;
    return 0;
  }
  finish_dir(k);
  return 1;
}

int
sn_tree_finish(struct sn_tree *t)
{
  struct sn_inode *i;

  for (i = t->inodes; i; i = i->next)
    i->nlink = 0;
  finish_dir(t->root);
  return sn_tree_walk(t->root, finish_visit, NULL, NULL);
}

/* One directory being walked and the index of its next child. */
struct walk_frame {
  struct sn_node *dir;
  size_t next;
};

int
sn_tree_walk(struct sn_node *dir, sn_tree_visit_fn visit,
             sn_tree_visit_fn leave, void *opaque)
{
  struct walk_frame *stack, *grown;
  size_t depth = 1, cap = 64;
  int r = 0;

  stack = malloc(cap * sizeof *stack);
  if (stack == NULL)
    return sn_oom();
  stack[0].dir = dir;
  stack[0].next = 0;
  while (depth > 0) {
    struct walk_frame *top = &stack[depth - 1];
    struct sn_node *k;

    if (top->next == top->dir->nkids) {         /* all children done */
      if (leave && (r = leave(top->dir, opaque)) == -1)
        break;
      depth--;
      continue;
    }
    k = top->dir->kids[top->next++];
    if ((r = visit(k, opaque)) == -1)
      break;
    if (r == 0 || k->inode->kind != SN_K_DIR)
      continue;
    if (depth == cap) {
      grown = realloc(stack, 2 * cap * sizeof *stack);
      if (grown == NULL) {
        r = sn_oom();
        break;
      }
      stack = grown;
      cap *= 2;
    }
    stack[depth].dir = k;
    stack[depth].next = 0;
    depth++;
  }
  free(stack);
  return r == -1 ? -1 : 0;
}

struct sn_node *
sn_tree_root(const struct sn_tree *t)
{
  return t->root;
}

/* Format a warning (truncated to 511 bytes) for the warn callback, if
 * any. */
void
sn_tree_warn(const struct sn_tree *t, const char *fmt, ...)
{
  char msg[512];
  va_list ap;

  if (t->warn == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  t->warn(t->warn_opaque, msg);
}
