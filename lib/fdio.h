/* soci-nbd: whole reads and writes on file descriptors, retrying short
 * transfers and EINTR.  Both return 0, or -1 with errno set (no error
 * message: callers name the file). */
#ifndef SN_FDIO_H
#define SN_FDIO_H

#include <stddef.h>

int sn_write_all(int fd, const void *buf, size_t len);

#endif
