/* soci-nbd: the nbdkit servers of `soci-nbd mount` (servers/SID/ in the
 * run directory, see mount-state.h): their argv, starting and restarting
 * them, the layers they serve, and the supervisor process that keeps
 * their devices attached across restarts. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "util/err.h"
#include "util/fdio.h"
#include "mount/mount-int.h"
#include "mount/mount-state.h"
#include "nbd/nbddev.h"

#define SUPERVISOR_NAME "soci-nbd-sup"
#define RETRY_MS 500

/* ---- processes ----------------------------------------------------------- */

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

/* Sleep ms milliseconds (EINTR ends it early). */
static void
msleep(int ms)
{
  struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000 };
  nanosleep(&ts, NULL);
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
  f = ms_fopen_nofollow(path);
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
static int vec_add(char ***v, size_t *n, const char *fmt, ...) SN_PRINTF(3, 4);

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

/* servers/SID/ is made with mkdtemp; argv is written NUL-separated (for
 * server_argv) and cmdline shell-quoted.  On failure the directory is
 * removed and *sid is NULL. */
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
    ms_remove_tree(dir);
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
        long p = ms_read_long(pidfile);

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

/* start_argv with the argv, log, pid file and socket of servers/SID/. */
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

/* A pid file whose process is no longer nbdkit (or is a zombie) counts as
 * not running: pids are reused. */
pid_t
ms_server_pid(struct ms *s, const char *sid)
{
  char *p = ms_path(s, "servers/%s/pid", sid);
  long pid = p ? ms_read_long(p) : -1;

  free(p);
  return pid > 0 && proc_is((pid_t) pid, "nbdkit") ? (pid_t) pid : 0;
}

/* As ms_server_pid, for the process named SUPERVISOR_NAME. */
pid_t
ms_supervisor_pid(struct ms *s, const char *sid)
{
  char *p = ms_path(s, "servers/%s/supervisor.pid", sid);
  long pid = p ? ms_read_long(p) : -1;

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

/* Read from servers/SID/stats.json, written by the plugin.  The arrays are
 * malloc'd, *digests and *ztocs NULL-terminated (ms_free_list); all NULL and
 * *n 0 on error. */
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
    const char *how = json_string_value(json_object_get(l, "served"));

    /* What the device serves: the ztoc or dense table, or the layer's
     * own TOC, or "whole" for a layer downloaded whole. */
    if (z == NULL)
      z = json_string_value(json_object_get(l, "estargz_toc"));
    if (z == NULL)
      z = json_string_value(json_object_get(l, "zstd_chunked_manifest"));
    if (how && strcmp(how, "whole") == 0)
      z = NULL;

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
  keys = ms_list_dir(dir);
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

/* SIGTERM, SIGINT and SIGHUP in the supervisor: sn_nbd_supervise stops. */
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

/* The set is served_devices' text, compared with servers/SID/supervised; an
 * old supervisor gets SIGTERM, then SIGKILL, and the new one is forked. */
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
  ms_remove_tree(dir);
  r = 0;
out:
  free(dir);
  free(set);
  free(idx);
  ms_free_list(exps);
  return r;
}
