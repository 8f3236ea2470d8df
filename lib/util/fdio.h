/* soci-nbd: whole reads and writes of files: writes retrying short
 * transfers and EINTR, files replaced atomically, whole files read into
 * memory, directory trees made.
 *
 * Errors: sn_write_all and sn_write_file_atomic return -1 with errno set
 * and no message (callers name the file); sn_read_file and sn_mkdir_p
 * return -1 with a message naming the path (sn_error()). */
#ifndef SN_FDIO_H
#define SN_FDIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int sn_write_all(int fd, const void *buf, size_t len);

/* A file written under a temporary name in its directory and renamed over
 * its final path only when complete, so that readers never see it half
 * written.  One rule for every such file: the temporary is created with
 * O_EXCL (never through a symlink, never over another file) and, with
 * sync, is fsync'd before the rename (durable files: caches, layouts,
 * images; not the stats file, rewritten every few seconds).
 *
 *   sn_atomic_open: tmpl names the temporary and ends in "XXXXXX" (NULL:
 *     path + ".XXXXXX"); mode 0 means 0644.  Write to f->fd.
 *   sn_atomic_commit: fsync (with sync), close, rename over path; on
 *     failure the temporary is removed.  Either way f is done with.
 *   sn_atomic_publish: the same but f->fd stays open, now the final
 *     file's, and belongs to the caller (who reads what it wrote; no
 *     sn_atomic_abort after a successful publish).
 *   sn_atomic_abort: close and remove the temporary (safe after a failed
 *     open or a commit).
 * All return 0, or -1 with errno set (no message), like sn_write_all. */
struct sn_atomic_file {
  int fd;
  char *tmp;
  char *path;
};
int sn_atomic_open(struct sn_atomic_file *f, const char *path,
                   const char *tmpl, unsigned mode);
int sn_atomic_commit(struct sn_atomic_file *f, int sync);
int sn_atomic_publish(struct sn_atomic_file *f, int sync);
void sn_atomic_abort(struct sn_atomic_file *f);

/* Replace the file at path with buf, atomically: written to a new file
 * with a unique name in the same directory (created with O_EXCL, so never
 * through a symlink or over another file), given mode (0644 if 0), synced
 * with sync, then renamed over path (a symlink at path is replaced, not
 * followed).  On failure the temporary file is removed and path left as
 * it was. */
int sn_write_file_atomic(const char *path, const void *buf, size_t len,
                         unsigned mode, int sync);

/* Read the whole file at path, at most max bytes, into *buf (malloc'd,
 * owned by the caller, with a NUL after the *len bytes, not counted).
 * regular_only refuses anything but a regular file (a FIFO or device in
 * a directory we were given could block or never end); otherwise pipes
 * and /dev/stdin are read to their end. */
int sn_read_file(const char *path, size_t max, bool regular_only,
                 uint8_t **buf, size_t *len);

/* mkdir -p with mode (for each directory made); existing ones are fine. */
int sn_mkdir_p(const char *path, unsigned mode);

#endif
