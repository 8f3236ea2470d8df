/* soci-nbd: the snapshot operations of snapshots.h — containerd's rules
 * (those of its storage package and overlayfs snapshotter) on the table of
 * snap-store.c, each under the store's lock and followed by a write of
 * the metadata file before it returns. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mount/mount.h"
#include "snapshot/snap-int.h"
#include "util/err.h"
#include "util/fdio.h"

/* ---- helpers ------------------------------------------------------------ */

/* Set the message and return code (an enum sn_snap_err). */
static int SN_PRINTF(2, 3)
fail(int code, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  sn_set_error("%s", msg);
  return code;
}

/* Out of memory, as an operation's result. */
static int
oom(void)
{
  sn_oom();
  return SN_SNAP_INTERNAL;
}

void
sn_snap_info_clear(struct sn_snap_info *i)
{
  size_t k;

  if (i == NULL)
    return;
  for (k = 0; k < i->nlabels; k++) {
    free(i->labels[k].key);
    free(i->labels[k].value);
  }
  free(i->labels);
  free(i->name);
  free(i->parent);
  memset(i, 0, sizeof *i);
}

void
sn_snap_mounts_clear(struct sn_snap_mounts *m)
{
  size_t i, k;

  for (i = 0; m && i < m->n; i++) {
    for (k = 0; k < m->m[i].noptions; k++)
      free(m->m[i].options[k]);
    free(m->m[i].options);
    free(m->m[i].type);
    free(m->m[i].source);
  }
  if (m) {
    free(m->m);
    memset(m, 0, sizeof *m);
  }
}

const char *
sn_snap_err_name(int err)
{
  static const char *const names[] = {
    "ok", "not found", "already exists", "failed precondition",
    "invalid argument", "internal error",
  };

  return err >= 0 && err <= SN_SNAP_INTERNAL ? names[err] : "unknown";
}

/* Labels as containerd allows them. */
static int
check_labels(const struct sn_snap_label *l, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++) {
    if (l[i].key == NULL || l[i].value == NULL || l[i].key[0] == 0)
      return fail(SN_SNAP_INVALID, "a label with no key");
    if (strlen(l[i].key) + strlen(l[i].value) > SN_SNAP_LABEL_MAX)
      return fail(SN_SNAP_INVALID, "label %s: key and value longer than "
                  "4096 bytes", l[i].key);
  }
  return 0;
}

/* Remove a tree without crossing into other file systems. */
static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
  (void) st;
  (void) f;
  if (flag == FTW_DP)
    return rmdir(path) == -1 && errno != ENOENT ? -1 : 0;
  return unlink(path) == -1 && errno != ENOENT ? -1 : 0;
}

static int
rm_tree(const char *path)
{
  if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) == -1 &&
      errno != ENOENT)
    return sn_set_error("%s: cannot remove: %s", path, strerror(errno));
  return 0;
}

/* Disk usage of a tree: allocated bytes, and inodes counted once (hard
 * links).  nftw has no opaque pointer: the walk's state is per thread. */
struct du {
  int64_t size, inodes;
  struct { dev_t dev; ino_t ino; } *seen;
  size_t n, cap;
  bool oom;
};
static _Thread_local struct du *du_state;

static int
du_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
  struct du *d = du_state;
  size_t i;

  (void) path;
  (void) f;
  if (flag == FTW_NS)
    return 0;
  for (i = 0; i < d->n; i++)    /* linear: only hard links repeat */
    if (st->st_nlink > 1 && d->seen[i].dev == st->st_dev &&
        d->seen[i].ino == st->st_ino)
      return 0;
  if (st->st_nlink > 1) {
    if (d->n == d->cap) {
      size_t cap = d->cap ? 2 * d->cap : 64;
      void *p = realloc(d->seen, cap * sizeof *d->seen);

      if (p == NULL) {
        d->oom = true;
        return -1;
      }
      d->seen = p;
      d->cap = cap;
    }
    d->seen[d->n].dev = st->st_dev;
    d->seen[d->n++].ino = st->st_ino;
  }
  d->size += (int64_t) st->st_blocks * 512;
  d->inodes++;
  return 0;
}

static int
measure(const char *path, int64_t *size, int64_t *inodes)
{
  struct du d = { 0 };
  int r;

  du_state = &d;
  r = nftw(path, du_entry, 16, FTW_PHYS | FTW_MOUNT);
  du_state = NULL;
  free(d.seen);
  if (d.oom)
    return sn_oom();
  if (r == -1)
    return sn_set_error("%s: %s", path, strerror(errno));
  *size = d.size;
  *inodes = d.inodes;
  return 0;
}

/* ---- mounts ------------------------------------------------------------- */

static int
add_mount(struct sn_snap_mounts *m, const char *type, const char *source,
          char **opts, size_t nopts)
{
  struct sn_snap_mount *x = realloc(m->m, (m->n + 1) * sizeof *m->m);
  size_t i;

  if (x == NULL)
    goto oom;
  m->m = x;
  x = &m->m[m->n];
  memset(x, 0, sizeof *x);
  m->n++;
  x->type = strdup(type);
  x->source = strdup(source);
  x->options = calloc(nopts ? nopts : 1, sizeof *x->options);
  if (x->type == NULL || x->source == NULL || x->options == NULL)
    goto oom;
  for (i = 0; i < nopts; i++) {
    x->options[i] = opts[i];
    opts[i] = NULL;
    x->noptions = i + 1;
  }
  return 0;
oom:
  for (i = 0; i < nopts; i++)
    free(opts[i]);
  return sn_oom();
}

/* 0, or SN_SNAP_UNAVAILABLE when the snapshot named parent or one below
 * it is a remote layer that is not mounted (sn_snapshots_restore).
 * Checked once per operation: check_new for a new snapshot, mounts_of for
 * the mounts of one that exists. */
static int
chain_available(struct sn_snapshots *s, const char *parent)
{
  const struct snap *q;

  for (q = snap_find(s, parent); q; q = snap_find(s, q->info.parent))
    if (q->unavailable)
      return fail(SN_SNAP_UNAVAILABLE, "snapshot %s: its layer %s is not "
                  "mounted (it could not be mounted again at start: see "
                  "the log); remove the image and pull it again",
                  q->info.name, sn_snap_label_get(q->info.labels,
                                                  q->info.nlabels,
                                                  SN_SNAP_LABEL_REMOTE));
  return 0;
}

/* How p is mounted (containerd's overlayfs snapshotter): an active
 * snapshot is its fs directory alone (bind, rw) or an overlay with it as
 * upper directory over its parents' (nearest first); a view is its parent
 * alone (bind, ro) or an overlay of its parents with no upper directory. */
static int
snap_mounts(struct sn_snapshots *s, const struct snap *p,
            struct sn_snap_mounts *m)
{
  char *opts[4] = { NULL }, *lower = NULL, *dir = NULL;
  const struct snap *q = p;
  size_t nparents = 0, len = 0, nopts = 0;
  bool active = p->info.kind == SN_SNAP_KIND_ACTIVE;
  int r = SN_SNAP_INTERNAL;

  memset(m, 0, sizeof *m);
  while ((q = snap_find(s, q->info.parent)) != NULL) {
    char *d = snap_dir(s, q->id, "fs"), *l;

    if (d == NULL || (l = realloc(lower, len + strlen(d) + 2)) == NULL) {
      free(d);
      sn_oom();
      goto out;
    }
    lower = l;
    len += (size_t) sprintf(lower + len, "%s%s", len ? ":" : "", d);
    if (nparents++ == 0)
      dir = d;                  /* the nearest parent's */
    else
      free(d);
  }
  if (nparents == 0 || (!active && nparents == 1)) {
    char *src = nparents ? dir : snap_dir(s, p->id, "fs");

    if (src == NULL) {
      sn_oom();
      goto out;
    }
    dir = src;
    opts[0] = strdup(active ? "rw" : "ro");
    opts[1] = strdup("rbind");
    if (opts[0] == NULL || opts[1] == NULL) {
      sn_oom();
      goto out;
    }
    r = add_mount(m, "bind", dir, opts, 2) == -1 ? SN_SNAP_INTERNAL : 0;
    goto out;
  }
  /* overlayfs: index=off (lower directories are shared by many
   * mounts), then for an active snapshot its work and upper directories,
   * then the parents. */
  opts[nopts++] = strdup("index=off");
  if (active) {
    char *w = snap_dir(s, p->id, "work"), *u = snap_dir(s, p->id, "fs");

    if (w == NULL || asprintf(&opts[nopts++], "workdir=%s", w) < 0)
      opts[nopts - 1] = NULL;
    if (u == NULL || asprintf(&opts[nopts++], "upperdir=%s", u) < 0)
      opts[nopts - 1] = NULL;
    free(w);
    free(u);
  }
  if (asprintf(&opts[nopts++], "lowerdir=%s", lower) < 0)
    opts[nopts - 1] = NULL;
  for (size_t i = 0; i < nopts; i++)
    if (opts[i] == NULL) {
      sn_oom();
      goto out;
    }
  r = add_mount(m, "overlay", "overlay", opts, nopts) == -1
    ? SN_SNAP_INTERNAL : 0;
  nopts = 0;
out:
  for (size_t i = 0; i < 4; i++)
    free(opts[i]);
  if (r != 0)
    sn_snap_mounts_clear(m);
  free(dir);
  free(lower);
  return r;
}

/* ---- the store ---------------------------------------------------------- */

struct sn_snapshots *
sn_snapshots_open(const char *root)
{
  struct sn_snapshots *s = calloc(1, sizeof *s);
  char *dir = NULL;

  if (s == NULL || (s->root = strdup(root)) == NULL) {
    free(s);
    sn_oom();
    return NULL;
  }
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->mounted, NULL);
  s->next_id = 1;
  if (root[0] != '/' || !sn_mount_overlay_safe(root)) {
    sn_set_error("%s: the root must be an absolute path without ',', ':', "
                 "'\\' or a newline (they cannot be in overlayfs options)",
                 root);
    goto fail;
  }
  if (asprintf(&dir, "%s/snapshots", root) < 0) {
    dir = NULL;
    sn_oom();
    goto fail;
  }
  if (sn_mkdir_p(dir, 0700) == -1) {
    sn_set_error("%s: %s", dir, strerror(errno));
    goto fail;
  }
  if (snap_load(s) == -1)
    goto fail;
  free(dir);
  return s;
fail:
  free(dir);
  sn_snapshots_close(s);
  return NULL;
}

void
sn_snapshots_set_remote(struct sn_snapshots *s,
                        const struct sn_snap_remote *r)
{
  pthread_mutex_lock(&s->lock);
  if (r)
    s->remote = *r;
  else
    memset(&s->remote, 0, sizeof s->remote);
  pthread_mutex_unlock(&s->lock);
}

void
sn_snapshots_close(struct sn_snapshots *s)
{
  size_t i;

  if (s == NULL)
    return;
  for (i = 0; i < s->n; i++)
    sn_snap_info_clear(&s->v[i].info);
  free(s->v);
  free(s->pending);
  pthread_cond_destroy(&s->mounted);
  pthread_mutex_destroy(&s->lock);
  free(s->root);
  free(s);
}

/* Room for one more snapshot in s->v; the new entry, zeroed, with the
 * next id (not yet counted). */
static struct snap *
new_entry(struct sn_snapshots *s)
{
  struct snap *p;

  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 16;
    struct snap *v = realloc(s->v, cap * sizeof *v);

    if (v == NULL) {
      sn_oom();
      return NULL;
    }
    s->v = v;
    s->cap = cap;
  }
  p = &s->v[s->n];
  memset(p, 0, sizeof *p);
  p->id = s->next_id;
  return p;
}

/* A new entry's info: kind, name, parent and labels, created now.  0, or
 * SN_SNAP_INTERNAL (out of memory; the info cleared). */
static int
new_info(struct snap *p, enum sn_snap_kind k, const char *name,
         const char *parent, const struct sn_snap_label *l, size_t nl)
{
  p->info.kind = k;
  p->info.created_ns = p->info.updated_ns = snap_now_ns();
  p->info.name = strdup(name);
  p->info.parent = strdup(parent);
  if (p->info.name == NULL || p->info.parent == NULL ||
      snap_labels_copy(&p->info.labels, &p->info.nlabels, l, nl) == -1) {
    sn_snap_info_clear(&p->info);
    return oom();
  }
  return 0;
}

/* The snapshot's directories made; its directory removed again when
 * undo. */
static int
make_dirs(struct sn_snapshots *s, uint64_t id, bool undo)
{
  char *fs = snap_dir(s, id, "fs"), *work = snap_dir(s, id, "work");
  char *dir = snap_dir(s, id, NULL);
  int r = 0;

  if (fs == NULL || work == NULL || dir == NULL)
    r = sn_oom();
  else if (undo)
    rm_tree(dir);
  else if (sn_mkdir_p(fs, 0755) == -1 || sn_mkdir_p(work, 0700) == -1)
    r = sn_set_error("%s: %s", dir, strerror(errno));
  free(fs);
  free(work);
  free(dir);
  return r;
}

/* The pending mount of the target name, or (target NULL) of id; NULL for
 * none. */
static const struct snap_pending *
snap_pending_find(const struct sn_snapshots *s, uint64_t id,
                  const char *target)
{
  size_t i;

  for (i = 0; i < s->npending; i++)
    if (target ? strcmp(s->pending[i].target, target) == 0
               : s->pending[i].id == id)
      return &s->pending[i];
  return NULL;
}

/* Note a mount under way (with the lock); -1 when out of memory. */
static int
pending_add(struct sn_snapshots *s, uint64_t id, const char *target,
            const char *layer)
{
  if (s->npending == s->pending_cap) {
    size_t cap = s->pending_cap ? 2 * s->pending_cap : 8;
    struct snap_pending *v = realloc(s->pending, cap * sizeof *v);

    if (v == NULL)
      return sn_oom();
    s->pending = v;
    s->pending_cap = cap;
  }
  s->pending[s->npending++] = (struct snap_pending) { id, target, layer };
  return 0;
}

/* The mount of id has ended, its outcome in the table (with the lock):
 * wake the Prepares waiting for the same target. */
static void
pending_end(struct sn_snapshots *s, uint64_t id)
{
  size_t i;

  for (i = 0; i < s->npending; i++)
    if (s->pending[i].id == id) {
      s->pending[i] = s->pending[--s->npending];
      break;
    }
  pthread_cond_broadcast(&s->mounted);
}

/* Is the snapshot named name the one of directory id? */
static bool
is_snapshot(struct sn_snapshots *s, const char *name, uint64_t id)
{
  const struct snap *p = snap_find(s, name);

  return p && p->id == id;
}

/* The layer just mounted on snapshot id's fs, taken into the table as
 * the committed snapshot target (with the lock, retaken after the
 * mount): SN_SNAP_EXISTS, or an error (then the caller unmounts).  What
 * the Prepare checked before the mount may have changed meanwhile. */
static int
add_remote(struct sn_snapshots *s, uint64_t id, const char *target,
           const char *parent, const char *key, const char *image,
           const struct sn_snap_label *l, size_t nl)
{
  const char *layer = sn_snap_label_get(l, nl, SN_SNAP_LABEL_REMOTE);
  struct snap *p;

  if (snap_find(s, target))
    return fail(SN_SNAP_EXISTS, "target snapshot %s: already exists", target);
  if (parent[0] && snap_find(s, parent) == NULL)
    return fail(SN_SNAP_NOT_FOUND, "parent snapshot %s of %s was removed "
                "while its layer was being mounted", parent, key);
  if ((p = new_entry(s)) == NULL)
    return SN_SNAP_INTERNAL;
  p->id = id;
  p->remote = true;
  if (new_info(p, SN_SNAP_KIND_COMMITTED, target, parent, l, nl) != 0)
    return SN_SNAP_INTERNAL;
  s->n++;
  if (snap_save(s) == -1) {
    s->n--;
    sn_snap_info_clear(&p->info);
    return SN_SNAP_INTERNAL;
  }
  return fail(SN_SNAP_EXISTS, "target snapshot %s: already exists (layer %s "
              "of %s served lazily, for %s)", target, layer, image, key);
}

/* Prepare of key on parent with containerd's remote-snapshot labels:
 * the layer mounted on a new committed snapshot named target, and
 * SN_SNAP_EXISTS; or -1 (logged) when it cannot be, for an ordinary
 * Prepare.  The image, layer and manifest are CRI's labels, else
 * soci's (its own pulls and nerdctl's with --snapshotter soci), which
 * may also name the SOCI index.
 *
 * Called with the store's lock, which the mount runs without (it may
 * take seconds: the other operations go on meanwhile).  A Prepare of a
 * target that is being mounted waits for that mount's outcome; the
 * snapshot's id and directory are reserved (cleanup and the credentials
 * collection leave them alone). */
static int
prepare_remote(struct sn_snapshots *s, const char *key, const char *parent,
               const struct sn_snap_label *l, size_t nl)
{
  const char *target = sn_snap_label_get(l, nl, SN_SNAP_LABEL_TARGET);
  const char *layer, *index;
  struct sn_snap_label *all = NULL;
  char *image = NULL, *fs = NULL, *msg;
  uint64_t id;
  int r = -1, m;

  if (target == NULL || target[0] == 0)
    return -1;
  while (snap_pending_find(s, 0, target))
    pthread_cond_wait(&s->mounted, &s->lock);
  if (snap_find(s, target))
    return fail(SN_SNAP_EXISTS, "target snapshot %s: already exists", target);
  m = snap_remote_args(l, nl, &image, &layer, &index);
  if (m != 0)
    return m == 1 ? -1 : oom();
  id = s->next_id++;
  all = calloc(nl + 1, sizeof *all);
  if (all == NULL || (fs = snap_dir(s, id, "fs")) == NULL) {
    sn_oom();
    goto out;
  }
  memcpy(all, l, nl * sizeof *l);
  all[nl] = (struct sn_snap_label) { SN_SNAP_LABEL_REMOTE, (char *) layer };
  if (pending_add(s, id, target, layer) == -1)
    goto out;
  if (make_dirs(s, id, false) == 0) {
    pthread_mutex_unlock(&s->lock);
    m = snap_remote_mount(s, image, layer, index, fs);
    pthread_mutex_lock(&s->lock);
    if (m == 0) {
      r = add_remote(s, id, target, parent, key, image, all, nl + 1);
      if (!is_snapshot(s, target, id)) {     /* the message is add_remote's */
        msg = strdup(sn_error());
        snap_remote_umount(s, fs);
        if (msg)
          sn_set_error("%s", msg);
        free(msg);
      }
    }
  }
  pending_end(s, id);
  if (!is_snapshot(s, target, id)) {
    make_dirs(s, id, true);
    snap_remote_auth_gc(s);
  }
out:
  if (r == -1)
    snap_log(s, "layer %s of %s: not served lazily, containerd unpacks it: "
             "%s", layer, image, sn_error());
  free(fs);
  free(all);
  free(image);
  return r;
}

/* Can key be made on parent?  0, or the error. */
static int
check_new(struct sn_snapshots *s, const char *key, const char *parent)
{
  const struct snap *par = NULL;

  if (snap_find(s, key))
    return fail(SN_SNAP_EXISTS, "snapshot %s: already exists", key);
  if (parent[0] && (par = snap_find(s, parent)) == NULL)
    return fail(SN_SNAP_NOT_FOUND, "parent snapshot %s of %s does not exist",
                parent, key);
  if (par && par->info.kind != SN_SNAP_KIND_COMMITTED)
    return fail(SN_SNAP_INVALID, "parent snapshot %s of %s is not committed",
                parent, key);
  return chain_available(s, parent);
}

/* A new snapshot of kind k (active or view). */
static int
create(struct sn_snapshots *s, enum sn_snap_kind k, const char *key,
       const char *parent, const struct sn_snap_label *l, size_t nl,
       struct sn_snap_mounts *mounts)
{
  struct snap *p;
  int r;

  memset(mounts, 0, sizeof *mounts);
  if (key == NULL || key[0] == 0)
    return fail(SN_SNAP_INVALID, "an empty snapshot key");
  if ((r = check_labels(l, nl)) != 0)
    return r;
  if (parent == NULL)
    parent = "";
  if ((r = check_new(s, key, parent)) != 0)
    return r;
  /* (Its mount released the lock: check again.) */
  if (k == SN_SNAP_KIND_ACTIVE && s->remote.mount_argv &&
      ((r = prepare_remote(s, key, parent, l, nl)) != -1 ||
       (r = check_new(s, key, parent)) != 0))
    return r;
  if ((p = new_entry(s)) == NULL)
    return SN_SNAP_INTERNAL;
  if (new_info(p, k, key, parent, l, nl) != 0)
    return SN_SNAP_INTERNAL;
  if (make_dirs(s, p->id, false) == -1) {
    sn_snap_info_clear(&p->info);
    make_dirs(s, p->id, true);
    return SN_SNAP_INTERNAL;
  }
  s->n++;
  s->next_id++;
  if (snap_save(s) == -1) {
    s->n--;
    s->next_id--;
    sn_snap_info_clear(&p->info);
    make_dirs(s, p->id, true);
    return SN_SNAP_INTERNAL;
  }
  return snap_mounts(s, p, mounts);
}

#define LOCKED(s, call)                          \
  ({ int r_;                                     \
     pthread_mutex_lock(&(s)->lock);             \
     r_ = (call);                                \
     pthread_mutex_unlock(&(s)->lock);           \
     r_; })

int
sn_snapshots_prepare(struct sn_snapshots *s, const char *key,
                     const char *parent, const struct sn_snap_label *l,
                     size_t nl, struct sn_snap_mounts *mounts)
{
  return LOCKED(s, create(s, SN_SNAP_KIND_ACTIVE, key, parent, l, nl,
                          mounts));
}

int
sn_snapshots_view(struct sn_snapshots *s, const char *key,
                  const char *parent, const struct sn_snap_label *l,
                  size_t nl, struct sn_snap_mounts *mounts)
{
  return LOCKED(s, create(s, SN_SNAP_KIND_VIEW, key, parent, l, nl,
                          mounts));
}

static int
mounts_of(struct sn_snapshots *s, const char *key,
          struct sn_snap_mounts *mounts)
{
  struct snap *p = snap_find(s, key);
  int r;

  memset(mounts, 0, sizeof *mounts);
  if (p == NULL)
    return fail(SN_SNAP_NOT_FOUND, "snapshot %s does not exist",
                key ? key : "");
  if (p->info.kind == SN_SNAP_KIND_COMMITTED)
    return fail(SN_SNAP_PRECONDITION, "snapshot %s is committed: it has no "
                "mounts (view it)", key);
  if ((r = chain_available(s, p->info.parent)) != 0)
    return r;
  return snap_mounts(s, p, mounts);
}

int
sn_snapshots_mounts(struct sn_snapshots *s, const char *key,
                    struct sn_snap_mounts *mounts)
{
  return LOCKED(s, mounts_of(s, key, mounts));
}

static int
commit(struct sn_snapshots *s, const char *name, const char *key,
       const struct sn_snap_label *l, size_t nl)
{
  struct snap *p = snap_find(s, key);
  struct sn_snap_info old;
  char *fs;
  int r;

  if (name == NULL || name[0] == 0)
    return fail(SN_SNAP_INVALID, "an empty snapshot name");
  if ((r = check_labels(l, nl)) != 0)
    return r;
  if (p == NULL)
    return fail(SN_SNAP_NOT_FOUND, "snapshot %s does not exist",
                key ? key : "");
  if (p->info.kind != SN_SNAP_KIND_ACTIVE)
    return fail(SN_SNAP_PRECONDITION, "snapshot %s is not active: only an "
                "active snapshot is committed", key);
  if (snap_find(s, name))
    return fail(SN_SNAP_EXISTS, "snapshot %s: already exists", name);
  fs = snap_dir(s, p->id, "fs");
  if (fs == NULL)
    return oom();
  r = measure(fs, &p->size, &p->inodes);
  free(fs);
  if (r == -1)
    return SN_SNAP_INTERNAL;
  old = p->info;
  memset(&p->info, 0, sizeof p->info);
  p->info.name = strdup(name);
  p->info.parent = old.parent;
  p->info.kind = SN_SNAP_KIND_COMMITTED;
  p->info.created_ns = old.created_ns;
  p->info.updated_ns = snap_now_ns();
  if (p->info.name == NULL ||
      snap_labels_copy(&p->info.labels, &p->info.nlabels, l, nl) == -1 ||
      snap_save(s) == -1) {
    old.parent = NULL;
    sn_snap_info_clear(&p->info);  /* back to what it was */
    p->info = old;
    return SN_SNAP_INTERNAL;
  }
  old.parent = NULL;
  sn_snap_info_clear(&old);
  return 0;
}

int
sn_snapshots_commit(struct sn_snapshots *s, const char *name,
                    const char *key, const struct sn_snap_label *l,
                    size_t nl)
{
  return LOCKED(s, commit(s, name, key, l, nl));
}

static int
remove_one(struct sn_snapshots *s, const char *key)
{
  struct snap *p = snap_find(s, key), gone;
  char *dir;
  size_t i;

  if (p == NULL)
    return fail(SN_SNAP_NOT_FOUND, "snapshot %s does not exist",
                key ? key : "");
  for (i = 0; i < s->n; i++)
    if (strcmp(s->v[i].info.parent, key) == 0)
      return fail(SN_SNAP_PRECONDITION, "cannot remove snapshot %s: "
                  "snapshot %s has it as parent", key, s->v[i].info.name);
  if (p->remote && !p->unavailable) {   /* its layer mount first: kept on
                                         * failure */
    char *fs = snap_dir(s, p->id, "fs");
    int r = fs ? snap_remote_umount(s, fs) : oom();

    free(fs);
    if (r != 0)
      return r == -1 ? (sn_prefix_error("snapshot %s: ", key),
                        SN_SNAP_INTERNAL) : r;
  }
  gone = *p;
  i = (size_t) (p - s->v);
  memmove(p, p + 1, (s->n - i - 1) * sizeof *p);
  s->n--;
  if (snap_save(s) == -1) {
    memmove(s->v + i + 1, s->v + i, (s->n - i) * sizeof *p);
    s->v[i] = gone;
    s->n++;
    return SN_SNAP_INTERNAL;
  }
  /* The metadata no longer names it: a failed rm leaves a directory
   * that sn_snapshots_cleanup removes. */
  dir = snap_dir(s, gone.id, NULL);
  if (dir)
    rm_tree(dir);
  free(dir);
  if (gone.remote)
    snap_remote_auth_gc(s);
  sn_snap_info_clear(&gone.info);
  return 0;
}

int
sn_snapshots_remove(struct sn_snapshots *s, const char *key)
{
  return LOCKED(s, remove_one(s, key));
}

static int
stat_one(struct sn_snapshots *s, const char *key, struct sn_snap_info *info)
{
  struct snap *p = snap_find(s, key);

  memset(info, 0, sizeof *info);
  if (p == NULL)
    return fail(SN_SNAP_NOT_FOUND, "snapshot %s does not exist",
                key ? key : "");
  return snap_info_copy(info, &p->info) == -1 ? SN_SNAP_INTERNAL : 0;
}

int
sn_snapshots_stat(struct sn_snapshots *s, const char *key,
                  struct sn_snap_info *info)
{
  return LOCKED(s, stat_one(s, key, info));
}

static int
update(struct sn_snapshots *s, const struct sn_snap_info *info,
       const char *const *paths, size_t npaths, struct sn_snap_info *out)
{
  struct snap *p = snap_find(s, info->name);
  struct sn_snap_label *nl = NULL;
  size_t n = 0, i, k;
  int r;

  memset(out, 0, sizeof *out);
  if (p == NULL)
    return fail(SN_SNAP_NOT_FOUND, "snapshot %s does not exist",
                info->name ? info->name : "");
  if ((r = check_labels(info->labels, info->nlabels)) != 0)
    return r;
  for (i = 0; i < npaths; i++)
    if (strcmp(paths[i], "labels") != 0 && strncmp(paths[i], "labels.", 7))
      return fail(SN_SNAP_INVALID, "cannot update %s of snapshot %s: only "
                  "labels change", paths[i], info->name);
  /* The new labels: info's for "labels" (or no path), else the old ones
   * with each "labels.K" set from info or removed. */
  for (i = 0; i < npaths && strcmp(paths[i], "labels") != 0; i++)
    ;
  if (npaths == 0 || i < npaths)
    r = snap_labels_copy(&nl, &n, info->labels, info->nlabels);
  else {
    struct sn_snap_label *tmp = calloc(p->info.nlabels + npaths + 1,
                                       sizeof *tmp);

    if (tmp == NULL)
      return oom();
    for (k = 0; k < p->info.nlabels; k++) {
      const char *key = p->info.labels[k].key;

      for (i = 0; i < npaths && strcmp(paths[i] + 7, key) != 0; i++)
        ;
      if (i == npaths)          /* not named: kept */
        tmp[n++] = p->info.labels[k];
    }
    for (i = 0; i < npaths; i++) {
      const char *v = sn_snap_label_get(info->labels, info->nlabels,
                                        paths[i] + 7);

      if (v)
        tmp[n++] = (struct sn_snap_label) { (char *) paths[i] + 7,
                                            (char *) v };
    }
    r = snap_labels_copy(&nl, &k, tmp, n);
    n = k;
    free(tmp);
  }
  if (r == -1)
    return SN_SNAP_INTERNAL;
  for (i = 0; i < p->info.nlabels; i++) {
    free(p->info.labels[i].key);
    free(p->info.labels[i].value);
  }
  free(p->info.labels);
  p->info.labels = nl;
  p->info.nlabels = n;
  p->info.updated_ns = snap_now_ns();
  if (snap_save(s) == -1)
    return SN_SNAP_INTERNAL;
  return snap_info_copy(out, &p->info) == -1 ? SN_SNAP_INTERNAL : 0;
}

int
sn_snapshots_update(struct sn_snapshots *s, const struct sn_snap_info *info,
                    const char *const *paths, size_t npaths,
                    struct sn_snap_info *out)
{
  return LOCKED(s, update(s, info, paths, npaths, out));
}

static int
usage(struct sn_snapshots *s, const char *key, int64_t *size,
      int64_t *inodes)
{
  struct snap *p = snap_find(s, key);
  char *fs;
  int r;

  *size = *inodes = 0;
  if (p == NULL)
    return fail(SN_SNAP_NOT_FOUND, "snapshot %s does not exist",
                key ? key : "");
  if (p->info.kind == SN_SNAP_KIND_COMMITTED) {  /* remote: 0 on disk */
    *size = p->size;
    *inodes = p->inodes;
    return 0;
  }
  fs = snap_dir(s, p->id, "fs");
  if (fs == NULL)
    return oom();
  r = measure(fs, size, inodes);
  free(fs);
  return r == -1 ? SN_SNAP_INTERNAL : 0;
}

int
sn_snapshots_usage(struct sn_snapshots *s, const char *key, int64_t *size,
                   int64_t *inodes)
{
  return LOCKED(s, usage(s, key, size, inodes));
}

int
sn_snapshots_walk(struct sn_snapshots *s,
                  int (*fn)(void *opaque, const struct sn_snap_info *),
                  void *opaque)
{
  struct sn_snap_info *all;
  size_t n, i;
  int r = 0;

  pthread_mutex_lock(&s->lock);
  n = s->n;
  all = calloc(n ? n : 1, sizeof *all);
  for (i = 0; all && i < n; i++)
    if (snap_info_copy(&all[i], &s->v[i].info) == -1)
      break;
  pthread_mutex_unlock(&s->lock);
  if (all == NULL || i < n) {
    for (size_t k = 0; all && k < i; k++)
      sn_snap_info_clear(&all[k]);
    free(all);
    return oom();
  }
  for (i = 0; i < n; i++) {
    if (r == 0 && fn(opaque, &all[i]) != 0)
      r = SN_SNAP_INTERNAL;
    sn_snap_info_clear(&all[i]);
  }
  free(all);
  return r;
}

static int
cleanup(struct sn_snapshots *s)
{
  char *dir;
  DIR *d;
  struct dirent *e;
  int r = 0;

  if (asprintf(&dir, "%s/snapshots", s->root) < 0)
    return oom();
  d = opendir(dir);
  if (d == NULL) {
    sn_set_error("%s: %s", dir, strerror(errno));
    free(dir);
    return SN_SNAP_INTERNAL;
  }
  while ((e = readdir(d)) != NULL) {
    char *end, *path;
    uint64_t id = strtoull(e->d_name, &end, 10);
    size_t i;

    if (e->d_name[0] == '.' || *end != 0)
      continue;
    for (i = 0; i < s->n && s->v[i].id != id; i++)
      ;
    if (i < s->n || snap_pending_find(s, id, NULL))
      continue;
    if (asprintf(&path, "%s/%s", dir, e->d_name) < 0) {
      r = SN_SNAP_INTERNAL;
      break;
    }
    if (snap_remote_umount_stray(s, path) == -1 || rm_tree(path) == -1)
      r = SN_SNAP_INTERNAL;
    free(path);
  }
  closedir(d);
  free(dir);
  snap_remote_auth_gc(s);
  return r;
}

int
sn_snapshots_cleanup(struct sn_snapshots *s)
{
  return LOCKED(s, cleanup(s));
}
