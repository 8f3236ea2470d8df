/* soci-nbd: attach NBD exports to kernel /dev/nbdN devices over the nbd
 * driver's generic-netlink interface, and keep them attached across server
 * restarts.
 *
 * Why not nbd-client: nbd-client 3.24's -persist does not bring a device
 * back on current kernels (with the ioctl interface the kernel clears the
 * device when the connection drops; in netlink mode nbd-client never
 * reconnects).  The netlink interface does support it: a device connected
 * with a dead-connection timeout holds its requests when the socket dies,
 * multicasts NBD_CMD_LINK_DEAD, and takes a fresh, already negotiated
 * socket with NBD_CMD_RECONFIGURE.  This module does the NBD handshake
 * itself (fixed newstyle, NBD_OPT_GO, no structured replies: the kernel
 * speaks simple replies only) and those netlink commands.
 *
 * Errors follow lib/util/err.h: -1 and a one-line message.  When the nbd driver
 * is missing the message says so ("the kernel has no nbd driver (modprobe
 * nbd failed ...)").  Needs CAP_SYS_ADMIN for the netlink commands.
 */
#ifndef SN_NBDDEV_H
#define SN_NBDDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A pre-shared key for TLS on NBD links, held in memory (a supervisor of a
 * root device must not open files once the root has switched). */
struct sn_nbd_psk;

/* The entry for identity (NULL: the first) of a key file of IDENTITY:HEXKEY
 * lines, as nbdkit --tls-psk reads it; the file must be private to its
 * owner.  NULL with a message. */
struct sn_nbd_psk *sn_nbd_psk_load(const char *file, const char *identity);
void sn_nbd_psk_free(struct sn_nbd_psk *psk);   /* wipes the key */

/* Where an export is: a Unix socket, or host + port (TCP).  Exactly one of
 * unix_path and host is set.  export_name may be "" (the default export).
 * With tls_psk, the link is TLS with that pre-shared key
 * (NBD_OPT_STARTTLS); the kernel then gets a socket to a carrier process
 * of its own (nbd-tls.c).  With TLS the caller must ignore SIGPIPE:
 * OpenSSL writes to the socket without MSG_NOSIGNAL. */
struct sn_nbd_server {
  const char *unix_path;
  const char *host;
  const char *port;            /* NULL = "10809" */
  const char *export_name;
  const struct sn_nbd_psk *tls_psk;    /* NULL = plain NBD */
};

/* Connect and negotiate.  Returns a socket in the transmission phase (the
 * caller owns it) and sets *size and *flags (NBD transmission flags);
 * -1 on error ("export 'x' not found on unix:/run/..."). */
int sn_nbd_connect(const struct sn_nbd_server *srv,
                   uint64_t *size, uint16_t *flags);

/* Try to load the nbd driver (modprobe nbd, once) and check that its
 * netlink family exists.  0 = available, -1 with a message otherwise. */
int sn_nbd_driver_available(void);

struct sn_nbd_attach_opts {
  int index;                   /* < 0: the kernel picks a free device */
  uint32_t block_size;         /* 0 = 4096 */
  unsigned dead_conn_timeout;  /* seconds requests wait for a reconnect;
                                  0 = fail them at once */
  unsigned io_timeout;         /* seconds per request; 0 = kernel default */
  bool read_only;
};

/* Connect to srv and attach the export to a device.  Returns the device
 * index (N of /dev/nbdN); -1 on error.  Waits until the block device has
 * its size (so it can be mounted as soon as this returns).  read_only adds
 * NBD_FLAG_READ_ONLY to the server's flags (the device becomes ro).  The
 * device is not destroyed on disconnect: /sys/block/nbdN stays, size 0.
 * Requests sent before the connection died are only requeued when their
 * io_timeout expires (with io_timeout 0, after the block layer's 30 s
 * default); set io_timeout when reconnection matters. */
int sn_nbd_attach(const struct sn_nbd_server *srv,
                  const struct sn_nbd_attach_opts *opts);

/* Give device index a freshly negotiated connection to srv
 * (NBD_CMD_RECONFIGURE).  The export must have the same size.  The kernel
 * puts the socket in the place of the device's dead one; when none is dead
 * (no NBD_CMD_LINK_DEAD yet) it drops the socket and still reports
 * success, so call this after a link-dead event (as sn_nbd_supervise
 * does). */
int sn_nbd_reconnect(int index, const struct sn_nbd_server *srv);

/* Disconnect device index (NBD_CMD_DISCONNECT); 0 also when it was not
 * connected, -1 when there is no such device.  A mounted device keeps its
 * size until the last close. */
int sn_nbd_detach(int index);

/* 1 = device index is connected (configured: also while its link is dead
 * and, after a disconnect, until its last close), 0 = not, -1 = error. */
int sn_nbd_connected(int index);

/* Read sysfs (/sys/block/nbdN) through a descriptor of /sys opened now,
 * for the rest of the process's life: it keeps working when /sys is moved
 * (an initramfs moves it into the new root and deletes its own files, and
 * a supervisor of the root device must never touch the root filesystem it
 * keeps alive).  0, or -1 (err.h). */
int sn_nbd_pin_sysfs(void);

/* Keep devices attached: listen for link-dead events of the n devices
 * (indexes[i] served by srvs[i]) and, for each dead one, retry
 * sn_nbd_reconnect every retry_ms until it succeeds.  Returns 0 when every
 * device has been disconnected (sn_nbd_detach, and the umount if it was
 * mounted: umount alone does not disconnect) or when *stop becomes true
 * (checked at least every second), -1 on an error that stops supervision.
 * Logs one line per event to stderr (a failing reconnect: when its message
 * changes).  It begins with one silent reconnect of every device, so that
 * a link that died before it joined the multicast group (whose LINK_DEAD
 * nobody heard) is revived too; for a live link the kernel drops the new
 * socket, and the server sees one short connection. */
int sn_nbd_supervise(const int *indexes, const struct sn_nbd_server *srvs,
                     size_t n, unsigned retry_ms, volatile bool *stop);

#endif
