/* soci-nbd: the snapshot store behind the containerd snapshotter
 * (docs/snapshotter.md) — containerd's snapshot model (active, view and
 * committed snapshots in a parent chain, labels, usage) kept in a
 * directory, with the mounts containerd is handed for each: a bind mount
 * or overlayfs over the chain's directories.
 *
 * Layout under ROOT: metadata.json (every snapshot; rewritten atomically
 * after each change, so a restarted daemon finds what it left) and
 * snapshots/<id>/fs (the snapshot's tree: the upper directory of an active
 * snapshot, the layer of a committed one), snapshots/<id>/work (overlayfs'
 * work directory).
 *
 * Keys are containerd's (opaque strings, namespaced by containerd before
 * they get here).  Every operation holds the store's lock (containerd
 * calls concurrently), but for a remote snapshot's mount, which runs
 * without it.
 *
 * Errors: operations return SN_SNAP_OK (0) or one of enum sn_snap_err,
 * with a one-line message through util/err.h; the daemon maps them to
 * gRPC codes as containerd's errdefs do.  Returned structures are the
 * caller's (sn_snap_info_clear, sn_snap_mounts_clear).
 */
#ifndef SN_SNAPSHOTS_H
#define SN_SNAPSHOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* containerd's Kind numbering (snapshots.v1). */
enum sn_snap_kind {
  SN_SNAP_KIND_UNKNOWN = 0,
  SN_SNAP_KIND_VIEW = 1,
  SN_SNAP_KIND_ACTIVE = 2,
  SN_SNAP_KIND_COMMITTED = 3,
};

enum sn_snap_err {
  SN_SNAP_OK = 0,
  SN_SNAP_NOT_FOUND,            /* no such key (or parent) */
  SN_SNAP_EXISTS,               /* the key (or commit name) is taken */
  SN_SNAP_PRECONDITION,         /* wrong kind, or it has children */
  SN_SNAP_INVALID,              /* a malformed request */
  SN_SNAP_INTERNAL,             /* the file system, memory */
  SN_SNAP_UNAVAILABLE,          /* a remote layer in the chain is not
                                 * mounted (sn_snapshots_restore) */
};

/* The combined size of a label's key and value may not exceed this
 * (containerd's rule). */
#define SN_SNAP_LABEL_MAX 4096

struct sn_snap_label {
  char *key, *value;
};

struct sn_snap_info {
  char *name;
  char *parent;                 /* "" for none */
  enum sn_snap_kind kind;
  int64_t created_ns, updated_ns;   /* since the Unix epoch */
  struct sn_snap_label *labels;     /* sorted by key */
  size_t nlabels;
};

struct sn_snap_mount {
  char *type, *source;
  char **options;
  size_t noptions;
};

struct sn_snap_mounts {
  struct sn_snap_mount *m;
  size_t n;
};

struct sn_snapshots;
struct sn_snap_creds;

/* Remote snapshots (docs/snapshotter.md): the labels containerd gives a
 * remote snapshotter when it prepares a layer's snapshot (CRI sets them;
 * soci-nbd's own pull would too). */
#define SN_SNAP_LABEL_TARGET "containerd.io/snapshot.ref"
#define SN_SNAP_LABEL_IMAGE "containerd.io/snapshot/cri.image-ref"
#define SN_SNAP_LABEL_MANIFEST "containerd.io/snapshot/cri.manifest-digest"
#define SN_SNAP_LABEL_LAYER "containerd.io/snapshot/cri.layer-digest"
/* The same from soci's own pulls (soci image rpull, nerdctl --snapshotter
 * soci): with the daemon registered as "soci", they work unchanged.  The
 * SOCI index label may be empty. */
#define SN_SNAP_LABEL_SOCI_REF "containerd.io/snapshot/remote/soci.reference"
#define SN_SNAP_LABEL_SOCI_LAYER "containerd.io/snapshot/remote/soci.digest"
#define SN_SNAP_LABEL_SOCI_MANIFEST \
  "containerd.io/snapshot/remote/image.manifest.digest"
#define SN_SNAP_LABEL_SOCI_INDEX \
  "containerd.io/snapshot/remote/soci.index.digest"
/* Set on a snapshot served lazily: the layer's digest. */
#define SN_SNAP_LABEL_REMOTE "io.soci-nbd.snapshot.remote-layer"

struct sn_snap_remote {
  /* The command that mounts a layer: argv up to the options (for example
   * soci-nbd mount -q --plain-http HOST); the store adds --layer DIGEST
   * IMAGE DIR.  And the one that undoes it (soci-nbd umount -q), + DIR.
   * NULL-terminated; they must outlive the store. */
  char *const *mount_argv;
  char *const *umount_argv;
  /* Told why a layer could not be served lazily (it is then unpacked
   * by containerd as usual), and what hosts.toml says that is not
   * followed. */
  void (*log)(const char *msg);
  /* containerd's registry hosts directories (':'-separated, as CRI's
   * config_path), or NULL; snap-registry.h. */
  const char *hosts_dirs;
  /* Credentials from CRI pulls (snap-registry.h), or NULL; the caller's,
   * outliving the store. */
  struct sn_snap_creds *creds;
  /* Where their files go (STATE/auth): a tmpfs such as /run, so that
   * they never reach a disk and end with a reboot, as the mounts do;
   * NULL: the root. */
  const char *state_dir;
};

/* Open (creating) the store in root; NULL on error (a metadata file that
 * cannot be read is an error, never silently replaced). */
struct sn_snapshots *sn_snapshots_open(const char *root);
void sn_snapshots_close(struct sn_snapshots *s);
/* Serve layers lazily: a Prepare of an active snapshot whose labels name
 * its target (SN_SNAP_LABEL_TARGET), the image and the layer (CRI's
 * labels, else soci's) mounts the
 * layer (r's mount command) on a new committed snapshot named the target
 * and answers SN_SNAP_EXISTS, so that containerd does not download it;
 * when the mount fails the Prepare is an ordinary one.  Removing such a
 * snapshot unmounts it first.  The mount runs without the store's lock
 * (other operations go on); a Prepare of a target being mounted waits
 * for that mount's outcome.  Call it before any operation. */
void sn_snapshots_set_remote(struct sn_snapshots *s,
                             const struct sn_snap_remote *r);

/* A new active (Prepare) or view (View) snapshot key on committed parent
 * ("" or NULL: none), with labels; *mounts: how to mount it. */
int sn_snapshots_prepare(struct sn_snapshots *s, const char *key,
                         const char *parent, const struct sn_snap_label *l,
                         size_t nl, struct sn_snap_mounts *mounts);
int sn_snapshots_view(struct sn_snapshots *s, const char *key,
                      const char *parent, const struct sn_snap_label *l,
                      size_t nl, struct sn_snap_mounts *mounts);
/* The mounts of an active or view snapshot. */
int sn_snapshots_mounts(struct sn_snapshots *s, const char *key,
                        struct sn_snap_mounts *mounts);
/* Active snapshot key becomes committed snapshot name (labels replace
 * its labels); its usage is measured now. */
int sn_snapshots_commit(struct sn_snapshots *s, const char *name,
                        const char *key, const struct sn_snap_label *l,
                        size_t nl);
/* Remove a snapshot that no other has as parent, and its directory. */
int sn_snapshots_remove(struct sn_snapshots *s, const char *key);
int sn_snapshots_stat(struct sn_snapshots *s, const char *key,
                      struct sn_snap_info *info);
/* Update the labels of info->name: paths as containerd's field mask
 * ("labels" replaces them all, "labels.K" sets or, when info has no K,
 * removes K; no path: all labels).  *out: the snapshot after it. */
int sn_snapshots_update(struct sn_snapshots *s,
                        const struct sn_snap_info *info,
                        const char *const *paths, size_t npaths,
                        struct sn_snap_info *out);
/* Disk usage (bytes of allocated blocks, inodes) of the snapshot's own
 * tree: measured for an active one, as of its commit for a committed
 * one. */
int sn_snapshots_usage(struct sn_snapshots *s, const char *key,
                       int64_t *size, int64_t *inodes);
/* Every snapshot, in creation order (copies: fn may call nothing of s).
 * fn returning non-zero stops the walk. */
int sn_snapshots_walk(struct sn_snapshots *s,
                      int (*fn)(void *opaque, const struct sn_snap_info *),
                      void *opaque);
/* Remove directories under snapshots/ that no snapshot owns (left by a
 * crash between a removal's metadata write and its rm, or by a daemon
 * that stopped while a remote layer mounted: such a mount is undone first
 * with the umount command, and logged; one that cannot be is left, with
 * its directory, and is the error). */
int sn_snapshots_cleanup(struct sn_snapshots *s);
/* At start, after sn_snapshots_set_remote (if any): mount again every
 * remote snapshot whose layer is not mounted (a reboot unmounts them all,
 * while ROOT keeps the snapshots), with the mount command and the
 * snapshot's own labels, and log each.  One that cannot be mounted (or
 * with no remote configured) is marked unavailable: the mounts of any
 * snapshot on it are refused with SN_SNAP_UNAVAILABLE (never an empty
 * layer), and removing it runs no umount command.  Returns how many are
 * unavailable (0: all served). */
int sn_snapshots_restore(struct sn_snapshots *s);

/* Does i pass filter (containerd's syntax: name, parent, kind, labels.K
 * with == or != or alone, joined by ','; snap-filter.c)?  0 and *match,
 * or -1 with a message for what is not supported.  i NULL: the syntax
 * only. */
int sn_snap_filter_match(const char *filter, const struct sn_snap_info *i,
                         bool *match);

/* The value of label key in l[0..n), or NULL. */
const char *sn_snap_label_get(const struct sn_snap_label *l, size_t n,
                              const char *key);

void sn_snap_info_clear(struct sn_snap_info *i);
void sn_snap_mounts_clear(struct sn_snap_mounts *m);
/* A name for an error code ("not found", ...). */
const char *sn_snap_err_name(int err);

#ifdef __cplusplus
}
#endif

#endif
