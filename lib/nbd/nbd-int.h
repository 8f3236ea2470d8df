/* soci-nbd: internal to lib/nbd/ — what nbddev.c (the driver's commands
 * and supervision) shares with nbd-handshake.c (the NBD handshake) and
 * netlink.c (generic netlink).  Not an interface: see nbddev.h for that.
 * Errors follow lib/util/err.h unless a function says otherwise.
 */
#ifndef SN_NBD_INT_H
#define SN_NBD_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/genetlink.h>
#include <linux/netlink.h>

#include "nbd/nbddev.h"

/* ---- the NBD handshake (nbd-handshake.c) -------------------------------- */

/* "unix:/run/x.sock" or "host:port" for srv, into buf, for messages. */
void sn_nbd_describe(const struct sn_nbd_server *srv, char *buf, size_t len);

/* ---- TLS (nbd-tls.c) ------------------------------------------------------ */

/* A client TLS session over a connected socket. */
struct sn_nbd_tls;

/* TLS on fd, once the server has acknowledged NBD_OPT_STARTTLS, with
 * srv->tls_psk.  NULL with a message ("TLS handshake failed (is the key
 * for identity 'x' the server's?)").  fd stays the caller's. */
struct sn_nbd_tls *sn_nbd_tls_start(int fd, const struct sn_nbd_server *srv,
                                    const char *where);

/* Like recv and send (fd's timeouts bound them); -1 with errno, EPROTO
 * for a TLS error. */
ssize_t sn_nbd_tls_read(struct sn_nbd_tls *t, void *buf, size_t len);
ssize_t sn_nbd_tls_write(struct sn_nbd_tls *t, const void *buf, size_t len);

/* After the negotiation: start the carrier process and return the plain
 * end of its socketpair, for the kernel.  Takes t and its socket (both
 * closed here, also on error); -1 with a message. */
int sn_nbd_tls_carry(struct sn_nbd_tls *t, const char *where);

/* Free t without closing its socket (NULL is fine). */
void sn_nbd_tls_free(struct sn_nbd_tls *t);

/* ---- generic netlink (netlink.c) ---------------------------------------- */

#define NLBUF 8192

/* One netlink message, request or answer. */
struct nlmsg {
  union {
    struct nlmsghdr hdr;
    char buf[NLBUF];
  } u;
};

/* The nbd generic-netlink family: its id, and its multicast group (0 when
 * the driver has none). */
struct family {
  uint16_t id;
  uint32_t mcgrp;
};

/* Called by sn_nl_transact with each answer that is not the
 * acknowledgement. */
typedef void nl_cb(const struct nlmsghdr *, void *);

/* Start request m: family's command cmd, asking for an acknowledgement. */
void sn_nl_begin(struct nlmsg *m, uint16_t family, uint8_t cmd,
                 uint8_t version);

/* Append an attribute (data may be NULL when len is 0); returns its
 * offset, for sn_nl_nest_end.  Running out of room aborts: a bug. */
size_t sn_nl_put(struct nlmsg *m, uint16_t type, const void *data,
                 size_t len);
void sn_nl_put_u32(struct nlmsg *m, uint16_t type, uint32_t v);
void sn_nl_put_u64(struct nlmsg *m, uint16_t type, uint64_t v);

/* Close the nest whose attribute sn_nl_put put at off. */
void sn_nl_nest_end(struct nlmsg *m, size_t off);

/* Attributes in [p, p + len): the next valid one after a (the first when a
 * is NULL); NULL at the end.  Use FOR_ATTRS. */
const struct nlattr *sn_nl_attr_next(const void *p, size_t len,
                                     const struct nlattr *a);

#define ATTR_TYPE(a) ((a)->nla_type & NLA_TYPE_MASK)
#define ATTR_DATA(a) ((const char *) (a) + NLA_HDRLEN)
#define ATTR_LEN(a) ((size_t) (a)->nla_len - NLA_HDRLEN)
#define FOR_ATTRS(a, p, len) \
  for (const struct nlattr *a = sn_nl_attr_next((p), (len), NULL); a; \
       a = sn_nl_attr_next((p), (len), a))

/* Attribute a as a u32; 0 when it is shorter. */
uint32_t sn_nl_attr_u32(const struct nlattr *a);

/* A bound NETLINK_GENERIC socket (the caller closes it); -1 with a
 * message. */
int sn_nl_open(void);

/* Send m and read the answers up to the acknowledgement, passing each
 * other message of ours to cb (may be NULL).  0, or -1 with errno set to
 * the kernel's error (no message set: callers know what failed). */
int sn_nl_transact(int fd, struct nlmsg *m, nl_cb *cb, void *arg);

/* The genl attributes of message h and their length in *len (NULL, 0 for
 * a message too short). */
const void *sn_nl_genl_attrs(const struct nlmsghdr *h, size_t *len);

/* The nbd family's id and multicast group on netlink socket fd.  -1 with
 * errno (ENOENT: no nbd driver) and no message. */
int sn_nl_resolve_family(int fd, struct family *f);

#endif
