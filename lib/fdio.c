/* soci-nbd: whole writes on file descriptors (see fdio.h). */
#include <config.h>

#include <errno.h>
#include <unistd.h>

#include "fdio.h"

int
sn_write_all(int fd, const void *buf, size_t len)
{
  const char *p = buf;

  while (len > 0) {
    ssize_t n = write(fd, p, len);

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1)
      return -1;
    p += n;
    len -= (size_t) n;
  }
  return 0;
}
