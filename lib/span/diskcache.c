/* soci-nbd: the cache directory's size bound (LRU by mtime) and the
 * removal of temporary files left by crashed processes (see diskcache.h). */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "span/diskcache.h"
#include "util/err.h"

#define STALE_UNKNOWN_SEC 3600

struct sn_diskcache {
  pthread_mutex_t lock;
  char *dir;
  uint64_t max_bytes, bytes;
  uint64_t evicted_files, evicted_bytes, stale_removed;
  char **pinned;
  size_t npinned;
  void (*log)(void *opaque, const char *msg);
  void *opaque;
};

struct entry {
  char *path;
  uint64_t size;
  struct timespec mtime;
};

static void
dc_log(struct sn_diskcache *dc, const char *fmt, ...) SN_PRINTF(2, 3);

/* Format one line (truncated to the buffer) for the log callback, if any. */
static void
dc_log(struct sn_diskcache *dc, const char *fmt, ...)
{
  char buf[4096 + 256];
  va_list ap;

  if (dc->log == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  dc->log(dc->opaque, buf);
}

/* Is s exactly 64 lowercase hex digits (a layer's span directory)? */
static bool
is_hex64(const char *s)
{
  size_t i;

  for (i = 0; i < 64; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  return s[64] == '\0';
}

/* Does process pid still run (EPERM: it exists, someone else's)?  This
 * process counts as alive; pid <= 0 (unknown) does not. */
static bool
pid_alive(long pid)
{
  if (pid <= 0)
    return false;
  if (pid == (long) getpid())
    return true;
  return kill((pid_t) pid, 0) == 0 || errno == EPERM;
}

/* A temporary name: 1 with *pid set (0 if the name carries none), or 0
 * for a finished file. */
static int
temp_name(const char *name, bool blob, long *pid)
{
  const char *p;
  char *end;

  *pid = 0;
  if (blob) {
    /* <hex>.tmp.<pid>.XXXXXX (util/fdio.h's temporaries), or the older
     * <hex>.tmp.<pid> */
    p = strstr(name, ".tmp.");
    if (p == NULL)
      return 0;
    *pid = strtol(p + 5, &end, 10);
    if (end == p + 5 || (*end != '\0' && *end != '.'))
      *pid = 0;
    return 1;
  }
  if (name[0] != '.')
    return 0;
  /* .<span>.<pid>.XXXXXX, or the older .<span>.XXXXXX */
  p = strchr(name + 1, '.');
  if (p) {
    long v = strtol(p + 1, &end, 10);
    if (end != p + 1 && *end == '.')
      *pid = v;
  }
  return 1;
}

/* Is path pinned (linear: only whole layers in use are pinned)? */
static bool
pinned(const struct sn_diskcache *dc, const char *path)
{
  size_t i;

  for (i = 0; i < dc->npinned; i++)
    if (strcmp(dc->pinned[i], path) == 0)
      return true;
  return false;
}

/* Open the directory rel (one or more components) under the directory
 * fd at, following no symlink on the way.  -1 with errno set. */
static int
open_sub(int at, const char *rel)
{
  char name[256];
  int fd = at;

  while (*rel) {
    size_t n = strcspn(rel, "/");
    int next;

    if (n == 0 || n >= sizeof name) {
      if (fd != at)
        close(fd);
      errno = ENOENT;
      return -1;
    }
    memcpy(name, rel, n);
    name[n] = '\0';
    next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd != at)
      close(fd);
    if (next == -1)
      return -1;
    fd = next;
    rel += n;
    if (*rel == '/')
      rel++;
  }
  return fd == at ? dup(at) : fd;
}

/* Scan the subdirectory rel of the cache directory (open as root; no
 * symlink followed: a symlinked rel is skipped, and so are entries that
 * are not regular files): remove stale temporaries (when clean), collect
 * the finished files into *ents. */
static int
scan_dir(struct sn_diskcache *dc, int root, const char *rel, bool blob,
         bool clean, struct entry **ents, size_t *n, size_t *cap)
{
  int fd = open_sub(root, rel);
  DIR *d;
  struct dirent *de;
  time_t now = time(NULL);

  if (fd == -1)
    return errno == ENOENT || errno == ELOOP || errno == ENOTDIR ? 0
      : sn_set_error("%s/%s: %s", dc->dir, rel, strerror(errno));
  d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return sn_set_error("%s/%s: %s", dc->dir, rel, strerror(errno));
  }
  while ((de = readdir(d)) != NULL) {
    char *path;
    struct stat st;
    long pid;
    int tmp;

    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
        !S_ISREG(st.st_mode))
      continue;
    if (asprintf(&path, "%s/%s/%s", dc->dir, rel, de->d_name) == -1) {
      closedir(d);
      return sn_oom();
    }
    tmp = temp_name(de->d_name, blob, &pid);
    if (tmp) {
      if (clean && (pid ? !pid_alive(pid)
                    : now - st.st_mtime > STALE_UNKNOWN_SEC) &&
          unlinkat(fd, de->d_name, 0) == 0) {
        dc->stale_removed++;
        dc_log(dc, "cache-dir: removed stale temporary file %s", path);
      }
      free(path);
      continue;
    }
    if (*n == *cap) {
      size_t c = *cap ? 2 * *cap : 256;
      struct entry *p = realloc(*ents, c * sizeof *p);

      if (p == NULL) {
        free(path);
        closedir(d);
        return sn_oom();
      }
      *ents = p;
      *cap = c;
    }
    (*ents)[*n].path = path;
    (*ents)[*n].size = (uint64_t) st.st_size;
    (*ents)[*n].mtime = st.st_mtim;
    (*n)++;
  }
  closedir(d);
  return 0;
}

/* Remove the cached file path (dc->dir/<rel>/<name>, as scan_dir made
 * it) relative to the cache directory's fd, following no symlink. */
static int
evict(struct sn_diskcache *dc, int root, const char *path)
{
  const char *rel = path + strlen(dc->dir) + 1;   /* "<sub>/<name>" */
  const char *name = strrchr(rel, '/');
  char *sub;
  int fd, r;

  if (name == NULL || (sub = strndup(rel, (size_t) (name - rel))) == NULL)
    return -1;
  fd = open_sub(root, sub);
  free(sub);
  if (fd == -1)
    return -1;
  r = unlinkat(fd, name + 1, 0);
  close(fd);
  return r;
}

/* The cache directory (open as fd) must be writable only by this user:
 * owned by the effective uid or root, and not writable by group or
 * others (anyone else who can write it could plant files or symlinks
 * that eviction would act on). */
static int
check_owner(int fd)
{
  struct stat st;

  if (fstat(fd, &st) == -1)
    return sn_set_error("%s", strerror(errno));
  if (st.st_uid != geteuid() && st.st_uid != 0)
    return sn_set_error("owned by uid %ld, not by this user (uid %ld) or "
                        "root: refused", (long) st.st_uid,
                        (long) geteuid());
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return sn_set_error("writable by %s (mode %04o): refused",
                        st.st_mode & S_IWOTH ? "others" : "its group",
                        (unsigned) (st.st_mode & 07777));
  return 0;
}

/* Oldest mtime first, paths breaking ties (a stable eviction order). */
static int
cmp_mtime(const void *a, const void *b)
{
  const struct entry *x = a, *y = b;

  if (x->mtime.tv_sec != y->mtime.tv_sec)
    return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
  if (x->mtime.tv_nsec != y->mtime.tv_nsec)
    return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
  return strcmp(x->path, y->path);
}

/* Recount the directory and, with a bound, evict down to target bytes.
 * Called with the lock held. */
static int
rescan(struct sn_diskcache *dc, bool clean, uint64_t target)
{
  struct entry *ents = NULL;
  size_t n = 0, cap = 0, i;
  uint64_t total = 0;
  DIR *d;
  struct dirent *de;
  int root, r = 0;

  root = open(dc->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root == -1)
    return errno == ENOENT ? 0 : sn_set_error("%s: %s", dc->dir,
                                              strerror(errno));
  if (check_owner(root) == -1) {
    close(root);
    return -1;
  }
  d = fdopendir(dup(root));
  if (d == NULL) {
    close(root);
    return sn_set_error("%s: %s", dc->dir, strerror(errno));
  }
  while ((de = readdir(d)) != NULL && r == 0) {
    if (!is_hex64(de->d_name))
      continue;
    r = scan_dir(dc, root, de->d_name, false, clean, &ents, &n, &cap);
  }
  closedir(d);
  if (r == 0)
    r = scan_dir(dc, root, "blobs/sha256", true, clean, &ents, &n, &cap);
  for (i = 0; i < n; i++)
    total += ents[i].size;
  if (r == 0 && dc->max_bytes && total > dc->max_bytes) {
    qsort(ents, n, sizeof *ents, cmp_mtime);
    for (i = 0; i < n && total > target; i++) {
      if (pinned(dc, ents[i].path) || evict(dc, root, ents[i].path) == -1)
        continue;
      total -= ents[i].size;
      dc->evicted_files++;
      dc->evicted_bytes += ents[i].size;
    }
  }
  for (i = 0; i < n; i++)
    free(ents[i].path);
  free(ents);
  close(root);
  dc->bytes = total;
  return r;
}

/* The first rescan cleans stale temporaries and evicts down to the bound
 * itself; its message is prefixed with the directory. */
struct sn_diskcache *
sn_diskcache_open(const char *dir, uint64_t max_bytes,
                  void (*log)(void *opaque, const char *msg), void *opaque)
{
  struct sn_diskcache *dc = calloc(1, sizeof *dc);
  uint64_t ev;

  if (dc == NULL || (dc->dir = strdup(dir)) == NULL) {
    free(dc);
    sn_oom();
    return NULL;
  }
  pthread_mutex_init(&dc->lock, NULL);
  dc->max_bytes = max_bytes;
  dc->log = log;
  dc->opaque = opaque;
  pthread_mutex_lock(&dc->lock);
  if (rescan(dc, true, max_bytes) == -1) {
    pthread_mutex_unlock(&dc->lock);
    sn_prefix_error("cache-dir %s: ", dir);
    sn_diskcache_free(dc);
    return NULL;
  }
  ev = dc->evicted_files;
  pthread_mutex_unlock(&dc->lock);
  if (ev)
    dc_log(dc, "cache-dir %s: evicted %llu files (%llu bytes) to stay "
           "under %llu bytes", dir, (unsigned long long) ev,
           (unsigned long long) dc->evicted_bytes,
           (unsigned long long) max_bytes);
  return dc;
}

void
sn_diskcache_free(struct sn_diskcache *dc)
{
  size_t i;

  if (dc == NULL)
    return;
  for (i = 0; i < dc->npinned; i++)
    free(dc->pinned[i]);
  free(dc->pinned);
  free(dc->dir);
  pthread_mutex_destroy(&dc->lock);
  free(dc);
}

int
sn_diskcache_pin(struct sn_diskcache *dc, const char *path)
{
  char **p;
  int r = 0;

  pthread_mutex_lock(&dc->lock);
  p = realloc(dc->pinned, (dc->npinned + 1) * sizeof *p);
  if (p == NULL || (p[dc->npinned] = strdup(path)) == NULL) {
    if (p)
      dc->pinned = p;
    r = sn_oom();
  }
  else {
    dc->pinned = p;
    dc->npinned++;
  }
  pthread_mutex_unlock(&dc->lock);
  return r;
}

/* Over the bound, evict to 90% of it so that rescans stay rare. */
void
sn_diskcache_add(struct sn_diskcache *dc, uint64_t bytes)
{
  if (dc == NULL)
    return;
  pthread_mutex_lock(&dc->lock);
  dc->bytes += bytes;
  if (dc->max_bytes && dc->bytes > dc->max_bytes)
    rescan(dc, false, dc->max_bytes / 10 * 9);
  pthread_mutex_unlock(&dc->lock);
}

void
sn_diskcache_get_stats(struct sn_diskcache *dc, struct sn_diskcache_stats *st)
{
  memset(st, 0, sizeof *st);
  if (dc == NULL)
    return;
  pthread_mutex_lock(&dc->lock);
  st->bytes = dc->bytes;
  st->max_bytes = dc->max_bytes;
  st->evicted_files = dc->evicted_files;
  st->evicted_bytes = dc->evicted_bytes;
  st->stale_removed = dc->stale_removed;
  pthread_mutex_unlock(&dc->lock);
}

void
sn_diskcache_touch(const char *path)
{
  utimensat(AT_FDCWD, path, NULL, 0);
}
