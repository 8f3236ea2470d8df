/* soci-nbd: whole writes on file descriptors, retrying short transfers
 * and EINTR, and files replaced atomically.  Both return 0, or -1 with
 * errno set (no error message: callers name the file). */
#ifndef SN_FDIO_H
#define SN_FDIO_H

#include <stddef.h>

int sn_write_all(int fd, const void *buf, size_t len);

/* Replace the file at path with buf, atomically: written to a new file
 * with a unique name in the same directory (created with O_EXCL, so never
 * through a symlink or over another file), given mode (0644 if 0), synced
 * with sync, then renamed over path (a symlink at path is replaced, not
 * followed).  On failure the temporary file is removed and path left as
 * it was. */
int sn_write_file_atomic(const char *path, const void *buf, size_t len,
                         unsigned mode, int sync);

#endif
