/* soci-nbd: internal to lib/snapshot/ — the store's in-memory table
 * (snap-store.c keeps it and its metadata file, snap-ops.c implements the
 * operations of snapshots.h on it). */
#ifndef SN_SNAP_INT_H
#define SN_SNAP_INT_H

#include <pthread.h>
#include <stdbool.h>

#include "snapshot/snapshots.h"

struct snap {
  uint64_t id;                  /* its directory: snapshots/<id> */
  struct sn_snap_info info;
  int64_t size, inodes;         /* usage, as of its commit */
  bool remote;                  /* its fs is a layer mount (snap-remote.c) */
  bool unavailable;             /* remote, its layer found unmounted and not
                                 * mounted again (sn_snapshots_restore):
                                 * never served as an empty tree */
};

/* A remote snapshot whose layer is being mounted, with the store's lock
 * released (snap-ops.c, prepare_remote): its id is taken and its
 * directory made, but it is not in the table yet.  The strings are the
 * Prepare's labels. */
struct snap_pending {
  uint64_t id;
  const char *target, *layer;
};

struct sn_snapshots {
  char *root;
  pthread_mutex_t lock;
  struct snap *v;               /* in creation order */
  size_t n, cap;
  uint64_t next_id;
  struct sn_snap_remote remote; /* mount_argv NULL: no remote snapshots */
  struct snap_pending *pending; /* mounts under way */
  size_t npending, pending_cap;
  pthread_cond_t mounted;       /* a pending mount ended */
};

/* snap-remote.c: mount layer of image on dir (with the SOCI index named,
 * when index is neither NULL nor ""), and undo it (0 or -1).  The mount
 * runs without the store's lock: it reads only s->root and s->remote
 * (set before any operation), and the caller collects the credentials
 * of a failed one (snap_remote_auth_gc, with the lock). */
int snap_remote_mount(struct sn_snapshots *s, const char *image,
                      const char *layer, const char *index,
                      const char *dir);
int snap_remote_umount(struct sn_snapshots *s, const char *dir);
/* snap-remote.c: a formatted line to the remote log, if there is one. */
void snap_log(struct sn_snapshots *s, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
/* snap-remote.c: what a remote snapshot's mount is given, from its labels
 * (containerd's CRI labels, or soci's): *image the image reference pinned
 * to the manifest digest when there is one (malloc'd), *layer and *index
 * (NULL: none) pointing into l.  0; 1 when the labels do not ask for a
 * remote snapshot; -1 out of memory. */
int snap_remote_args(const struct sn_snap_label *l, size_t nl, char **image,
                     const char **layer, const char **index);
/* snap-remote.c: before a cleanup removes dir, a directory no snapshot
 * owns: if its fs is a mount point (a layer mounted by a daemon that
 * stopped before it recorded the snapshot), undo the mount with the
 * umount command and log it.  0 (nothing mounted there any more), or -1:
 * the mount stays and dir must be left alone. */
int snap_remote_umount_stray(struct sn_snapshots *s, const char *dir);
/* snap-remote.c: remove the credentials files of layers no remote snapshot
 * serves any more, nor a pending mount is about to use. */
void snap_remote_auth_gc(struct sn_snapshots *s);

/* snap-store.c: load root/metadata.json (none: empty store). */
int snap_load(struct sn_snapshots *s);
/* snap-store.c: write root/metadata.json atomically (synced). */
int snap_save(struct sn_snapshots *s);
/* snap-store.c: the snapshot named key, or NULL. */
struct snap *snap_find(struct sn_snapshots *s, const char *key);
/* snap-store.c: snapshot id's directory, and its fs and work
 * subdirectories (malloc'd; NULL: out of memory). */
char *snap_dir(const struct sn_snapshots *s, uint64_t id, const char *sub);
/* snap-store.c: deep copies and the current time. */
int snap_info_copy(struct sn_snap_info *dst, const struct sn_snap_info *src);
int snap_labels_copy(struct sn_snap_label **dst, size_t *n,
                     const struct sn_snap_label *src, size_t nsrc);
int64_t snap_now_ns(void);

#endif
