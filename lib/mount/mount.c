/* soci-nbd: `soci-nbd mount` itself (see mount.h): make a mount step by
 * step, journaled first (mount-state.h); undo it; restart its servers;
 * list the mounts. */
#include <config.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "mount/mount-state.h"
#include "mount/mount.h"

#define PLUGIN_FILE "nbdkit-soci-plugin.so"

static volatile int interrupted;

/* ---- unwinding --------------------------------------------------------- */

/* Undo the journal of mount ID in reverse order.  A step that fails is
 * reported and the others are still tried, except that a busy top mount
 * stops everything (the devices under it must stay).  0 when all of it is
 * gone (then the journal too). */
int
sn_mount_unwind(struct ms *s, const char *id, bool lazy)
{
  struct ms_journal j;
  int r, failed = 0;

  r = ms_journal_read(s, id, &j);
  if (r != 0)
    return r == 1 ? 0 : -1;
  for (size_t i = j.n; i-- > 0;) {
    const char *k = j.key[i], *v = j.val[i];

    if (strcmp(k, "mount") == 0 || strcmp(k, "tmpfs") == 0) {
      if (umount2(v, lazy ? MNT_DETACH : 0) == -1 && errno != EINVAL &&
          errno != ENOENT) {
        int e = errno;

        if (strcmp(k, "mount") == 0) {
          if (e == EBUSY)
            sn_set_error("%s is busy (a process uses it; umount --lazy "
                         "detaches it anyway)", v);
          else
            sn_set_error("umount %s: %s", v, strerror(e));
          ms_journal_free(&j);
          return -1;
        }
        fprintf(stderr, "soci-nbd: umount %s: %s\n", v, strerror(e));
        failed++;
      }
      if (strcmp(k, "tmpfs") == 0)
        rmdir(v);
    }
    else if (strcmp(k, "device") == 0) {
      char *sid = NULL;

      if (ms_device_release(s, v, id, &sid) == -1) {
        fprintf(stderr, "soci-nbd: device %s: %s\n", v, sn_error());
        failed++;
      }
      else if (sid && ms_server_release(s, sid) == -1) {
        fprintf(stderr, "soci-nbd: server %s: %s\n", sid, sn_error());
        failed++;
      }
      free(sid);
    }
    else if (strcmp(k, "server") == 0) {
      if (ms_server_release(s, v) == -1) {
        fprintf(stderr, "soci-nbd: server %s: %s\n", v, sn_error());
        failed++;
      }
    }
  }
  ms_journal_free(&j);
  if (failed)
    return sn_set_error("%d step(s) could not be undone; the state is kept "
                        "(run soci-nbd umount again)", failed);
  {
    char *p = ms_path(s, "mounts/%s/journal", id);
    char *d = ms_path(s, "mounts/%s", id);

    if (p)
      unlink(p);
    if (d)
      rmdir(d);
    free(p);
    free(d);
  }
  return 0;
}

/* ---- helpers ----------------------------------------------------------- */

/* An absolute, canonical path for DIR (lexical when it cannot be
 * resolved, so that a vanished directory can still be unmounted). */
char *
sn_mount_abs_dir(const char *dir)
{
  char *r = realpath(dir, NULL), cwd[PATH_MAX];

  if (r)
    return r;
  if (dir[0] == '/')
    return strdup(dir);
  if (getcwd(cwd, sizeof cwd) == NULL)
    return NULL;
  if (asprintf(&r, "%s/%s", cwd, dir) == -1)
    return NULL;
  return r;
}

/* The plugin to load: --plugin, $SOCI_NBD_PLUGIN, the build tree next to
 * this program, else "soci" (nbdkit's plugin directory). */
char *
sn_mount_find_plugin(const char *opt)
{
  const char *env = getenv("SOCI_NBD_PLUGIN");
  char exe[PATH_MAX], *p;
  ssize_t n;

  if (opt && *opt) {
    char *r = realpath(opt, NULL);

    return r ? r : strdup(opt);
  }
  if (env && *env)
    return strdup(env);
  n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    if ((p = strrchr(exe, '/')) != NULL) {
      char *cand;

      *p = '\0';
      if (asprintf(&cand, "%s/plugin/.libs/" PLUGIN_FILE, exe) != -1) {
        if (access(cand, R_OK) == 0)
          return cand;
        free(cand);
      }
    }
  }
  return strdup("soci");
}

/* nbdkit's absolute path (PATH search) so that a restart does not depend
 * on the caller's PATH. */
char *
sn_mount_find_nbdkit(const char *opt)
{
  const char *path = getenv("PATH");
  char *copy, *dir, *save, *cand;

  if (opt && *opt)
    return strchr(opt, '/') ? sn_mount_abs_dir(opt) : strdup(opt);
  if (path == NULL || (copy = strdup(path)) == NULL)
    return strdup("nbdkit");
  for (dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
    if (asprintf(&cand, "%s/nbdkit", *dir ? dir : ".") == -1)
      break;
    if (access(cand, X_OK) == 0) {
      char *a = sn_mount_abs_dir(cand);

      free(cand);
      free(copy);
      return a;
    }
    free(cand);
  }
  free(copy);
  return strdup("nbdkit");
}

/* Characters that overlayfs's option syntax cannot carry in a path. */
bool
sn_mount_overlay_safe(const char *p)
{
  return strpbrk(p, ",:\\\n") == NULL;
}

/* Test hook: SOCI_NBD_TEST_ABORT=STEP ends the mount right after STEP
 * (devices, supervisor, upper, mount) as a crash would. */
static void
test_abort(const char *step)
{
  const char *a = getenv("SOCI_NBD_TEST_ABORT");

  if (a && strcmp(a, step) == 0) {
    fprintf(stderr, "soci-nbd: SOCI_NBD_TEST_ABORT: stopping after '%s'\n",
            step);
    _exit(70);
  }
}

/* Mount flags of what DIR shows: nosuid,nodev unless opted out.  The
 * devices' own squashfs mounts (in the state directory) are always
 * nosuid,nodev. */
static unsigned long
dir_flags(const struct sn_mount_req *m)
{
  return (m->suid ? 0 : MS_NOSUID) | (m->dev ? 0 : MS_NODEV);
}

/* ---- making a mount ------------------------------------------------------ */

/* What a mount makes on its way, freed at the end of do_mount. */
struct made {
  char *sid, **digests, **ztocs, **keys;
  char *opts;
  char *rwdir, *devlist;
  bool *exported;
  size_t nlayers, nkeys;
};

/* 1. the server: create and start it (d->sid), and read the layers it
 * serves (d->digests, d->ztocs, d->exported, d->nlayers). */
static int
mount_server(struct ms *s, const char *id, const struct sn_mount_req *m,
             struct made *d)
{
  if (ms_server_create(s, m->nbdkit, m->verbose, m->plugin,
                       m->plugin_args.v, m->password, &d->sid) == -1 ||
      ms_journal_add(s, id, "server", d->sid) == -1)
    return -1;
  if (ms_server_start(s, d->sid, &interrupted) == -1) {
    sn_prefix_error("nbdkit: ");
    return -1;
  }
  if (ms_server_layers(s, d->sid, &d->digests, &d->ztocs, &d->exported,
                       &d->nlayers) == -1)
    return -1;
  if (d->nlayers == 0)
    return sn_set_error("%s has no layers", m->image);
  return 0;
}

/* The layers a mount serves: [*first, *end) of the image's (all of them
 * but with --layer, the one named); the flat export is one device. */
static int
mount_layers(const struct sn_mount_req *m, const struct made *d,
             size_t *first, size_t *end)
{
  *first = 0;
  *end = d->nlayers;
  if (m->layer) {
    for (*first = 0; *first < d->nlayers &&
         strcmp(d->digests[*first], m->layer) != 0; ++*first)
      ;
    if (*first == d->nlayers)
      return sn_set_error("%s has no layer %s", m->image, m->layer);
    *end = *first + 1;
    if (m->lazy_only && strcmp(d->ztocs[*first], "whole") == 0)
      return sn_set_error("layer %s of %s has no index: it would be "
                          "downloaded whole (--lazy-only)", m->layer,
                          m->image);
  }
  for (size_t i = *first; !m->flat && i < *end; i++)
    if (!d->exported[i])
      return sn_set_error("layer %zu (%s) cannot be served alone (it "
                          "hard-links a file of a lower layer)%s", i,
                          d->digests[i], m->layer ? "" : "; use --flat");
  return 0;
}

/* 2. the devices, bottom first: one per layer (or the flat one), shared
 * with other mounts by key (d->keys, d->nkeys; d->devlist to print). */
static int
mount_devices(struct ms *s, const char *id, const struct sn_mount_req *m,
              struct made *d)
{
  size_t first, end;
  int r;

  if (mount_layers(m, d, &first, &end) == -1)
    return -1;
  d->nkeys = m->flat ? 1 : end - first;
  d->keys = calloc(d->nkeys + 1, sizeof *d->keys);
  if (d->keys == NULL)
    return sn_oom();
  for (size_t k = 0; k < d->nkeys; k++) {
    size_t i = first + k;
    const char *export_name = m->flat ? "flat" : d->digests[i];
    int dev, c;
    bool shared;
    char *nd;

    if (m->flat)
      r = asprintf(&d->keys[k], "flat-%s", id);
    else                        /* what the device serves: the layer as
                                 * its ztoc describes it, at a block size */
      r = asprintf(&d->keys[k], "%.32s-%.16s%s%s", d->digests[i] + 7,
                   strncmp(d->ztocs[i], "sha256:", 7) == 0 ? d->ztocs[i] + 7
                                                          : d->ztocs[i],
                   m->block_size ? "-bs" : "",
                   m->block_size ? m->block_size : "");
    if (r == -1) {
      d->keys[k] = NULL;
      return sn_oom();
    }
    c = ms_device_check(s, d->keys[k], export_name);
    if (c == -1)
      return -1;
    if (c == 2) {               /* a broken shared one: use our own */
      char *own;

      if (asprintf(&own, "%s-%s", d->keys[k], id) == -1)
        return sn_oom();
      free(d->keys[k]);
      d->keys[k] = own;
    }
    if (ms_journal_add(s, id, "device", d->keys[k]) == -1 ||
        ms_device_acquire(s, d->keys[k], export_name, d->sid, id, &dev,
                          &shared) == -1)
      return -1;
    if (asprintf(&nd, "%s%snbd%d%s", d->devlist ? d->devlist : "",
                 d->devlist ? " " : "", dev, shared ? "(shared)" : "") == -1)
      return sn_oom();
    free(d->devlist);
    d->devlist = nd;
  }
  return 0;
}

/* 4. the writable layer: DIR/upper and DIR/work in --upper DIR, else in
 * a tmpfs of ours (d->rwdir). */
static int
mount_upper(struct ms *s, const char *id, const struct sn_mount_req *m,
            struct made *d)
{
  const char *base = m->upper;

  if (base == NULL) {
    if ((d->rwdir = ms_path(s, "mounts/%s/rw", id)) == NULL)
      return -1;
    if (mkdir(d->rwdir, 0700) == -1 && errno != EEXIST)
      return sn_set_error("%s: %s", d->rwdir, strerror(errno));
    if (ms_journal_add(s, id, "tmpfs", d->rwdir) == -1)
      return -1;
    if (mount("tmpfs", d->rwdir, "tmpfs", dir_flags(m), "mode=0755") == -1)
      return sn_set_error("mount -t tmpfs %s: %s", d->rwdir,
                          strerror(errno));
    base = d->rwdir;
  }
  else if (ms_journal_add(s, id, "upper", base) == -1)
    return -1;
  for (int i = 0; i < 2; i++) {
    char *p;

    if (asprintf(&p, "%s/%s", base, i == 0 ? "upper" : "work") == -1)
      return sn_oom();
    if (mkdir(p, 0755) == -1 && errno != EEXIST) {
      sn_set_error("%s: %s", p, strerror(errno));
      free(p);
      return -1;
    }
    free(p);
  }
  return 0;
}

/* 5b. overlayfs on DIR over the devices' mounts (top layer first), with
 * the writable layer when rw; its option string in d->opts. */
static int
mount_overlay(struct ms *s, const struct sn_mount_req *m, struct made *d)
{
  size_t len = 0;

  /* Relative lower paths (from devices/) keep the option short. */
  for (size_t i = d->nkeys; i-- > 0;) {
    char *no;

    if (asprintf(&no, "%s%s%s/mnt", d->opts ? d->opts : "lowerdir=",
                 i + 1 < d->nkeys ? ":" : "", d->keys[i]) == -1)
      return sn_oom();
    free(d->opts);
    d->opts = no;
  }
  if (m->rw) {
    const char *base = m->upper ? m->upper : d->rwdir;
    char *no;

    if (asprintf(&no, "%s,upperdir=%s/upper,workdir=%s/work", d->opts, base,
                 base) == -1)
      return sn_oom();
    free(d->opts);
    d->opts = no;
  }
  len = strlen(d->opts);
  if (len >= 4096)
    return sn_set_error("%zu layers make an overlayfs option longer than a "
                        "page; use --flat", d->nkeys);
  {
    char *devdir = ms_path(s, "devices"), cwd[PATH_MAX];
    int e = 0;

    if (devdir == NULL)
      return -1;
    if (getcwd(cwd, sizeof cwd) == NULL)
      strcpy(cwd, "/");
    if (chdir(devdir) == -1 ||
        mount("overlay", m->dir, "overlay",
              (m->rw ? 0 : MS_RDONLY) | dir_flags(m), d->opts) == -1)
      e = errno;
    if (chdir(cwd) == -1)
      e = e ? e : errno;
    free(devdir);
    if (e)
      return sn_set_error("mount -t overlay on %s: %s", m->dir,
                          strerror(e));
  }
  return 0;
}

/* 5. DIR: overlayfs over the devices' mounts (top layer first), or a
 * read-only bind mount of the only one */
static int
mount_dir(struct ms *s, const char *id, const struct sn_mount_req *m,
          struct made *d)
{
  if (ms_journal_add(s, id, "mount", m->dir) == -1)
    return -1;
  if (d->nkeys == 1 && !m->rw) {
    char *src = ms_path(s, "devices/%s/mnt", d->keys[0]);

    if (src == NULL)
      return -1;
    if (mount(src, m->dir, NULL, MS_BIND, NULL) == -1 ||
        mount(NULL, m->dir, NULL,
              MS_BIND | MS_REMOUNT | MS_RDONLY | dir_flags(m), NULL) == -1) {
      sn_set_error("bind mount %s on %s: %s", src, m->dir, strerror(errno));
      free(src);
      return -1;
    }
    free(src);
    return 0;
  }
  return mount_overlay(s, m, d);
}

/* The mount proper; the journal of id records every step. */
static int
do_mount(struct ms *s, const char *id, const struct sn_mount_req *m)
{
  struct made d = { 0 };
  int r = -1;

  if (ms_journal_add(s, id, "dir", m->dir) == -1 ||
      ms_journal_add(s, id, "image", m->image) == -1 ||
      ms_journal_add(s, id, "mode", m->layer ? "layer"
                                    : m->flat ? (m->rw ? "flat,rw" : "flat")
                                    : (m->rw ? "overlay,rw" : "overlay"))
      == -1)
    return -1;

  if (mount_server(s, id, m, &d) == -1 ||
      mount_devices(s, id, m, &d) == -1)
    goto out;
  test_abort("devices");

  /* 3. the supervisor of our server (or the server stops when every
   * device was shared from other mounts) */
  if (ms_server_release(s, d.sid) == -1)
    goto out;
  test_abort("supervisor");

  if (m->rw && mount_upper(s, id, m, &d) == -1)
    goto out;
  test_abort("upper");

  if (mount_dir(s, id, m, &d) == -1)
    goto out;
  test_abort("mount");
  if (ms_journal_add(s, id, "done", "1") == -1)
    goto out;
  if (!m->quiet && m->layer)
    printf("%s: layer %s of %s mounted (on %s)\n", m->dir, m->layer,
           m->image, d.devlist);
  else if (!m->quiet)
    printf("%s: %s mounted (%s%s, %zu layer%s on %s)\n", m->dir, m->image,
           m->flat ? "flat" : "overlay", m->rw ? ", rw" : "", d.nlayers,
           d.nlayers == 1 ? "" : "s", d.devlist);
  r = 0;
out:
  free(d.sid);
  ms_free_list(d.digests);
  ms_free_list(d.ztocs);
  free(d.exported);
  ms_free_list(d.keys);
  free(d.opts);
  free(d.rwdir);
  free(d.devlist);
  return r;
}

/* SIGINT, SIGTERM, SIGHUP while mounting: abort a starting nbdkit. */
static void
on_signal(int sig)
{
  (void) sig;
  interrupted = 1;
}

/* do_mount, undone when it fails (keeping its error). */
int
sn_mount_make(struct ms *s, const char *id, const struct sn_mount_req *m)
{
  {
    struct sigaction sa = { .sa_handler = on_signal };

    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
  }
  if (do_mount(s, id, m) == -1) {
    char *msg = strdup(sn_error());

    if (sn_mount_unwind(s, id, false) == -1)
      fprintf(stderr, "soci-nbd: undoing the mount of %s: %s\n", m->dir,
              sn_error());
    sn_set_error("%s", msg ? msg : "out of memory");
    free(msg);
    return -1;
  }
  return 0;
}

/* ---- servers ------------------------------------------------------------- */

/* The servers behind a mount's devices (and its own), deduplicated. */
char **
sn_mount_servers(struct ms *s, const struct ms_journal *j)
{
  char **v = calloc(1, sizeof *v);
  size_t n = 0;

  if (v == NULL)
    return NULL;
  for (size_t i = 0; i < j->n; i++) {
    char *sid = NULL, **nv;
    bool dup = false;

    if (strcmp(j->key[i], "device") == 0)
      sid = ms_device_server(s, j->val[i]);
    else if (strcmp(j->key[i], "server") == 0)
      sid = strdup(j->val[i]);
    if (sid == NULL)
      continue;
    for (size_t k = 0; k < n; k++)
      dup |= strcmp(v[k], sid) == 0;
    if (dup || (nv = realloc(v, (n + 2) * sizeof *nv)) == NULL) {
      free(sid);
      continue;
    }
    v = nv;
    v[n++] = sid;
    v[n] = NULL;
  }
  return v;
}

/* Restart each server of the mount on dir that still exists (one that
 * stopped served no device); failures are reported and the rest go on. */
int
sn_mount_restart(struct ms *s, const char *dir, bool quiet)
{
  char id[17], **sids;
  struct ms_journal j;
  int r, st = 0, nrestarted = 0;

  ms_mount_id(dir, id);
  r = ms_journal_read(s, id, &j);
  if (r == 1)
    return sn_set_error("%s is not mounted by soci-nbd", dir);
  if (r == -1)
    return -1;
  sids = sn_mount_servers(s, &j);
  ms_journal_free(&j);
  if (sids == NULL)
    return sn_oom();
  for (char **p = sids; *p; p++) {
    char *argv = ms_path(s, "servers/%s/argv", *p);
    bool exists = argv && access(argv, F_OK) == 0;

    free(argv);
    if (!exists)
      continue;                 /* stopped: served no device */
    if (ms_server_restart(s, *p) == -1) {
      fprintf(stderr, "soci-nbd: restarting nbdkit %s: %s\n", *p,
              sn_error());
      st = 1;
      continue;
    }
    nrestarted++;
    if (!quiet)
      printf("%s: nbdkit restarted (pid %ld)\n", dir,
             (long) ms_server_pid(s, *p));
  }
  ms_free_list(sids);
  if (nrestarted == 0 && st == 0)
    return sn_set_error("%s: no server to restart", dir);
  return st;
}

/* ---- mounts -------------------------------------------------------------- */

int
sn_mount_list(struct ms *s)
{
  char **ids;

  if ((ids = ms_mount_ids(s)) == NULL)
    return -1;
  for (char **id = ids; *id; id++) {
    struct ms_journal j;
    const char *state = "ok";
    char **sids;
    bool first = true;

    if (ms_journal_read(s, *id, &j) != 0)
      continue;
    if (ms_journal_get(&j, "done") == NULL)
      state = "incomplete";
    printf("%s\t%s\t%s\t",
           ms_journal_get(&j, "dir") ? ms_journal_get(&j, "dir") : "?",
           ms_journal_get(&j, "image") ? ms_journal_get(&j, "image") : "?",
           ms_journal_get(&j, "mode") ? ms_journal_get(&j, "mode") : "?");
    for (size_t i = 0; i < j.n; i++) {
      int dev;

      if (strcmp(j.key[i], "device") != 0)
        continue;
      dev = ms_device_index(s, j.val[i]);
      if (dev >= 0)
        printf("%s/dev/nbd%d", first ? "" : ",", dev);
      else
        printf("%s-", first ? "" : ",");
      first = false;
    }
    if (first)
      printf("-");
    putchar('\t');
    first = true;
    sids = sn_mount_servers(s, &j);
    for (char **p = sids; p && *p; p++) {
      char *argvp = ms_path(s, "servers/%s/argv", *p);
      bool exists = argvp && access(argvp, F_OK) == 0;
      pid_t pid;

      free(argvp);
      if (!exists)
        continue;
      pid = ms_server_pid(s, *p);
      if (pid)
        printf("%s%ld", first ? "" : ",", (long) pid);
      else
        printf("%s-", first ? "" : ",");
      if (strcmp(state, "ok") == 0 && pid == 0)
        state = "server-down";
      else if (strcmp(state, "ok") == 0 && ms_supervisor_pid(s, *p) == 0)
        state = "supervisor-down";
      first = false;
    }
    if (first)
      printf("-");
    printf("\t%s\n", state);
    ms_free_list(sids);
    ms_journal_free(&j);
  }
  ms_free_list(ids);
  return 0;
}
