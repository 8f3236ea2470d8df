/* soci-nbd: the state of `soci-nbd mount` under the run directory — its
 * file helpers, the run directory with its lock, and the mount journals;
 * see mount-state.h for the layout.  The servers are in mount-server.c,
 * the devices in mount-device.c. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/digest.h"
#include "util/err.h"
#include "util/fdio.h"
#include "mount/mount-int.h"
#include "mount/mount-state.h"

/* ---- small helpers ---------------------------------------------------- */

char *
ms_path(const struct ms *s, const char *fmt, ...)
{
  va_list ap;
  char *rel, *p;
  int r;

  va_start(ap, fmt);
  r = vasprintf(&rel, fmt, ap);
  va_end(ap);
  if (r == -1) {
    sn_oom();
    return NULL;
  }
  if (asprintf(&p, "%s/%s", s->run, rel) == -1) {
    free(rel);
    sn_oom();
    return NULL;
  }
  free(rel);
  return p;
}

/* fopen(path, "re") that never follows a symlink at path. */
FILE *
ms_fopen_nofollow(const char *path)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  FILE *f;

  if (fd == -1)
    return NULL;
  f = fdopen(fd, "re");
  if (f == NULL)
    close(fd);
  return f;
}

/* Errors are errno only (no message set): callers tell ENOENT, an absent
 * file, from the rest. */
char *
ms_read_file(const char *path)
{
  FILE *f = ms_fopen_nofollow(path);
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int c;

  if (f == NULL)
    return NULL;
  while ((c = getc(f)) != EOF) {
    if (len + 2 > cap) {
      char *nb = realloc(buf, cap = cap ? cap * 2 : 128);
      if (nb == NULL) {
        free(buf);
        fclose(f);
        errno = ENOMEM;
        return NULL;
      }
      buf = nb;
    }
    buf[len++] = (char) c;
  }
  fclose(f);
  if (buf == NULL && (buf = malloc(1)) == NULL)
    return NULL;
  while (len > 0 && buf[len - 1] == '\n')
    len--;
  buf[len] = '\0';
  return buf;
}

/* sn_write_file_atomic without sync (util/fdio.h); its errno becomes an
 * err.h message naming path. */
int
ms_write_file(const char *path, const char *text, mode_t mode)
{
  if (sn_write_file_atomic(path, text, strlen(text), mode, 0) == -1)
    return sn_set_error("%s: %s", path, strerror(errno));
  return 0;
}

/* Read a decimal number from a file; -1 if absent or not a number. */
long
ms_read_long(const char *path)
{
  char *t = ms_read_file(path), *end;
  long v;

  if (t == NULL)
    return -1;
  errno = 0;
  v = strtol(t, &end, 10);
  if (errno || end == t || *end != '\0' || v < 0)
    v = -1;
  free(t);
  return v;
}

/* statx's STATX_ATTR_MOUNT_ROOT when the kernel reports it, else whether
 * path's device differs from that of path/.. (older kernels). */
int
ms_is_mountpoint(const char *path)
{
  struct statx sx;

  if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &sx) == -1)
    return -1;
  if (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
    return (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  /* Older kernels: compare with the parent's device. */
  {
    char *parent;
    struct stat a, b;
    int r;

    if (asprintf(&parent, "%s/..", path) == -1) {
      errno = ENOMEM;
      return -1;
    }
    r = stat(path, &a) == 0 && stat(parent, &b) == 0 ? a.st_dev != b.st_dev
                                                     : -1;
    free(parent);
    return r;
  }
}

/* rm -r of a state directory (regular files and directories only; mount
 * points are never inside: callers unmount first). */
void
ms_remove_tree(const char *path)
{
  DIR *d = opendir(path);
  struct dirent *e;

  if (d != NULL) {
    while ((e = readdir(d)) != NULL) {
      char *p;

      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      if (asprintf(&p, "%s/%s", path, e->d_name) == -1)
        continue;
      if (e->d_type == DT_DIR)
        ms_remove_tree(p);
      else
        unlink(p);
      free(p);
    }
    closedir(d);
  }
  rmdir(path);
}

/* Entries of a directory (not . and ..), NULL-terminated; NULL on error
 * (an absent directory is an empty list). */
char **
ms_list_dir(const char *path)
{
  DIR *d = opendir(path);
  struct dirent *e;
  char **v = calloc(1, sizeof *v);
  size_t n = 0;

  if (v == NULL) {
    if (d)
      closedir(d);
    sn_oom();
    return NULL;
  }
  if (d == NULL) {
    if (errno == ENOENT)
      return v;
    sn_set_error("%s: %s", path, strerror(errno));
    free(v);
    return NULL;
  }
  while ((e = readdir(d)) != NULL) {
    char **nv;

    if (e->d_name[0] == '.')
      continue;
    nv = realloc(v, (n + 2) * sizeof *v);
    if (nv == NULL || (nv[n] = strdup(e->d_name)) == NULL) {
      v = nv ? nv : v;
      v[n] = NULL;
      ms_free_list(v);
      closedir(d);
      sn_oom();
      return NULL;
    }
    v = nv;
    v[++n] = NULL;
  }
  closedir(d);
  return v;
}

void
ms_free_list(char **list)
{
  if (list == NULL)
    return;
  for (char **p = list; *p; p++)
    free(*p);
  free(list);
}


/* ---- run directory and lock -------------------------------------------- */

/* The state directory p (just made, or found) must be a real directory,
 * not a symlink, owned by us and writable by nobody else: everything under
 * it is trusted (pids to signal, devices to detach, directories to
 * unmount).  0, or -1 with an error naming p. */
static int
check_state_dir(const char *p)
{
  struct stat st;

  if (lstat(p, &st) == -1)
    return sn_set_error("%s: %s", p, strerror(errno));
  if (S_ISLNK(st.st_mode))
    return sn_set_error("%s: is a symlink: refusing to keep mount state "
                        "there", p);
  if (!S_ISDIR(st.st_mode))
    return sn_set_error("%s: not a directory", p);
  if (st.st_uid != geteuid())
    return sn_set_error("%s: owned by uid %u, not %u: refusing to keep "
                        "mount state there", p, (unsigned) st.st_uid,
                        (unsigned) geteuid());
  if ((st.st_mode & 022) != 0)
    return sn_set_error("%s: writable by group or others (mode %04o): "
                        "refusing to keep mount state there", p,
                        (unsigned) (st.st_mode & 07777));
  return 0;
}

/* Makes RUN and its mounts/, servers/ and devices/ (0700, each checked by
 * check_state_dir), then takes an exclusive flock of RUN/lock. */
int
ms_open(struct ms *s)
{
  const char *run = getenv("SOCI_NBD_RUN_DIR");
  static const char *const subdirs[] = { "mounts", "servers", "devices" };
  char *p;

  s->lockfd = -1;
  s->run = strdup(run && *run ? run : "/run/soci-nbd");
  if (s->run == NULL)
    return sn_oom();
  if (mkdir(s->run, 0700) == -1 && errno != EEXIST)
    return sn_set_error("%s: %s", s->run, strerror(errno));
  if (check_state_dir(s->run) == -1)
    return -1;
  for (size_t i = 0; i < sizeof subdirs / sizeof *subdirs; i++) {
    if ((p = ms_path(s, "%s", subdirs[i])) == NULL)
      return -1;
    if (mkdir(p, 0700) == -1 && errno != EEXIST) {
      sn_set_error("%s: %s", p, strerror(errno));
      free(p);
      return -1;
    }
    if (check_state_dir(p) == -1) {
      free(p);
      return -1;
    }
    free(p);
  }
  if (s->no_lock)
    return 0;
  if ((p = ms_path(s, "lock")) == NULL)
    return -1;
  s->lockfd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (s->lockfd == -1 || flock(s->lockfd, LOCK_EX) == -1) {
    sn_set_error("%s: %s", p, strerror(errno));
    free(p);
    return -1;
  }
  free(p);
  return 0;
}

void
ms_close(struct ms *s)
{
  if (s->lockfd != -1)
    close(s->lockfd);
  s->lockfd = -1;
  free(s->run);
  s->run = NULL;
}

void
ms_mount_id(const char *dir, char id[17])
{
  uint8_t d[SN_SHA256_LEN];

  sn_sha256(dir, strlen(dir), d);
  for (int i = 0; i < 8; i++)
    snprintf(id + 2 * i, 3, "%02x", d[i]);
}

/* ---- journals ------------------------------------------------------------ */

int
ms_journal_add(struct ms *s, const char *id, const char *key, const char *val)
{
  char *dir = ms_path(s, "mounts/%s", id), *path = NULL, *line = NULL;
  int fd = -1, r = -1;

  if (dir == NULL)
    return -1;
  if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
    sn_set_error("%s: %s", dir, strerror(errno));
    goto out;
  }
  if (asprintf(&path, "%s/journal", dir) == -1 ||
      asprintf(&line, "%s %s\n", key, val) == -1) {
    sn_oom();
    goto out;
  }
  fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd == -1 || sn_write_all(fd, line, strlen(line)) == -1 ||
      fdatasync(fd) == -1) {
    sn_set_error("%s: %s", path, strerror(errno));
    goto out;
  }
  r = 0;
out:
  if (fd != -1)
    close(fd);
  free(dir);
  free(path);
  free(line);
  return r;
}

/* A line without a space (a torn last write) is skipped; j is left empty on
 * error. */
int
ms_journal_read(struct ms *s, const char *id, struct ms_journal *j)
{
  char *path = ms_path(s, "mounts/%s/journal", id), *text, *line, *save;

  memset(j, 0, sizeof *j);
  if (path == NULL)
    return -1;
  text = ms_read_file(path);
  if (text == NULL) {
    int e = errno;

    if (e == ENOENT) {
      free(path);
      return 1;
    }
    sn_set_error("%s: %s", path, strerror(e));
    free(path);
    return -1;
  }
  free(path);
  for (line = strtok_r(text, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    char *sp = strchr(line, ' ');
    char **nk, **nv;

    if (sp == NULL)
      continue;                 /* a torn last line */
    *sp = '\0';
    nk = realloc(j->key, (j->n + 1) * sizeof *nk);
    if (nk)
      j->key = nk;
    nv = realloc(j->val, (j->n + 1) * sizeof *nv);
    if (nv)
      j->val = nv;
    if (nk == NULL || nv == NULL) {
      free(text);
      ms_journal_free(j);
      return sn_oom();
    }
    j->key[j->n] = strdup(line);
    j->val[j->n] = strdup(sp + 1);
    j->n++;
    if (j->key[j->n - 1] == NULL || j->val[j->n - 1] == NULL) {
      free(text);
      ms_journal_free(j);
      return sn_oom();
    }
  }
  free(text);
  return 0;
}

const char *
ms_journal_get(const struct ms_journal *j, const char *key)
{
  for (size_t i = 0; i < j->n; i++)
    if (strcmp(j->key[i], key) == 0)
      return j->val[i];
  return NULL;
}

void
ms_journal_free(struct ms_journal *j)
{
  for (size_t i = 0; i < j->n; i++) {
    free(j->key[i]);
    free(j->val[i]);
  }
  free(j->key);
  free(j->val);
  memset(j, 0, sizeof *j);
}

char **
ms_mount_ids(struct ms *s)
{
  char *p = ms_path(s, "mounts"), **v;

  if (p == NULL)
    return NULL;
  v = ms_list_dir(p);
  free(p);
  return v;
}
