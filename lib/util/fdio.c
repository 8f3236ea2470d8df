/* soci-nbd: whole writes on file descriptors and atomic file
 * replacement (see fdio.h). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fdio.h"

/* Loop over short writes and EINTR; -1 with errno from write(2). */
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

/* path + ".XXXXXX" is the temporary; errno survives the cleanup. */
int
sn_write_file_atomic(const char *path, const void *buf, size_t len,
                     unsigned mode, int sync)
{
  size_t n = strlen(path);
  char *tmp = malloc(n + sizeof ".XXXXXX");
  int fd, e;

  if (tmp == NULL)
    return -1;
  memcpy(tmp, path, n);
  memcpy(tmp + n, ".XXXXXX", sizeof ".XXXXXX");
  /* mkostemp opens with O_CREAT|O_EXCL: a name that exists, symlink or
   * not, is never opened. */
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd == -1) {
    e = errno;
    free(tmp);
    errno = e;
    return -1;
  }
  if (fchmod(fd, mode ? (mode_t) mode : 0644) == -1 ||
      sn_write_all(fd, buf, len) == -1 || (sync && fsync(fd) == -1)) {
    e = errno;
    close(fd);
    goto fail;
  }
  if (close(fd) == -1 || rename(tmp, path) == -1) {
    e = errno;
    goto fail;
  }
  free(tmp);
  return 0;

fail:
  unlink(tmp);
  free(tmp);
  errno = e;
  return -1;
}
