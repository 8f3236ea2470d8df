/* soci-nbd: whole reads and writes of files, atomic replacement and
 * directory trees (see fdio.h). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
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

/* Grow *buf to hold at least need bytes (doubling, capped at max + 1 so
 * that a file of exactly max bytes still sees its end). */
static int
grow(uint8_t **buf, size_t *cap, size_t need, size_t max)
{
  size_t n = *cap < 65536 ? 65536 : *cap;
  uint8_t *nb;

  while (n < need)
    n = n > max / 2 ? max + 1 : n * 2;
  if (n > max + 1)
    n = max + 1;
  nb = realloc(*buf, n);
  if (nb == NULL)
    return sn_oom();
  *buf = nb;
  *cap = n;
  return 0;
}

int
sn_read_file(const char *path, size_t max, bool regular_only,
             uint8_t **bufp, size_t *lenp)
{
  struct stat st;
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0;
  int fd;

  *bufp = NULL;
  *lenp = 0;
  if (max >= SIZE_MAX - 1)
    max = SIZE_MAX - 2;
  fd = open(path, O_RDONLY | O_CLOEXEC | (regular_only ? O_NONBLOCK : 0));
  if (fd == -1)
    return sn_set_error("%s: %s", path, strerror(errno));
  if (fstat(fd, &st) == -1) {
    sn_set_error("%s: %s", path, strerror(errno));
    goto fail;
  }
  if (regular_only && !S_ISREG(st.st_mode)) {
    sn_set_error("%s: not a regular file", path);
    goto fail;
  }
  /* A regular file is read in one buffer of its size (+1 to see EOF). */
  if (S_ISREG(st.st_mode) && st.st_size >= 0 && (uint64_t) st.st_size <= max
      && grow(&buf, &cap, (size_t) st.st_size + 1, max) == -1)
    goto fail;
  for (;;) {
    ssize_t r;

    if (len == cap && (len > max || grow(&buf, &cap, len + 1, max) == -1)) {
      if (len > max)
        sn_set_error("%s: larger than %zu bytes", path, max);
      goto fail;
    }
    r = read(fd, buf + len, cap - len);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1) {
      sn_set_error("%s: %s", path, strerror(errno));
      goto fail;
    }
    if (r == 0)
      break;
    len += (size_t) r;
  }
  if (len > max) {
    sn_set_error("%s: larger than %zu bytes", path, max);
    goto fail;
  }
  buf[len] = 0;             /* the loop reads only while len < cap */
  close(fd);
  *bufp = buf;
  *lenp = len;
  return 0;

fail:
  close(fd);
  free(buf);
  return -1;
}

int
sn_mkdir_p(const char *path, unsigned mode)
{
  char *p = strdup(path), *q;

  if (p == NULL)
    return sn_oom();
  for (q = p + 1; ; q++) {
    if (*q == '/' || *q == '\0') {
      char c = *q;

      *q = '\0';
      if (mkdir(p, (mode_t) mode) == -1 && errno != EEXIST) {
        sn_set_error("mkdir %s: %s", p, strerror(errno));
        free(p);
        return -1;
      }
      *q = c;
      if (c == '\0')
        break;
    }
  }
  free(p);
  return 0;
}
