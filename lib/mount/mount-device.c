/* soci-nbd: the NBD devices of `soci-nbd mount` (devices/KEY/ in the run
 * directory, see mount-state.h): shared by every mount of a layer,
 * attached and mounted squashfs by the first, torn down by the last. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "mount/mount-int.h"
#include "mount/mount-state.h"
#include "nbd/nbddev.h"

#define IO_TIMEOUT 30           /* seconds: requests of a dead link requeue */

/* ---- devices ------------------------------------------------------------- */

int
ms_device_index(struct ms *s, const char *key)
{
  char *p = ms_path(s, "devices/%s/dev", key);
  long v = p ? ms_read_long(p) : -1;

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
  v = ms_list_dir(p);
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
  ms_remove_tree(dir);
  r = 0;
out:
  free(dir);
  free(mnt);
  free(marker);
  return r;
}

/* Healthy means: the same export, a connected device, mnt/ a mount point and
 * its server running.  An unused, unhealthy device is torn down, and its
 * server released when nothing else uses it. */
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

/* A new device's state is written before each step it records ("dev" once
 * attached, "mounted" before mount), so a failure or crash leaves what
 * ms_device_release needs to undo it; nothing is undone here. */
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

/* 0 also when devices/KEY is already gone, or still has other users. */
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
