/* soci-nbd: `soci-nbd mount` itself — serve an image with nbdkit's soci
 * plugin, attach its exports to kernel NBD devices (lib/nbd/nbddev.h,
 * kept attached across server restarts by a supervisor process), mount
 * them squashfs and stack them with overlayfs on a directory; and undo
 * it.  Every step is journaled first (mount-state.h), so that an undo
 * works in reverse order, also on a half-made mount.
 *
 * Conventions: functions returning int give 0 on success, or -1 with an
 * error set (lib/util/err.h); the path helpers return NULL only when out
 * of memory, without an error set.  Strings and vectors returned are
 * malloc'd and owned by the caller (vectors: ms_free_list).  Progress
 * ("DIR: ... mounted") goes to stdout unless quiet; a step of an undo or
 * of a restart that fails while the others still go on is reported on
 * stderr as "soci-nbd: ...". */
#ifndef SN_MOUNT_H
#define SN_MOUNT_H

#include <stdbool.h>
#include <stddef.h>

#include "mount/mount-state.h"

/* The plugin's arguments, "KEY=VALUE" strings, NULL-terminated. */
struct sn_mount_args {
  char **v;
  size_t n;
};

/* What to mount and how (the values of the command line). */
struct sn_mount_req {
  const char *image, *dir;       /* dir: absolute */
  bool flat, rw;
  const char *layer;             /* a layer digest: only its device,
                                  * read-only on dir (not flat, not rw) */
  bool lazy_only;                /* with layer: refuse a layer that would be
                                  * downloaded whole */
  const char *upper;             /* absolute or NULL */
  const char *block_size;
  struct sn_mount_args plugin_args;
  const char *nbdkit, *plugin, *password;
  bool verbose, quiet;
  bool suid, dev;                /* --suid, --dev: honour them in DIR */
};

/* An absolute, canonical path for DIR (lexical when it cannot be
 * resolved, so that a vanished directory can still be unmounted). */
char *sn_mount_abs_dir(const char *dir);
/* The plugin to load: opt (--plugin), $SOCI_NBD_PLUGIN, the build tree
 * next to this program, else "soci" (nbdkit's plugin directory). */
char *sn_mount_find_plugin(const char *opt);
/* nbdkit's absolute path: opt (--nbdkit), else a PATH search, so that a
 * restart does not depend on the caller's PATH. */
char *sn_mount_find_nbdkit(const char *opt);
/* False for a path with characters that overlayfs's option syntax cannot
 * carry (',', ':', '\\', newline). */
bool sn_mount_overlay_safe(const char *p);

/* Mount m on m->dir as mount ID (ms_mount_id of it; the caller checked
 * that it is free); SIGINT, SIGTERM and SIGHUP abort a starting nbdkit
 * from here on.  On failure, what was made is undone (an undo that fails
 * too is reported on stderr) and the error is the mount's. */
int sn_mount_make(struct ms *s, const char *id, const struct sn_mount_req *m);
/* Undo the journal of mount ID in reverse order.  A step that fails is
 * reported and the others are still tried, except that a busy top mount
 * stops everything (the devices under it must stay).  0 when all of it is
 * gone (then the journal too). */
int sn_mount_unwind(struct ms *s, const char *id, bool lazy);
/* The servers behind a mount's devices (and its own), deduplicated;
 * NULL when out of memory. */
char **sn_mount_servers(struct ms *s, const struct ms_journal *j);
/* Start the nbdkit servers of the mount on dir (absolute) again, with the
 * same arguments.  0; 1 when some could not be (each reported); -1 with
 * an error when dir is not a mount of ours or none was restarted. */
int sn_mount_restart(struct ms *s, const char *dir, bool quiet);
/* Print the mounts, one per line, to stdout: DIR IMAGE MODE DEVICES
 * SERVERS STATE, tab-separated (see `soci-nbd mounts --help`). */
int sn_mount_list(struct ms *s);

#endif
