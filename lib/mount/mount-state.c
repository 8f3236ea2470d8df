/* soci-nbd command line: the state of `soci-nbd mount` (journals, nbdkit
 * servers and their supervisors, shared NBD devices); see mount-state.h
 * for the layout. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "util/digest.h"
#include "util/err.h"
#include "util/fdio.h"
#include "mount/mount-state.h"
#include "nbd/nbddev.h"

#define SUPERVISOR_NAME "soci-nbd-sup"
#define IO_TIMEOUT 30           /* seconds: requests of a dead link requeue */
#define RETRY_MS 500

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
static FILE *
fopen_nofollow(const char *path)
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

char *
ms_read_file(const char *path)
{
  FILE *f = fopen_nofollow(path);
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

int
ms_write_file(const char *path, const char *text, mode_t mode)
{
  if (sn_write_file_atomic(path, text, strlen(text), mode, 0) == -1)
    return sn_set_error("%s: %s", path, strerror(errno));
  return 0;
}

/* Read a decimal number from a file; -1 if absent or not a number. */
static long
read_long(const char *path)
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
static void
remove_tree(const char *path)
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
        remove_tree(p);
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
static char **
list_dir(const char *path)
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

/* A process that runs (not a zombie) with this command name. */
static bool
proc_is(pid_t pid, const char *comm)
{
  char path[64], *c, *st;
  bool ok;

  if (pid <= 0)
    return false;
  snprintf(path, sizeof path, "/proc/%ld/comm", (long) pid);
  c = ms_read_file(path);
  if (c == NULL)
    return false;
  ok = strcmp(c, comm) == 0;
  free(c);
  snprintf(path, sizeof path, "/proc/%ld/stat", (long) pid);
  st = ms_read_file(path);
  if (st) {
    char *rp = strrchr(st, ')');
    if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'))
      ok = false;
    free(st);
  }
  return ok;
}

/* Signal a process known by name, and wait up to ms for it to end. */
static bool
stop_process(pid_t pid, const char *comm, int sig, int ms)
{
  if (!proc_is(pid, comm))
    return true;
  kill(pid, sig);
  for (int t = 0; t < ms; t += 50) {
    struct timespec ts = { 0, 50 * 1000000 };

    /* Our own child (a supervisor or nbdkit just started): reap it. */
    waitpid(pid, NULL, WNOHANG);
    if (!proc_is(pid, comm))
      return true;
    nanosleep(&ts, NULL);
  }
  return !proc_is(pid, comm);
}

static void
msleep(int ms)
{
  struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000 };
  nanosleep(&ts, NULL);
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
  v = list_dir(p);
  free(p);
  return v;
}

/* ---- servers ------------------------------------------------------------- */

/* Read servers/SID/argv into a NULL-terminated vector. */
static char **
server_argv(struct ms *s, const char *sid)
{
  char *path = ms_path(s, "servers/%s/argv", sid), *buf = NULL;
  char **v = NULL;
  size_t len = 0, n = 0;
  FILE *f;

  if (path == NULL)
    return NULL;
  f = fopen_nofollow(path);
  if (f == NULL) {
    sn_set_error("%s: %s", path, strerror(errno));
    free(path);
    return NULL;
  }
  {
    char tmp[4096];
    size_t r;

    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) {
      char *nb = realloc(buf, len + r + 1);
      if (nb == NULL)
        goto oom;
      buf = nb;
      memcpy(buf + len, tmp, r);
      len += r;
    }
  }
  fclose(f);
  f = NULL;
  if (buf == NULL || len == 0 || buf[len - 1] != '\0') {
    sn_set_error("%s: not a NUL-separated argument vector", path);
    free(buf);
    free(path);
    return NULL;
  }
  for (size_t i = 0; i < len; i++)
    n += buf[i] == '\0';
  v = calloc(n + 1, sizeof *v);
  if (v == NULL)
    goto oom;
  for (size_t i = 0, k = 0; i < len; i += strlen(buf + i) + 1)
    if ((v[k++] = strdup(buf + i)) == NULL)
      goto oom;
  free(buf);
  free(path);
  return v;
oom:
  if (f)
    fclose(f);
  ms_free_list(v);
  free(buf);
  free(path);
  sn_oom();
  return NULL;
}

/* Append one string to a growing NULL-terminated vector. */
static int
vec_add(char ***v, size_t *n, const char *fmt, ...)
{
  va_list ap;
  char **nv, *str;
  int r;

  va_start(ap, fmt);
  r = vasprintf(&str, fmt, ap);
  va_end(ap);
  if (r == -1)
    return sn_oom();
  nv = realloc(*v, (*n + 2) * sizeof *nv);
  if (nv == NULL) {
    free(str);
    return sn_oom();
  }
  *v = nv;
  nv[(*n)++] = str;
  nv[*n] = NULL;
  return 0;
}

/* Shell-quote an argument for the readable cmdline file. */
static int
append_quoted(char **out, size_t *len, const char *arg)
{
  size_t need = strlen(arg) * 4 + 4;
  char *nb = realloc(*out, *len + need);
  char *p;

  if (nb == NULL)
    return sn_oom();
  *out = nb;
  p = nb + *len;
  if (*len)
    *p++ = ' ';
  *p++ = '\'';
  for (const char *a = arg; *a; a++) {
    if (*a == '\'') {
      memcpy(p, "'\\''", 4);
      p += 4;
    }
    else
      *p++ = *a;
  }
  *p++ = '\'';
  *p = '\0';
  *len = (size_t) (p - nb);
  return 0;
}

int
ms_server_create(struct ms *s, const char *nbdkit, bool verbose,
                 const char *plugin, char *const *args, const char *password,
                 char **sid)
{
  char *tmpl = ms_path(s, "servers/XXXXXX"), *dir, *path = NULL;
  char **v = NULL, *cmdline = NULL;
  size_t n = 0, clen = 0;
  int fd = -1, r = -1;

  *sid = NULL;
  if (tmpl == NULL)
    return -1;
  dir = mkdtemp(tmpl);
  if (dir == NULL) {
    sn_set_error("%s: %s", tmpl, strerror(errno));
    free(tmpl);
    return -1;
  }
  if ((*sid = strdup(strrchr(dir, '/') + 1)) == NULL) {
    sn_oom();
    goto out;
  }
  if (vec_add(&v, &n, "%s", nbdkit) == -1 || vec_add(&v, &n, "-r") == -1 ||
      vec_add(&v, &n, "--log=stderr") == -1 || vec_add(&v, &n, "-U") == -1 ||
      vec_add(&v, &n, "%s/sock", dir) == -1 || vec_add(&v, &n, "-P") == -1 ||
      vec_add(&v, &n, "%s/pid", dir) == -1)
    goto out;
  if (verbose && (vec_add(&v, &n, "-v") == -1 ||
                  vec_add(&v, &n, "-D") == -1 ||
                  vec_add(&v, &n, "soci.verbose=1") == -1))
    goto out;
  if (vec_add(&v, &n, "%s", plugin) == -1)
    goto out;
  for (size_t i = 0; args[i]; i++)
    if (vec_add(&v, &n, "%s", args[i]) == -1)
      goto out;
  if (password) {
    if (asprintf(&path, "%s/password", dir) == -1) {
      sn_oom();
      goto out;
    }
    /* Written by us alone, 0600, under a 0700 directory. */
    if (ms_write_file(path, password, 0600) == -1 ||
        vec_add(&v, &n, "password=+%s", path) == -1)
      goto out;
    free(path);
    path = NULL;
  }
  if (vec_add(&v, &n, "stats-file=%s/stats.json", dir) == -1)
    goto out;

  if (asprintf(&path, "%s/argv", dir) == -1) {
    sn_oom();
    goto out;
  }
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd == -1) {
    sn_set_error("%s: %s", path, strerror(errno));
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (sn_write_all(fd, v[i], strlen(v[i]) + 1) == -1) {
      sn_set_error("%s: %s", path, strerror(errno));
      goto out;
    }
    if (append_quoted(&cmdline, &clen, v[i]) == -1)
      goto out;
  }
  free(path);
  if (asprintf(&path, "%s/cmdline", dir) == -1) {
    path = NULL;
    sn_oom();
    goto out;
  }
  if (ms_write_file(path, cmdline, 0600) == -1)
    goto out;
  r = 0;
out:
  if (fd != -1)
    close(fd);
  if (r == -1 && *sid) {
    remove_tree(dir);
    free(*sid);
    *sid = NULL;
  }
  ms_free_list(v);
  free(cmdline);
  free(path);
  free(tmpl);
  return r;
}

/* The last error that nbdkit wrote to its log (after "error: "), as a
 * malloc'd string, or NULL. */
static char *
log_error(const char *log)
{
  char *text = ms_read_file(log), *best = NULL, *line, *save;

  if (text == NULL)
    return NULL;
  for (line = strtok_r(text, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    char *e = strstr(line, "error: ");

    if (e)
      best = e + 7;
    else if (best == NULL && strncmp(line, "nbdkit: ", 8) == 0)
      best = line + 8;
  }
  best = best ? strdup(best) : NULL;
  free(text);
  return best;
}

/* Start argv (an nbdkit that forks into the background once it serves),
 * output to log; wait for it to serve (its pidfile and socket), or for its
 * failure (the error it logged).  nbdkit is not kept in the foreground
 * (-f) under a forked child of ours: in the QEMU test guest a foreground
 * nbdkit whose parent exits shuts down. */
static int
start_argv(char **argv, const char *log, const char *pidfile,
           const char *sock, volatile int *interrupted)
{
  pid_t pid;
  int lfd, st;

  unlink(pidfile);
  unlink(sock);
  lfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lfd == -1)
    return sn_set_error("%s: %s", log, strerror(errno));
  pid = fork();
  if (pid == -1) {
    close(lfd);
    return sn_set_error("fork: %s", strerror(errno));
  }
  if (pid == 0) {
    int nul = open("/dev/null", O_RDWR);

    setsid();
    if (nul == -1 || dup2(nul, 0) == -1 || dup2(lfd, 1) == -1 ||
        dup2(lfd, 2) == -1)
      _exit(126);
    close_range(3, ~0U, 0);
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], argv);
    dprintf(2, "nbdkit: error: cannot run %s: %s\n", argv[0],
            strerror(errno));
    _exit(127);
  }
  close(lfd);
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);

    if (w == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
      /* Forked into the background: its pidfile comes next. */
      for (int t = 0; t < 600; t++) {
        long p = read_long(pidfile);

        if (p > 0 && proc_is((pid_t) p, "nbdkit") && access(sock, F_OK) == 0)
          return 0;
        msleep(50);
      }
      return sn_set_error("nbdkit started but wrote no pidfile (log: %s)",
                          log);
    }
    if (w == pid) {
      char *e = log_error(log);

      if (e) {
        sn_set_error("%s", e);
        free(e);
      }
      else if (WIFEXITED(st))
        sn_set_error("nbdkit exited with status %d (log: %s)",
                     WEXITSTATUS(st), log);
      else
        sn_set_error("nbdkit was killed by signal %d (log: %s)",
                     WTERMSIG(st), log);
      return -1;
    }
    if (interrupted && *interrupted) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      return sn_set_error("interrupted while nbdkit was starting");
    }
    msleep(50);
  }
}

int
ms_server_start(struct ms *s, const char *sid, volatile int *interrupted)
{
  char **argv = server_argv(s, sid);
  char *log = ms_path(s, "servers/%s/log", sid);
  char *pidf = ms_path(s, "servers/%s/pid", sid);
  char *sock = ms_path(s, "servers/%s/sock", sid);
  int r = -1;

  if (argv && log && pidf && sock)
    r = start_argv(argv, log, pidf, sock, interrupted);
  ms_free_list(argv);
  free(log);
  free(pidf);
  free(sock);
  return r;
}

pid_t
ms_server_pid(struct ms *s, const char *sid)
{
  char *p = ms_path(s, "servers/%s/pid", sid);
  long pid = p ? read_long(p) : -1;

  free(p);
  return pid > 0 && proc_is((pid_t) pid, "nbdkit") ? (pid_t) pid : 0;
}

pid_t
ms_supervisor_pid(struct ms *s, const char *sid)
{
  char *p = ms_path(s, "servers/%s/supervisor.pid", sid);
  long pid = p ? read_long(p) : -1;

  free(p);
  return pid > 0 && proc_is((pid_t) pid, SUPERVISOR_NAME) ? (pid_t) pid : 0;
}

int
ms_server_restart(struct ms *s, const char *sid)
{
  pid_t old = ms_server_pid(s, sid);
  int r;

  /* The new server listens on a fresh socket at the same path while the
   * old one (if it still runs) keeps its connections until it is killed:
   * a reconnecting device finds a server at once. */
  r = ms_server_start(s, sid, NULL);
  if (r == -1)
    return -1;
  if (old)
    stop_process(old, "nbdkit", SIGKILL, 5000);
  if (ms_supervisor_pid(s, sid) == 0) {
    char *p = ms_path(s, "servers/%s/supervised", sid);

    if (p)
      unlink(p);                /* force a new supervisor */
    free(p);
    return ms_supervisor_update(s, sid);
  }
  return 0;
}

int
ms_server_layers(struct ms *s, const char *sid, char ***digests,
                 char ***ztocs, bool **exported, size_t *n)
{
  char *path = ms_path(s, "servers/%s/stats.json", sid);
  json_t *root = NULL, *layers, *exports;
  json_error_t je;
  int r = -1;

  *digests = NULL;
  *ztocs = NULL;
  *exported = NULL;
  *n = 0;
  if (path == NULL)
    return -1;
  root = json_load_file(path, 0, &je);
  if (root == NULL) {
    sn_set_error("%s: %s", path, je.text);
    goto out;
  }
  layers = json_object_get(root, "layers");
  exports = json_object_get(root, "exports");
  if (!json_is_array(layers) || !json_is_object(exports)) {
    sn_set_error("%s: no layers or exports", path);
    goto out;
  }
  *n = json_array_size(layers);
  *digests = calloc(*n + 1, sizeof **digests);
  *ztocs = calloc(*n + 1, sizeof **ztocs);
  *exported = calloc(*n + 1, sizeof **exported);
  if (*digests == NULL || *ztocs == NULL || *exported == NULL) {
    sn_oom();
    goto out;
  }
  for (size_t i = 0; i < *n; i++) {
    json_t *l = json_array_get(layers, i);
    const char *d = json_string_value(json_object_get(l, "digest"));
    const char *z = json_string_value(json_object_get(l, "ztoc"));

    if (d == NULL) {
      sn_set_error("%s: layer %zu has no digest", path, i);
      goto out;
    }
    if (((*digests)[i] = strdup(d)) == NULL ||
        ((*ztocs)[i] = strdup(z ? z : "whole")) == NULL) {
      sn_oom();
      goto out;
    }
    (*exported)[i] = json_object_get(exports, d) != NULL;
  }
  r = 0;
out:
  if (r == -1) {
    ms_free_list(*digests);
    ms_free_list(*ztocs);
    free(*exported);
    *digests = NULL;
    *ztocs = NULL;
    *exported = NULL;
    *n = 0;
  }
  json_decref(root);
  free(path);
  return r;
}

/* The devices server SID serves now: indexes and exports, and the set as
 * text ("N EXPORT\n"...). */
static int
served_devices(struct ms *s, const char *sid, int **idx, char ***exps,
               size_t *n, char **set)
{
  char *dir = ms_path(s, "devices"), **keys;

  *idx = NULL;
  *exps = NULL;
  *n = 0;
  *set = NULL;
  if (dir == NULL)
    return -1;
  keys = list_dir(dir);
  free(dir);
  if (keys == NULL)
    return -1;
  if ((*set = strdup("")) == NULL)
    goto oom;
  for (char **k = keys; *k; k++) {
    char *srv = ms_device_server(s, *k), *ep, *exp, *ns, **ne;
    int dev = ms_device_index(s, *k), *ni;

    if (srv == NULL || strcmp(srv, sid) != 0 || dev < 0) {
      free(srv);
      continue;
    }
    free(srv);
    ep = ms_path(s, "devices/%s/export", *k);
    exp = ep ? ms_read_file(ep) : NULL;
    free(ep);
    if (exp == NULL)
      continue;
    ni = realloc(*idx, (*n + 1) * sizeof *ni);
    if (ni)
      *idx = ni;
    ne = realloc(*exps, (*n + 2) * sizeof *ne);
    if (ne)
      *exps = ne;
    if (ni == NULL || ne == NULL ||
        asprintf(&ns, "%s%d %s\n", *set, dev, exp) == -1) {
      free(exp);
      goto oom;
    }
    free(*set);
    *set = ns;
    (*idx)[*n] = dev;
    (*exps)[(*n)++] = exp;
    (*exps)[*n] = NULL;
  }
  ms_free_list(keys);
  return 0;
oom:
  ms_free_list(keys);
  free(*idx);
  ms_free_list(*exps);
  free(*set);
  *idx = NULL;
  *exps = NULL;
  *set = NULL;
  *n = 0;
  return sn_oom();
}

static volatile bool supervisor_stop;

static void
supervisor_signal(int sig)
{
  (void) sig;
  supervisor_stop = true;
}

/* The supervisor process: never returns. */
static void __attribute__((noreturn))
supervisor_main(int lfd, const int *idx, char **exps, size_t n,
                const char *sock)
{
  struct sn_nbd_server *srvs = calloc(n ? n : 1, sizeof *srvs);
  struct sigaction sa = { .sa_handler = supervisor_signal };
  int nul = open("/dev/null", O_RDWR), r;

  setsid();
  prctl(PR_SET_NAME, SUPERVISOR_NAME, 0, 0, 0);
  if (srvs == NULL || nul == -1 || dup2(nul, 0) == -1 ||
      dup2(nul, 1) == -1 || dup2(lfd, 2) == -1)
    _exit(1);
  /* Nothing of the parent's: above all not the state lock. */
  close_range(3, ~0U, 0);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  for (size_t i = 0; i < n; i++) {
    srvs[i].unix_path = sock;
    srvs[i].export_name = exps[i];
  }
  fprintf(stderr, "soci-nbd supervisor (pid %ld): keeping %zu device(s) "
          "attached\n", (long) getpid(), n);
  r = sn_nbd_supervise(idx, srvs, n, RETRY_MS, &supervisor_stop);
  if (r == -1)
    fprintf(stderr, "soci-nbd supervisor: %s\n", sn_error());
  else
    fprintf(stderr, "soci-nbd supervisor (pid %ld): done\n",
            (long) getpid());
  _exit(r == -1 ? 1 : 0);
}

int
ms_supervisor_update(struct ms *s, const char *sid)
{
  char *setp = ms_path(s, "servers/%s/supervised", sid);
  char *pidp = ms_path(s, "servers/%s/supervisor.pid", sid);
  char *log = ms_path(s, "servers/%s/log", sid);
  char *sock = ms_path(s, "servers/%s/sock", sid);
  char *set = NULL, *old = NULL, buf[32], **exps = NULL;
  int *idx = NULL, lfd = -1, r = -1;
  size_t n = 0;
  pid_t running, pid;

  if (!setp || !pidp || !log || !sock)
    goto out;
  if (served_devices(s, sid, &idx, &exps, &n, &set) == -1)
    goto out;
  running = ms_supervisor_pid(s, sid);
  old = ms_read_file(setp);
  if (running && old && strcmp(old, set) == 0) {
    r = 0;                      /* already supervising exactly these */
    goto out;
  }
  if (running && !stop_process(running, SUPERVISOR_NAME, SIGTERM, 3000))
    stop_process(running, SUPERVISOR_NAME, SIGKILL, 2000);
  unlink(pidp);
  unlink(setp);
  if (n == 0) {
    r = 0;
    goto out;
  }
  lfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lfd == -1) {
    sn_set_error("%s: %s", log, strerror(errno));
    goto out;
  }
  fflush(NULL);
  pid = fork();
  if (pid == -1) {
    sn_set_error("fork: %s", strerror(errno));
    goto out;
  }
  if (pid == 0)
    supervisor_main(lfd, idx, exps, n, sock);
  snprintf(buf, sizeof buf, "%ld", (long) pid);
  if (ms_write_file(pidp, buf, 0600) == -1 ||
      ms_write_file(setp, set, 0600) == -1)
    goto out;
  r = 0;
out:
  if (lfd != -1)
    close(lfd);
  free(setp);
  free(pidp);
  free(log);
  free(sock);
  free(set);
  free(old);
  free(idx);
  ms_free_list(exps);
  return r;
}

int
ms_server_release(struct ms *s, const char *sid)
{
  char *dir = ms_path(s, "servers/%s", sid), *set = NULL, **exps = NULL;
  int *idx = NULL, r = -1;
  size_t n = 0;
  pid_t pid;
  struct stat st;

  if (dir == NULL)
    return -1;
  if (stat(dir, &st) == -1) {
    free(dir);
    return 0;                   /* already gone */
  }
  if (served_devices(s, sid, &idx, &exps, &n, &set) == -1)
    goto out;
  if (n > 0) {
    r = ms_supervisor_update(s, sid);
    goto out;
  }
  if ((pid = ms_supervisor_pid(s, sid)) != 0 &&
      !stop_process(pid, SUPERVISOR_NAME, SIGTERM, 3000))
    stop_process(pid, SUPERVISOR_NAME, SIGKILL, 2000);
  if ((pid = ms_server_pid(s, sid)) != 0 &&
      !stop_process(pid, "nbdkit", SIGTERM, 5000) &&
      !stop_process(pid, "nbdkit", SIGKILL, 2000)) {
    sn_set_error("nbdkit (pid %ld) does not stop", (long) pid);
    goto out;
  }
  remove_tree(dir);
  r = 0;
out:
  free(dir);
  free(set);
  free(idx);
  ms_free_list(exps);
  return r;
}

/* ---- devices ------------------------------------------------------------- */

int
ms_device_index(struct ms *s, const char *key)
{
  char *p = ms_path(s, "devices/%s/dev", key);
  long v = p ? read_long(p) : -1;

  free(p);
  return v > 0x7fffffff ? -1 : (int) v;
}

char *
ms_device_server(struct ms *s, const char *key)
{
  char *p = ms_path(s, "devices/%s/server", key), *v;

  if (p == NULL)
    return NULL;
  v = ms_read_file(p);
  free(p);
  return v;
}

/* Number of users of devices/KEY (-1 on error). */
static int
device_users(struct ms *s, const char *key)
{
  char *p = ms_path(s, "devices/%s/users", key), **v;
  int n = 0;

  if (p == NULL)
    return -1;
  v = list_dir(p);
  free(p);
  if (v == NULL)
    return -1;
  while (v[n])
    n++;
  ms_free_list(v);
  return n;
}

/* Unmount, detach and remove devices/KEY (no users left).  *sid = its
 * server.  An unmount that fails (busy) keeps the state. */
static int
device_teardown(struct ms *s, const char *key, char **sid)
{
  char *dir = ms_path(s, "devices/%s", key), *mnt = NULL, *marker = NULL;
  int dev, r = -1;

  if (sid)
    *sid = ms_device_server(s, key);
  if (dir == NULL || asprintf(&mnt, "%s/mnt", dir) == -1 ||
      asprintf(&marker, "%s/mounted", dir) == -1) {
    sn_oom();
    goto out;
  }
  if (access(marker, F_OK) == 0 && umount2(mnt, 0) == -1 &&
      errno != EINVAL && errno != ENOENT) {
    sn_set_error("umount %s: %s", mnt, strerror(errno));
    goto out;
  }
  unlink(marker);
  dev = ms_device_index(s, key);
  if (dev >= 0 && sn_nbd_detach(dev) == -1) {
    sn_prefix_error("/dev/nbd%d: ", dev);
    goto out;
  }
  remove_tree(dir);
  r = 0;
out:
  free(dir);
  free(mnt);
  free(marker);
  return r;
}

int
ms_device_check(struct ms *s, const char *key, const char *export_name)
{
  char *dir = ms_path(s, "devices/%s", key), *ep = NULL, *exp = NULL;
  char *mnt = NULL, *sid = NULL;
  struct stat st;
  int dev, users, r = -1;
  bool healthy;

  if (dir == NULL)
    return -1;
  if (stat(dir, &st) == -1) {
    free(dir);
    return 0;
  }
  if (asprintf(&ep, "%s/export", dir) == -1 ||
      asprintf(&mnt, "%s/mnt", dir) == -1) {
    sn_oom();
    goto out;
  }
  exp = ms_read_file(ep);
  dev = ms_device_index(s, key);
  sid = ms_device_server(s, key);
  healthy = exp && strcmp(exp, export_name) == 0 && dev >= 0 &&
            sn_nbd_connected(dev) == 1 && ms_is_mountpoint(mnt) == 1 &&
            sid && ms_server_pid(s, sid) != 0;
  if (healthy) {
    r = 1;
    goto out;
  }
  users = device_users(s, key);
  if (users == -1)
    goto out;
  if (users > 0) {
    r = 2;
    goto out;
  }
  /* Left over by a crash: clear it (and its server if now unused). */
  free(sid);
  sid = NULL;
  if (device_teardown(s, key, &sid) == -1)
    goto out;
  if (sid && ms_server_release(s, sid) == -1)
    goto out;
  r = 0;
out:
  free(dir);
  free(ep);
  free(exp);
  free(mnt);
  free(sid);
  return r;
}

int
ms_device_acquire(struct ms *s, const char *key, const char *export_name,
                  const char *sid, const char *id, int *dev, bool *shared)
{
  char *dir = ms_path(s, "devices/%s", key), *p = NULL, *sock = NULL;
  char buf[32];
  int c, r = -1;

  *dev = -1;
  *shared = false;
  if (dir == NULL)
    return -1;
  c = ms_device_check(s, key, export_name);
  if (c == -1)
    goto out;
  if (c == 2) {
    sn_set_error("device state %s is broken and still in use", dir);
    goto out;
  }
  if (c == 1) {
    if ((p = ms_path(s, "devices/%s/users/%s", key, id)) == NULL ||
        ms_write_file(p, "", 0600) == -1)
      goto out;
    *dev = ms_device_index(s, key);
    *shared = true;
    r = 0;
    goto out;
  }

  /* A new device. */
  if (mkdir(dir, 0700) == -1) {
    sn_set_error("%s: %s", dir, strerror(errno));
    goto out;
  }
#define PUT(name, text)                                                   \
  do {                                                                    \
    free(p);                                                              \
    if ((p = ms_path(s, "devices/%s/%s", key, name)) == NULL ||           \
        ms_write_file(p, text, 0600) == -1)                               \
      goto out;                                                           \
  } while (0)
  PUT("export", export_name);
  PUT("server", sid);
  free(p);
  if ((p = ms_path(s, "devices/%s/users", key)) == NULL)
    goto out;
  if (mkdir(p, 0700) == -1) {
    sn_set_error("%s: %s", p, strerror(errno));
    goto out;
  }
  free(p);
  if ((p = ms_path(s, "devices/%s/mnt", key)) == NULL)
    goto out;
  if (mkdir(p, 0700) == -1) {
    sn_set_error("%s: %s", p, strerror(errno));
    goto out;
  }
  free(p);
  if ((p = ms_path(s, "devices/%s/users/%s", key, id)) == NULL ||
      ms_write_file(p, "", 0600) == -1)
    goto out;

  if ((sock = ms_path(s, "servers/%s/sock", sid)) == NULL)
    goto out;
  {
    struct sn_nbd_server srv = { .unix_path = sock,
                                 .export_name = export_name };
    struct sn_nbd_attach_opts o = {
      .index = -1, .block_size = 4096,
      .dead_conn_timeout = s->dead_conn_timeout,
      .io_timeout = IO_TIMEOUT, .read_only = true,
    };

    *dev = sn_nbd_attach(&srv, &o);
    if (*dev == -1)
      goto out;
  }
  snprintf(buf, sizeof buf, "%d", *dev);
  PUT("dev", buf);
  PUT("mounted", "");
  free(p);
  if ((p = ms_path(s, "devices/%s/mnt", key)) == NULL)
    goto out;
  snprintf(buf, sizeof buf, "/dev/nbd%d", *dev);
  if (mount(buf, p, "squashfs", MS_RDONLY | MS_NOSUID | MS_NODEV,
            NULL) == -1) {
    sn_set_error("mount -t squashfs %s (export %s): %s", buf, export_name,
                 strerror(errno));
    goto out;
  }
#undef PUT
  r = 0;
out:
  free(dir);
  free(p);
  free(sock);
  return r;
}

int
ms_device_release(struct ms *s, const char *key, const char *id, char **sid)
{
  char *p = ms_path(s, "devices/%s/users/%s", key, id), *dir;
  struct stat st;
  int users;

  *sid = NULL;
  if (p == NULL)
    return -1;
  unlink(p);
  free(p);
  if ((dir = ms_path(s, "devices/%s", key)) == NULL)
    return -1;
  if (stat(dir, &st) == -1) {
    free(dir);
    return 0;
  }
  free(dir);
  users = device_users(s, key);
  if (users == -1)
    return -1;
  if (users > 0)
    return 0;
  return device_teardown(s, key, sid);
}
