/* soci-nbd: housekeeping of a cache directory (the plugin's cache-dir=):
 * its size bound and its stale temporary files.
 *
 * The directory holds verified compressed spans, DIR/<layer hex>/<span>,
 * and whole layers, DIR/blobs/sha256/<hex>.  Both are written under
 * temporary names that carry the writer's process id
 * (DIR/<layer hex>/.<span>.<pid>.XXXXXX, DIR/blobs/sha256/<hex>.tmp.<pid>)
 * and renamed when complete.
 *
 * sn_diskcache_open removes the temporary files of processes that no longer
 * run (a crash, a kill -9), and temporary files of unknown origin older than
 * an hour; then, with a bound, deletes the least recently used cached files
 * (oldest mtime first: a file's mtime is bumped whenever it is used) until
 * the total is under the bound.  While serving, sn_diskcache_add counts the
 * bytes written; crossing the bound triggers the same eviction, down to 90%
 * of the bound.  Files listed with sn_diskcache_pin (whole layers this
 * process has open) are never deleted.  Unknown files in DIR are left alone.
 *
 * No symlink inside DIR is followed (subdirectories are opened with
 * O_NOFOLLOW, entries checked with fstatat(AT_SYMLINK_NOFOLLOW), removed
 * with unlinkat), and DIR itself must be owned by the effective uid or
 * root and not writable by group or others, else sn_diskcache_open fails.
 *
 * Thread-safe.  Errors follow err.h; eviction itself is best effort.
 */
#ifndef SN_DISKCACHE_H
#define SN_DISKCACHE_H

#include <stdint.h>

struct sn_diskcache;

/* max_bytes 0: unbounded.  log (may be NULL) is told what was removed. */
struct sn_diskcache *sn_diskcache_open(const char *dir, uint64_t max_bytes,
                                       void (*log)(void *opaque,
                                                   const char *msg),
                                       void *opaque);
void sn_diskcache_free(struct sn_diskcache *dc);

/* Never evict this file (a path inside DIR). */
int sn_diskcache_pin(struct sn_diskcache *dc, const char *path);
/* bytes were added to the directory; evicts if over the bound. */
void sn_diskcache_add(struct sn_diskcache *dc, uint64_t bytes);

struct sn_diskcache_stats {
  uint64_t bytes;               /* counted now */
  uint64_t max_bytes;
  uint64_t evicted_files, evicted_bytes;
  uint64_t stale_removed;       /* temporary files removed at open */
};
void sn_diskcache_get_stats(struct sn_diskcache *dc,
                            struct sn_diskcache_stats *st);

/* Bump path's mtime (it was used). */
void sn_diskcache_touch(const char *path);

#endif
