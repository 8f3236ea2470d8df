/* soci-nbd: whole reads and writes of files, atomic replacement and
 * directory trees (see fdio.h). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
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

int
sn_atomic_open(struct sn_atomic_file *f, const char *path, const char *tmpl,
               unsigned mode)
{
  int e;

  f->fd = -1;
  f->path = strdup(path);
  if (tmpl)
    f->tmp = strdup(tmpl);
  else if (asprintf(&f->tmp, "%s.XXXXXX", path) == -1)
    f->tmp = NULL;
  if (f->path == NULL || f->tmp == NULL) {
    sn_atomic_abort(f);
    errno = ENOMEM;
    return -1;
  }
  /* mkostemp opens with O_CREAT|O_EXCL: a name that exists, symlink or
   * not, is never opened. */
  f->fd = mkostemp(f->tmp, O_CLOEXEC);
  if (f->fd == -1) {
    e = errno;
    free(f->tmp);             /* nothing was created: nothing to unlink */
    f->tmp = NULL;
    sn_atomic_abort(f);
    errno = e;
    return -1;
  }
  if (fchmod(f->fd, mode ? (mode_t) mode : 0644) == -1) {
    e = errno;
    sn_atomic_abort(f);
    errno = e;
    return -1;
  }
  return 0;
}

/* fsync (with sync), close unless keep, rename.  With keep, f->fd stays
 * open (the caller's from now on); on failure everything is undone. */
static int
finish(struct sn_atomic_file *f, int sync, bool keep)
{
  int e;

  if (sync && fsync(f->fd) == -1)
    goto fail;
  if (!keep) {
    int fd = f->fd;

    f->fd = -1;
    if (close(fd) == -1)
      goto fail;
  }
  if (rename(f->tmp, f->path) == -1)
    goto fail;
  free(f->tmp);
  free(f->path);
  f->tmp = f->path = NULL;
  return 0;

fail:
  e = errno;
  sn_atomic_abort(f);
  errno = e;
  return -1;
}

int
sn_atomic_commit(struct sn_atomic_file *f, int sync)
{
  return finish(f, sync, false);
}

int
sn_atomic_publish(struct sn_atomic_file *f, int sync)
{
  return finish(f, sync, true);
}

void
sn_atomic_abort(struct sn_atomic_file *f)
{
  int e = errno;

  if (f->fd >= 0)
    close(f->fd);
  if (f->tmp)
    unlink(f->tmp);
  free(f->tmp);
  free(f->path);
  f->fd = -1;
  f->tmp = f->path = NULL;
  errno = e;
}

/* One sn_atomic_file, written from memory. */
int
sn_write_file_atomic(const char *path, const void *buf, size_t len,
                     unsigned mode, int sync)
{
  struct sn_atomic_file f;
  int e;

  if (sn_atomic_open(&f, path, NULL, mode) == -1)
    return -1;
  if (sn_write_all(f.fd, buf, len) == -1) {
    e = errno;
    sn_atomic_abort(&f);
    errno = e;
    return -1;
  }
  return sn_atomic_commit(&f, sync);
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
