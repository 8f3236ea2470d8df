/* soci-nbd: attach NBD exports to kernel /dev/nbdN devices and keep them
 * attached across server restarts (see nbddev.h).  Two halves: an NBD
 * handshake client (fixed newstyle, NBD_OPT_GO, simple replies only, as
 * the kernel speaks) that hands a negotiated socket over, and the nbd
 * driver's generic-netlink commands over a raw NETLINK_GENERIC socket
 * (CONNECT, RECONFIGURE, DISCONNECT, STATUS, and the LINK_DEAD multicast).
 *
 * What the kernel does (drivers/block/nbd.c, 6.1 and later), which shapes
 * this module:
 *  - CONNECT without NBD_ATTR_INDEX takes an unused device or adds one and
 *    answers with NBD_ATTR_INDEX; the device keeps the socket's file.
 *  - When the socket dies, the receive worker marks it dead and multicasts
 *    NBD_CMD_LINK_DEAD (not after a requested disconnect).  New requests
 *    then wait up to dead_conn_timeout for a live socket, then fail.
 *  - RECONFIGURE with NBD_ATTR_SOCKETS puts the new socket in the place of
 *    the first dead one; there is no socket index to give.  If none is
 *    dead the kernel drops the new socket and still answers success, so a
 *    reconnect only means something after a LINK_DEAD.
 *  - Requests already sent on the dead socket are requeued by the request
 *    timeout handler (io_timeout, or the block layer's 30 s default), not
 *    at once.
 *  - STATUS reports "connected" while the device has a configuration: also
 *    while its socket is dead, until DISCONNECT and the last close.
 *
 * This file has the driver's commands and the supervision loop; the
 * handshake is in nbd-handshake.c, the netlink plumbing in netlink.c
 * (shared declarations: nbd-int.h).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <linux/netlink.h>

#include "util/err.h"
#include "nbd/nbddev.h"
#include "nbd/nbd-int.h"

/* ---- the driver ------------------------------------------------------------- */

#define NBD_TFLAG_READ_ONLY 0x2        /* an NBD transmission flag */
#define SIZE_WAIT_MS        10000      /* attach: for the device's size */

static pthread_once_t modprobe_once = PTHREAD_ONCE_INIT;
static char modprobe_result[128];

/* Run once (modprobe_once): modprobe -q nbd unless /sys/module/nbd exists.
 * Its outcome is left in modprobe_result for nbd_netlink's message. */
static void
run_modprobe(void)
{
  static const char *const paths[] = {
    "/sbin/modprobe", "/usr/sbin/modprobe", "/bin/modprobe",
    "/usr/bin/modprobe",
  };
  struct stat st;
  const char *path = NULL;
  pid_t pid;
  int status;

  if (stat("/sys/module/nbd", &st) == 0) {
    snprintf(modprobe_result, sizeof modprobe_result,
             "not needed: /sys/module/nbd exists");
    return;
  }
  for (size_t i = 0; i < sizeof paths / sizeof paths[0] && !path; i++)
    if (access(paths[i], X_OK) == 0)
      path = paths[i];
  if (path == NULL) {
    snprintf(modprobe_result, sizeof modprobe_result,
             "modprobe nbd failed: no modprobe");
    return;
  }
  pid = fork();
  if (pid == -1) {
    snprintf(modprobe_result, sizeof modprobe_result,
             "modprobe nbd failed: fork: %s", strerror(errno));
    return;
  }
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);

    if (null != -1) {
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
    }
    execl(path, "modprobe", "-q", "nbd", (char *) NULL);
    _exit(127);
  }
  while (waitpid(pid, &status, 0) == -1)
    if (errno != EINTR) {
      snprintf(modprobe_result, sizeof modprobe_result,
               "modprobe nbd failed: waitpid: %s", strerror(errno));
      return;
    }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    snprintf(modprobe_result, sizeof modprobe_result,
             "modprobe nbd succeeded, but no nbd netlink family appeared");
  else if (WIFEXITED(status))
    snprintf(modprobe_result, sizeof modprobe_result,
             "modprobe nbd failed with status %d", WEXITSTATUS(status));
  else
    snprintf(modprobe_result, sizeof modprobe_result,
             "modprobe nbd was killed by signal %d", WTERMSIG(status));
}

/* Open a netlink socket and resolve the family, loading the driver (once)
 * if needed.  Returns the socket, or -1 with a message. */
static int
nbd_netlink(struct family *f)
{
  int fd;

  pthread_once(&modprobe_once, run_modprobe);
  fd = sn_nl_open();
  if (fd == -1)
    return -1;
  if (sn_nl_resolve_family(fd, f) == -1) {
    int e = errno;

    close(fd);
    if (e == ENOENT)
      return sn_set_error("the kernel has no nbd driver (%s); serve the "
                          "export to a QEMU guest as a virtio disk "
                          "instead, or use nbdfuse and a loop device",
                          modprobe_result);
    return sn_set_error("netlink: resolving the nbd family: %s",
                        strerror(e));
  }
  return fd;
}

int
sn_nbd_driver_available(void)
{
  struct family f;
  int fd = nbd_netlink(&f);

  if (fd == -1)
    return -1;
  close(fd);
  return 0;
}

/* A kernel error of nbd command cmd on device index (-1: none yet). */
static int
nl_error(const char *cmd, int index, int e)
{
  char dev[32] = "";

  if (index >= 0)
    snprintf(dev, sizeof dev, "/dev/nbd%d: ", index);
  if (e == EPERM)
    return sn_set_error("%snbd %s: permission denied (needs CAP_SYS_ADMIN)",
                        dev, cmd);
  if (e == EBUSY)
    return sn_set_error("%snbd %s: the device is in use", dev, cmd);
  return sn_set_error("%snbd %s: %s (the kernel log may say more)", dev, cmd,
                      strerror(e));
}

/* sysfs, once sn_nbd_pin_sysfs has opened it; else -1 (then /sys). */
static int sysfs_dir = -1;

int
sn_nbd_pin_sysfs(void)
{
  int fd;

  if (sysfs_dir != -1)
    return 0;
  fd = open("/sys", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1)
    return sn_set_error("/sys: %s", strerror(errno));
  sysfs_dir = fd;
  return 0;
}

/* /sys/block/nbdN/size in sectors; -1 if unreadable. */
static long long
sys_size(int index)
{
  char path[64];
  long long v = -1;
  FILE *f;
  int fd;

  snprintf(path, sizeof path, "/sys/block/nbd%d/size", index);
  fd = sysfs_dir == -1 ? open(path, O_RDONLY | O_CLOEXEC)
                       : openat(sysfs_dir, path + 5, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return -1;
  f = fdopen(fd, "r");
  if (f == NULL) {
    close(fd);
    return -1;
  }
  if (fscanf(f, "%lld", &v) != 1)
    v = -1;
  fclose(f);
  return v;
}

/* Sleep ms milliseconds, resuming after signals. */
static void
sleep_ms(unsigned ms)
{
  struct timespec ts = { .tv_sec = ms / 1000,
                         .tv_nsec = (long) (ms % 1000) * 1000000 };

  while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
    ;
}

/* sn_nl_transact's callback for CONNECT: the NBD_ATTR_INDEX of the device
 * the kernel chose, into *(int *) arg. */
static void
connect_cb(const struct nlmsghdr *h, void *arg)
{
  int *index = arg;
  size_t len;
  const void *p = sn_nl_genl_attrs(h, &len);

  FOR_ATTRS(a, p, len)
    if (ATTR_TYPE(a) == NBD_ATTR_INDEX)
      *index = (int) sn_nl_attr_u32(a);
}

/* Put a one-socket NBD_ATTR_SOCKETS list into m. */
static void
put_socket(struct nlmsg *m, int fd)
{
  size_t socks = sn_nl_put(m, NBD_ATTR_SOCKETS, NULL, 0);
  size_t item = sn_nl_put(m, NBD_SOCK_ITEM, NULL, 0);

  sn_nl_put_u32(m, NBD_SOCK_FD, (uint32_t) fd);
  sn_nl_nest_end(m, item);
  sn_nl_nest_end(m, socks);
}

/* NBD_CMD_CONNECT with a socket from sn_nbd_connect; the kernel keeps its
 * own reference to the socket, so ours is closed.  A device without a size
 * after SIZE_WAIT_MS is detached again. */
int
sn_nbd_attach(const struct sn_nbd_server *srv,
              const struct sn_nbd_attach_opts *opts)
{
  struct family f;
  struct nlmsg m;
  uint32_t bs = opts->block_size ? opts->block_size : 4096;
  uint64_t size, sflags;
  uint16_t flags;
  int nl, fd, index = -1;

  if (bs < 512 || bs > 65536 || (bs & (bs - 1)))
    return sn_set_error("block size %" PRIu32 " is not a power of 2 from "
                        "512 to 65536", bs);
  nl = nbd_netlink(&f);
  if (nl == -1)
    return -1;
  fd = sn_nbd_connect(srv, &size, &flags);
  if (fd == -1) {
    close(nl);
    return -1;
  }
  sflags = flags;
  if (opts->read_only)
    sflags |= NBD_TFLAG_READ_ONLY;
  sn_nl_begin(&m, f.id, NBD_CMD_CONNECT, NBD_GENL_VERSION);
  if (opts->index >= 0)
    sn_nl_put_u32(&m, NBD_ATTR_INDEX, (uint32_t) opts->index);
  sn_nl_put_u64(&m, NBD_ATTR_SIZE_BYTES, size);
  sn_nl_put_u64(&m, NBD_ATTR_BLOCK_SIZE_BYTES, bs);
  if (opts->io_timeout)
    sn_nl_put_u64(&m, NBD_ATTR_TIMEOUT, opts->io_timeout);
  if (opts->dead_conn_timeout)
    sn_nl_put_u64(&m, NBD_ATTR_DEAD_CONN_TIMEOUT, opts->dead_conn_timeout);
  sn_nl_put_u64(&m, NBD_ATTR_SERVER_FLAGS, sflags);
  put_socket(&m, fd);
  if (sn_nl_transact(nl, &m, connect_cb, &index) == -1) {
    int e = errno;

    close(fd);
    close(nl);
    return nl_error("CONNECT", opts->index, e);
  }
  close(fd);                    /* the device holds its own reference */
  close(nl);
  if (index < 0)
    return sn_set_error("nbd CONNECT: the kernel did not say which device");
  /* The netlink connect sets the capacity before it answers; wait anyway,
   * it costs nothing and the contract is "mountable on return". */
  if (size >= 512) {
    int waited = 0;

    while (sys_size(index) <= 0) {
      if (waited >= SIZE_WAIT_MS) {
        sn_nbd_detach(index);
        return sn_set_error("/dev/nbd%d: no size after %d s", index,
                            SIZE_WAIT_MS / 1000);
      }
      sleep_ms(10);
      waited += 10;
    }
  }
  return index;
}

/* The export's size is checked against /sys/block/nbdN/size before
 * NBD_CMD_RECONFIGURE. */
int
sn_nbd_reconnect(int index, const struct sn_nbd_server *srv)
{
  struct family f;
  struct nlmsg m;
  uint64_t size;
  uint16_t flags;
  long long sectors;
  int nl, fd;

  sectors = sys_size(index);
  if (sectors < 0)
    return sn_set_error("/dev/nbd%d: no such device", index);
  nl = nbd_netlink(&f);
  if (nl == -1)
    return -1;
  fd = sn_nbd_connect(srv, &size, &flags);
  if (fd == -1) {
    close(nl);
    return -1;
  }
  if ((long long) (size >> 9) != sectors) {
    char where[300];

    sn_nbd_describe(srv, where, sizeof where);
    close(fd);
    close(nl);
    return sn_set_error("/dev/nbd%d: the export on %s now has %" PRIu64
                        " bytes, the device %lld", index, where, size,
                        sectors * 512);
  }
  sn_nl_begin(&m, f.id, NBD_CMD_RECONFIGURE, NBD_GENL_VERSION);
  sn_nl_put_u32(&m, NBD_ATTR_INDEX, (uint32_t) index);
  put_socket(&m, fd);
  if (sn_nl_transact(nl, &m, NULL, NULL) == -1) {
    int e = errno;

    close(fd);
    close(nl);
    return nl_error("RECONFIGURE", index, e);
  }
  close(fd);
  close(nl);
  return 0;
}

struct status {
  int index;
  int connected;
};

/* sn_nl_transact's callback for STATUS: whether device s->index is in the
 * answer's device list as connected. */
static void
status_cb(const struct nlmsghdr *h, void *arg)
{
  struct status *s = arg;
  size_t len;
  const void *p = sn_nl_genl_attrs(h, &len);

  FOR_ATTRS(a, p, len) {
    if (ATTR_TYPE(a) != NBD_ATTR_DEVICE_LIST)
      continue;
    FOR_ATTRS(item, ATTR_DATA(a), ATTR_LEN(a)) {
      int idx = -1, conn = 0;

      if (ATTR_TYPE(item) != NBD_DEVICE_ITEM)
        continue;
      FOR_ATTRS(x, ATTR_DATA(item), ATTR_LEN(item)) {
        if (ATTR_TYPE(x) == NBD_DEVICE_INDEX)
          idx = (int) sn_nl_attr_u32(x);
        if (ATTR_TYPE(x) == NBD_DEVICE_CONNECTED && ATTR_LEN(x) >= 1)
          conn = ATTR_DATA(x)[0] != 0;
      }
      if (idx == s->index)
        s->connected = conn;
    }
  }
}

/* NBD_CMD_STATUS for one device; an index the kernel does not list is 0. */
int
sn_nbd_connected(int index)
{
  struct family f;
  struct nlmsg m;
  struct status s = { .index = index, .connected = 0 };
  int nl;

  if (index < 0)
    return sn_set_error("nbd device index %d", index);
  nl = nbd_netlink(&f);
  if (nl == -1)
    return -1;
  sn_nl_begin(&m, f.id, NBD_CMD_STATUS, NBD_GENL_VERSION);
  sn_nl_put_u32(&m, NBD_ATTR_INDEX, (uint32_t) index);
  if (sn_nl_transact(nl, &m, status_cb, &s) == -1) {
    int e = errno;

    close(nl);
    return nl_error("STATUS", index, e);
  }
  close(nl);
  return s.connected;
}

/* NBD_CMD_DISCONNECT, only when sn_nbd_connected says 1. */
int
sn_nbd_detach(int index)
{
  struct family f;
  struct nlmsg m;
  int nl, c;

  if (sys_size(index) < 0)
    return sn_set_error("/dev/nbd%d: no such device", index);
  c = sn_nbd_connected(index);
  if (c <= 0)
    return c;
  nl = nbd_netlink(&f);
  if (nl == -1)
    return -1;
  sn_nl_begin(&m, f.id, NBD_CMD_DISCONNECT, NBD_GENL_VERSION);
  sn_nl_put_u32(&m, NBD_ATTR_INDEX, (uint32_t) index);
  if (sn_nl_transact(nl, &m, NULL, NULL) == -1) {
    int e = errno;

    close(nl);
    return nl_error("DISCONNECT", index, e);
  }
  close(nl);
  return 0;
}

/* ---- supervision ------------------------------------------------------------ */

/* The monotonic clock in milliseconds (retry and status timing). */
static int64_t
now_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct watched {
  bool active;                  /* still connected: supervised */
  bool dead;                    /* link dead: reconnecting */
  bool probe;                   /* the first, silent reconnect (below) */
  int64_t dead_since, next_try;
  unsigned tries;
  char last_error[256];
};

/* Handle one multicast message: for NBD_CMD_LINK_DEAD, mark the watched
 * device with that index dead (reconnect from now), unless it is already
 * being reconnected after an earlier event. */
static void
on_link_dead(const struct nlmsghdr *h, uint16_t family, const int *indexes,
             const struct sn_nbd_server *srvs, struct watched *w, size_t n)
{
  const struct genlmsghdr *g = NLMSG_DATA(h);
  size_t len;
  const void *p;
  int idx = -1;

  if (h->nlmsg_type != family || h->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN)
      || g->cmd != NBD_CMD_LINK_DEAD)
    return;
  p = sn_nl_genl_attrs(h, &len);
  FOR_ATTRS(a, p, len)
    if (ATTR_TYPE(a) == NBD_ATTR_INDEX)
      idx = (int) sn_nl_attr_u32(a);
  for (size_t i = 0; i < n; i++) {
    char where[300];

    if (indexes[i] != idx || !w[i].active || (w[i].dead && !w[i].probe))
      continue;
    sn_nbd_describe(&srvs[i], where, sizeof where);
    fprintf(stderr, "nbd%d: connection to %s lost; reconnecting\n", idx,
            where);
    w[i].dead = true;
    w[i].probe = false;
    w[i].dead_since = w[i].next_try = now_ms();
    w[i].tries = 0;
    w[i].last_error[0] = '\0';
  }
}

/* Opens a generic-netlink socket joined to the nbd driver's multicast
 * group, for its link-dead events: the socket, or -1 with the error set. */
static int
join_link_events(struct family *f)
{
  int mc = nbd_netlink(f);

  if (mc == -1)
    return -1;
  if (f->mcgrp == 0) {
    close(mc);
    return sn_set_error("the nbd driver has no multicast group '%s'",
                        NBD_GENL_MCAST_GROUP_NAME);
  }
  if (setsockopt(mc, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &f->mcgrp,
                 sizeof f->mcgrp) == -1) {
    int e = errno;

    close(mc);
    return sn_set_error("netlink: joining the nbd multicast group: %s",
                        strerror(e));
  }
  return mc;
}

/* Devices disconnected (detached and closed) leave supervision: 0, or -1
 * when the status query fails. */
static int
drop_disconnected(const int *indexes, struct watched *w, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    int c;

    if (!w[i].active)
      continue;
    c = sn_nbd_connected(indexes[i]);
    if (c == -1)
      return -1;
    if (c == 0) {
      fprintf(stderr, "nbd%d: disconnected; no longer supervised\n",
              indexes[i]);
      w[i].active = false;
    }
  }
  return 0;
}

/* Reconnects the dead devices whose retry is due, logging a success (but
 * not the silent first probe) and each change of the failure message. */
static void
reconnect_due(const int *indexes, const struct sn_nbd_server *srvs,
              struct watched *w, size_t n, unsigned retry_ms)
{
  for (size_t i = 0; i < n; i++) {
    char where[300];

    if (!w[i].active || !w[i].dead || now_ms() < w[i].next_try)
      continue;
    sn_nbd_describe(&srvs[i], where, sizeof where);
    w[i].tries++;
    if (sn_nbd_reconnect(indexes[i], &srvs[i]) == 0) {
      if (w[i].probe) {
        w[i].probe = w[i].dead = false;
        continue;
      }
      fprintf(stderr, "nbd%d: reconnected to %s after %.1f s (%u %s)\n",
              indexes[i], where,
              (double) (now_ms() - w[i].dead_since) / 1000.0, w[i].tries,
              w[i].tries == 1 ? "attempt" : "attempts");
      w[i].dead = false;
      continue;
    }
    if (strcmp(w[i].last_error, sn_error()) != 0) {
      snprintf(w[i].last_error, sizeof w[i].last_error, "%s", sn_error());
      fprintf(stderr, "nbd%d: reconnecting: %s (retrying every %u ms)\n",
              indexes[i], w[i].last_error, retry_ms);
    }
    w[i].next_try = now_ms() + retry_ms;
  }
}

/* Reads every pending netlink message on mc into *in and handles its
 * link-dead events; lost events (ENOBUFS) mark every live device dead. */
static void
drain_link_events(int mc, struct nlmsg *in, uint16_t family,
                  const int *indexes, const struct sn_nbd_server *srvs,
                  struct watched *w, size_t n)
{
  for (;;) {
    ssize_t len = recv(mc, in, sizeof *in, MSG_DONTWAIT);
    const struct nlmsghdr *h;
    size_t left;

    if (len == -1) {
      if (errno == ENOBUFS) {
        /* Events were lost: treat every device as possibly dead.  A
         * reconnect of a live device is harmless (the kernel drops the
         * socket it cannot place). */
        fprintf(stderr, "nbd: netlink events lost; reconnecting all "
                "devices to be sure\n");
        for (size_t i = 0; i < n; i++)
          if (w[i].active && !w[i].dead) {
            w[i].dead = true;
            w[i].dead_since = w[i].next_try = now_ms();
            w[i].tries = 0;
            w[i].last_error[0] = '\0';
          }
        continue;
      }
      if (errno == EINTR)
        continue;
      break;                    /* EAGAIN: all read */
    }
    left = (size_t) len;
    for (h = &in->u.hdr; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left))
      on_link_dead(h, family, indexes, srvs, w, n);
  }
}

/* One loop: a status check every second (drop_disconnected), due reconnects
 * (reconnect_due), then poll the multicast socket up to the next deadline. */
int
sn_nbd_supervise(const int *indexes, const struct sn_nbd_server *srvs,
                 size_t n, unsigned retry_ms, volatile bool *stop)
{
  struct family f;
  struct watched *w;
  struct nlmsg *in = NULL;
  int64_t next_status = 0;
  int mc, r = -1;

  if (retry_ms == 0)
    retry_ms = 1000;
  mc = join_link_events(&f);
  if (mc == -1)
    return -1;
  w = calloc(n ? n : 1, sizeof *w);
  in = malloc(sizeof *in);
  if (w == NULL || in == NULL) {
    sn_oom();
    goto out;
  }
  /* A link that died before we joined the multicast group sent its
   * LINK_DEAD to nobody.  So begin with one reconnect of every device: it
   * revives a dead link, and the kernel drops the socket of a live one. */
  for (size_t i = 0; i < n; i++) {
    w[i].active = w[i].dead = w[i].probe = true;
    w[i].dead_since = w[i].next_try = now_ms();
  }

  for (;;) {
    int64_t t = now_ms(), wake;
    size_t nactive = 0;
    struct pollfd p = { .fd = mc, .events = POLLIN };
    int pr;

    if (stop && *stop) {
      r = 0;
      goto out;
    }
    if (t >= next_status) {
      if (drop_disconnected(indexes, w, n) == -1)
        goto out;
      next_status = t + 1000;
    }
    for (size_t i = 0; i < n; i++)
      nactive += w[i].active;
    if (nactive == 0) {
      r = 0;
      goto out;
    }
    reconnect_due(indexes, srvs, w, n, retry_ms);
    /* Sleep until an event, the next retry or status check, at most 1 s. */
    wake = next_status;
    for (size_t i = 0; i < n; i++)
      if (w[i].active && w[i].dead && w[i].next_try < wake)
        wake = w[i].next_try;
    t = now_ms();
    pr = poll(&p, 1, wake <= t ? 0 : (int) (wake - t > 1000 ? 1000
                                                              : wake - t));
    if (pr == -1 && errno != EINTR) {
      sn_set_error("poll: %s", strerror(errno));
      goto out;
    }
    if (pr <= 0)
      continue;
    drain_link_events(mc, in, f.id, indexes, srvs, w, n);
  }
out:
  free(in);
  free(w);
  close(mc);
  return r;
}
