/* soci-nbd: remote snapshots (docs/snapshotter.md) — a layer that
 * containerd is about to download and unpack is mounted lazily instead,
 * by `soci-nbd mount --layer` (its device shared with every other mount
 * of the layer), and committed under the name containerd will look for.
 * The mount is given the registry options of containerd's hosts.toml and
 * the credentials of the image's CRI pull (snap-registry.h), in a file
 * of the state directory removed with the layer's last snapshot.
 *
 * The mount is made by running the soci-nbd command, not in this
 * process: the daemon is multithreaded, and soci-nbd mount forks a
 * supervisor that must not inherit its threads' locks.  Programs are run
 * with posix_spawn and an empty signal mask; their first error line
 * becomes the message. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "registry/ref.h"
#include "snapshot/snap-int.h"
#include "snapshot/snap-registry.h"
#include "util/fdio.h"
#include "util/err.h"

extern char **environ;

/* Run argv (NULL-terminated); 0 if it exits 0, else -1 with the last
 * line it printed (or how it ended) as the message. */
static int
run(char *const *argv)
{
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none;
  char out[4096], *line;
  size_t len = 0;
  int p[2], st, r;
  pid_t pid;
  ssize_t n;

  if (pipe2(p, O_CLOEXEC) == -1)
    return sn_set_error("pipe: %s", strerror(errno));
  sigemptyset(&none);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_adddup2(&fa, p[1], 2);
  posix_spawnattr_init(&at);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
  r = posix_spawnp(&pid, argv[0], &fa, &at, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(p[1]);
  if (r != 0) {
    close(p[0]);
    return sn_set_error("%s: %s", argv[0], strerror(r));
  }
  while ((n = read(p[0], out + len, sizeof out - 1 - len)) > 0 ||
         (n == -1 && errno == EINTR))
    if (n > 0 && (len += (size_t) n) == sizeof out - 1)
      len = 0;                  /* keep the end, roughly */
  close(p[0]);
  while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
    ;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
    return 0;
  out[len] = 0;
  while (len > 0 && out[len - 1] == '\n')
    out[--len] = 0;
  line = strrchr(out, '\n');
  line = line ? line + 1 : out;
  if (*line)
    return sn_set_error("%s", line);
  if (WIFEXITED(st))
    return sn_set_error("%s exited with status %d", argv[0],
                        WEXITSTATUS(st));
  return sn_set_error("%s was killed by signal %d", argv[0],
                      WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Run prefix (NULL-terminated) followed by the words of mid (n of them)
 * and then those given (up to NULL, at most 7), as run does. */
static int
run_with(char *const *prefix, char *const *mid, size_t nmid, ...)
{
  size_t n = 0, k;
  va_list ap;
  char **v;
  const char *w;
  int r;

  while (prefix && prefix[n])
    n++;
  v = calloc(n + nmid + 8, sizeof *v);
  if (v == NULL)
    return sn_oom();
  for (k = 0; k < n; k++)
    v[k] = prefix[k];
  for (size_t i = 0; i < nmid; i++)
    v[k++] = mid[i];
  va_start(ap, nmid);
  while ((w = va_arg(ap, const char *)) != NULL && k < n + nmid + 7)
    v[k++] = (char *) w;
  va_end(ap);
  r = run(v);
  free(v);
  return r;
}

/* Where credentials files go: STATE/auth (ROOT/auth without a state
 * directory); malloc'd, or NULL. */
static char *
auth_dir(const struct sn_snapshots *s)
{
  char *p;

  if (asprintf(&p, "%s/auth", s->remote.state_dir ? s->remote.state_dir
                                                   : s->root) < 0)
    return NULL;
  return p;
}

/* DIR/<hex>.json for layer "sha256:<hex>" (malloc'd), or NULL (out of
 * memory, or not such a digest: no file is named after it). */
static char *
auth_path(const char *dir, const char *layer)
{
  char *p;

  if (strncmp(layer, "sha256:", 7) != 0 || strlen(layer) != 71 ||
      strspn(layer + 7, "0123456789abcdef") != 64 ||
      asprintf(&p, "%s/%s.json", dir, layer + 7) < 0)
    return NULL;
  return p;
}

/* The mount options for layer of image: the registry's (hosts.toml),
 * --auth-file when a CRI pull gave credentials for its repository, and
 * --index when one was named.  *h filled, or -1. */
static int
mount_args(struct sn_snapshots *s, const char *image, const char *layer,
           const char *index, struct sn_snap_hosts *h)
{
  struct sn_ref ref;
  char *certs = NULL, *auth = NULL, *dir = NULL;
  int r = -1;

  if (sn_ref_parse(image, &ref) == -1)
    return -1;
  if (ref.kind != SN_REF_REGISTRY) {
    sn_ref_clear(&ref);
    return sn_set_error("%.200s: not a registry reference", image);
  }
  if (asprintf(&certs, "%s/certs", s->root) < 0) {
    sn_ref_clear(&ref);
    return sn_oom();
  }
  if (sn_snap_hosts_load(s->remote.hosts_dirs, ref.registry, certs,
                         s->remote.log, h) == -1)
    goto out;
  if (s->remote.creds && (dir = auth_dir(s)) == NULL) {
    sn_oom();
    goto fail;
  }
  if (dir && (auth = auth_path(dir, layer)) != NULL) {
    if (sn_mkdir_p(dir, 0700) == -1 ||
        sn_snap_creds_write(s->remote.creds, image,
                            (const char *const *) h->hosts, h->nhosts,
                            auth) == -1)
      goto fail;
    /* Written now, or by an earlier mount of the layer: its device is
     * shared, and may be serving with them. */
    if (access(auth, F_OK) == 0 &&
        sn_snap_hosts_add_arg(h, "--auth-file", auth) == -1)
      goto fail;
  }
  if (index && index[0] && sn_snap_hosts_add_arg(h, "--index", index) == -1)
    goto fail;
  r = 0;
  goto out;
fail:
  sn_snap_hosts_clear(h);
out:
  sn_ref_clear(&ref);
  free(certs);
  free(auth);
  free(dir);
  return r;
}

int
snap_remote_mount(struct sn_snapshots *s, const char *image,
                  const char *layer, const char *index, const char *dir)
{
  struct sn_snap_hosts h;
  int r;

  if (mount_args(s, image, layer, index, &h) == -1)
    return -1;
  r = run_with(s->remote.mount_argv, h.args, h.nargs, "--layer", layer,
               image, dir, (const char *) NULL);
  sn_snap_hosts_clear(&h);
  return r;
}

/* The layer a remote snapshot serves (its label), or NULL. */
static const char *
remote_layer(const struct snap *p)
{
  return p->remote ? sn_snap_label_get(p->info.labels, p->info.nlabels,
                                       SN_SNAP_LABEL_REMOTE)
                   : NULL;
}

/* Remove the credential files of layers no remote snapshot serves nor a
 * pending mount is about to use. */
void
snap_remote_auth_gc(struct sn_snapshots *s)
{
  char *dir, *path;
  struct dirent *e;
  DIR *d;

  if ((dir = auth_dir(s)) == NULL)
    return;
  if ((d = opendir(dir)) != NULL) {
    while ((e = readdir(d)) != NULL) {
      size_t i;

      if (e->d_name[0] == '.')
        continue;
      for (i = 0; i < s->n + s->npending; i++) {
        const char *l = i >= s->n ? s->pending[i - s->n].layer
                                  : remote_layer(&s->v[i]);

        if (l && strncmp(l, "sha256:", 7) == 0 && strlen(l) == 71 &&
            strlen(e->d_name) == 69 &&
            strncmp(e->d_name, l + 7, 64) == 0 &&
            strcmp(e->d_name + 64, ".json") == 0)
          break;
      }
      if (i == s->n + s->npending &&
          asprintf(&path, "%s/%s", dir, e->d_name) >= 0) {
        unlink(path);
        free(path);
      }
    }
    closedir(d);
  }
  free(dir);
}

int
snap_remote_umount(struct sn_snapshots *s, const char *dir)
{
  return run_with(s->remote.umount_argv, NULL, 0, dir, (const char *) NULL);
}

void
snap_log(struct sn_snapshots *s, const char *fmt, ...)
{
  va_list ap;
  char *msg;
  int n;

  if (s->remote.log == NULL)
    return;
  va_start(ap, fmt);
  n = vasprintf(&msg, fmt, ap);
  va_end(ap);
  if (n >= 0) {
    s->remote.log(msg);
    free(msg);
  }
}

/* Is path a mount point: on another device than its parent?  (A bind
 * mount of the same file system is not seen; the layer mounts this is
 * for are squashfs devices of their own.) */
static bool
is_mount_point(const char *path)
{
  struct stat st, up;
  char *parent;
  bool r;

  if (asprintf(&parent, "%s/..", path) < 0)
    return false;
  r = lstat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
      stat(parent, &up) == 0 && st.st_dev != up.st_dev;
  free(parent);
  return r;
}

int
snap_remote_umount_stray(struct sn_snapshots *s, const char *dir)
{
  char *fs;
  int r = 0;

  if (asprintf(&fs, "%s/fs", dir) < 0)
    return sn_oom();
  if (!is_mount_point(fs))
    goto out;
  if (s->remote.umount_argv == NULL)
    r = sn_set_error("%s: a mount no snapshot owns, left as it is (no "
                     "umount command)", fs);
  else if (snap_remote_umount(s, fs) == -1)
    r = sn_prefix_error("%s: a mount no snapshot owns, left as it is: ", fs);
  else if (is_mount_point(fs))
    r = sn_set_error("%s: a mount no snapshot owns, still mounted after "
                     "the umount command", fs);
  else
    snap_log(s, "cleanup: unmounted %s, a layer mount no snapshot owns (the "
             "daemon stopped while it mounted?)", fs);
out:
  free(fs);
  return r;
}

int
snap_remote_args(const struct sn_snap_label *l, size_t nl, char **image,
                 const char **layer, const char **index)
{
  const char *ref = sn_snap_label_get(l, nl, SN_SNAP_LABEL_IMAGE);
  bool cri = ref != NULL;
  const char *man = sn_snap_label_get(l, nl, cri ? SN_SNAP_LABEL_MANIFEST
                                                 : SN_SNAP_LABEL_SOCI_MANIFEST);

  *image = NULL;
  *layer = sn_snap_label_get(l, nl, cri ? SN_SNAP_LABEL_LAYER
                                        : SN_SNAP_LABEL_SOCI_LAYER);
  *index = cri ? NULL : sn_snap_label_get(l, nl, SN_SNAP_LABEL_SOCI_INDEX);
  if (!cri)
    ref = sn_snap_label_get(l, nl, SN_SNAP_LABEL_SOCI_REF);
  if (ref == NULL || *layer == NULL || ref[0] == 0 || (*layer)[0] == 0)
    return 1;
  /* The manifest containerd resolved, not whatever the tag is now. */
  if (man && man[0] && strchr(ref, '@') == NULL
      ? asprintf(image, "%s@%s", ref, man) < 0
      : (*image = strdup(ref)) == NULL) {
    *image = NULL;
    return sn_oom();
  }
  return 0;
}

/* Mount remote snapshot p's layer again on its fs; 0 or -1. */
static int
restore_one(struct sn_snapshots *s, const struct snap *p, const char *fs)
{
  const char *layer, *index;
  char *image;
  int r;

  if (s->remote.mount_argv == NULL)
    return sn_set_error("remote snapshots are off");
  r = snap_remote_args(p->info.labels, p->info.nlabels, &image, &layer,
                       &index);
  if (r == 1)
    return sn_set_error("its labels name no image and layer");
  if (r == 0)
    r = snap_remote_mount(s, image, layer, index, fs);
  free(image);
  if (r == 0 && !is_mount_point(fs))
    r = sn_set_error("the mount command left %s unmounted", fs);
  return r;
}

int
sn_snapshots_restore(struct sn_snapshots *s)
{
  size_t bad = 0;

  pthread_mutex_lock(&s->lock);
  for (size_t i = 0; i < s->n; i++) {
    struct snap *p = &s->v[i];
    char *fs;
    int r;

    if (!p->remote)
      continue;
    if ((fs = snap_dir(s, p->id, "fs")) == NULL) {
      p->unavailable = true;
      bad++;
      continue;
    }
    if (is_mount_point(fs)) {
      p->unavailable = false;
      free(fs);
      continue;
    }
    r = restore_one(s, p, fs);
    p->unavailable = r != 0;
    bad += r != 0;
    if (r == 0)
      snap_log(s, "snapshot %s: its layer was not mounted (a reboot?); "
               "mounted again on %s", p->info.name, fs);
    else
      snap_log(s, "snapshot %s: its layer is not mounted and could not be "
               "mounted again, so it is unavailable (what uses it fails; "
               "remove the image and pull it again): %s", p->info.name,
               sn_error());
    free(fs);
  }
  pthread_mutex_unlock(&s->lock);
  return (int) (bad > INT_MAX ? INT_MAX : bad);
}
