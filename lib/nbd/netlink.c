/* soci-nbd: the generic-netlink half of lib/nbd: building requests to the
 * nbd driver, sending them over a raw NETLINK_GENERIC socket and reading
 * the answers and their attributes, and resolving the nbd family (its id
 * and the multicast group of NBD_CMD_LINK_DEAD).  No libnl: the messages
 * are few and small.  See nbd-int.h.
 */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <linux/netlink.h>

#include "util/err.h"
#include "nbd/nbd-int.h"

/* ---- generic netlink ------------------------------------------------------ */

/* Start request m: family's command cmd, asking for an acknowledgement. */
void
sn_nl_begin(struct nlmsg *m, uint16_t family, uint8_t cmd, uint8_t version)
{
  struct genlmsghdr *g;

  memset(&m->u.hdr, 0, NLMSG_HDRLEN + GENL_HDRLEN);
  m->u.hdr.nlmsg_len = NLMSG_HDRLEN + GENL_HDRLEN;
  m->u.hdr.nlmsg_type = family;
  m->u.hdr.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  g = NLMSG_DATA(&m->u.hdr);
  g->cmd = cmd;
  g->version = version;
}

/* Append an attribute; returns its offset (for nests).  The messages here
 * are small and fixed: running out of room is a bug. */
size_t
sn_nl_put(struct nlmsg *m, uint16_t type, const void *data, size_t len)
{
  size_t off = NLMSG_ALIGN(m->u.hdr.nlmsg_len);
  struct nlattr *a = (struct nlattr *) (m->u.buf + off);

  if (off + NLA_HDRLEN + NLA_ALIGN(len) > NLBUF)
    abort();
  a->nla_type = type;
  a->nla_len = (uint16_t) (NLA_HDRLEN + len);
  if (len)
    memcpy(m->u.buf + off + NLA_HDRLEN, data, len);
  memset(m->u.buf + off + NLA_HDRLEN + len, 0, NLA_ALIGN(len) - len);
  m->u.hdr.nlmsg_len = (uint32_t) (off + NLA_HDRLEN + NLA_ALIGN(len));
  return off;
}

void
sn_nl_put_u32(struct nlmsg *m, uint16_t type, uint32_t v)
{
  sn_nl_put(m, type, &v, sizeof v);
}

void
sn_nl_put_u64(struct nlmsg *m, uint16_t type, uint64_t v)
{
  sn_nl_put(m, type, &v, sizeof v);
}

void
sn_nl_nest_end(struct nlmsg *m, size_t off)
{
  struct nlattr *a = (struct nlattr *) (m->u.buf + off);

  a->nla_len = (uint16_t) (m->u.hdr.nlmsg_len - off);
}

/* Attributes in [p, p + len): the next valid one after *a (or the first
 * when *a is NULL); NULL at the end. */
const struct nlattr *
sn_nl_attr_next(const void *p, size_t len, const struct nlattr *a)
{
  const char *start = p, *end = start + len, *q;

  q = a ? (const char *) a + NLA_ALIGN(a->nla_len) : start;
  if (q < start || q + NLA_HDRLEN > end)
    return NULL;
  a = (const struct nlattr *) q;
  if (a->nla_len < NLA_HDRLEN || q + a->nla_len > end)
    return NULL;
  return a;
}

uint32_t
sn_nl_attr_u32(const struct nlattr *a)
{
  uint32_t v = 0;

  if (ATTR_LEN(a) >= 4)
    memcpy(&v, ATTR_DATA(a), 4);
  return v;
}

/* A bound NETLINK_GENERIC socket with a 30 s receive timeout; -1 with a
 * message. */
int
sn_nl_open(void)
{
  struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
  struct timeval tv = { .tv_sec = 30 };
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);

  if (fd == -1)
    return sn_set_error("netlink socket: %s", strerror(errno));
  if (bind(fd, (struct sockaddr *) &sa, sizeof sa) == -1) {
    int e = errno;

    close(fd);
    return sn_set_error("netlink bind: %s", strerror(e));
  }
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

/* Send m and read the answers up to the acknowledgement, passing each
 * other message of ours to cb (may be NULL).  0, or -1 with errno set to
 * the kernel's error (no message set: callers know what failed). */
int
sn_nl_transact(int fd, struct nlmsg *m, nl_cb *cb, void *arg)
{
  static _Thread_local uint32_t seq;
  struct sockaddr_nl k = { .nl_family = AF_NETLINK };
  struct nlmsg *in;
  int r = -1;

  m->u.hdr.nlmsg_seq = ++seq;
  if (sendto(fd, m->u.buf, m->u.hdr.nlmsg_len, 0, (struct sockaddr *) &k,
             sizeof k) == -1)
    return -1;
  in = malloc(sizeof *in * 4);
  if (in == NULL) {
    errno = ENOMEM;
    return -1;
  }
  for (;;) {
    ssize_t n = recv(fd, in, sizeof *in * 4, 0);
    const struct nlmsghdr *h;
    size_t len;

    if (n == -1) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN)
        errno = ETIMEDOUT;
      goto out;
    }
    len = (size_t) n;
    for (h = &in->u.hdr; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != m->u.hdr.nlmsg_seq)
        continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);

        if (h->nlmsg_len < NLMSG_LENGTH(sizeof *e)) {
          errno = EPROTO;
          goto out;
        }
        if (e->error == 0)
          r = 0;
        else
          errno = -e->error;
        goto out;
      }
      if (h->nlmsg_type == NLMSG_DONE) {
        r = 0;
        goto out;
      }
      if (cb)
        cb(h, arg);
    }
  }
out:
  free(in);
  return r;
}

/* The genl attributes of message h. */
const void *
sn_nl_genl_attrs(const struct nlmsghdr *h, size_t *len)
{
  if (h->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN)) {
    *len = 0;
    return NULL;
  }
  *len = h->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);
  return (const char *) NLMSG_DATA(h) + GENL_HDRLEN;
}

/* sn_nl_transact's callback of CTRL_CMD_GETFAMILY: the family id and the
 * nbd multicast group's id into the struct family at arg. */
static void
family_cb(const struct nlmsghdr *h, void *arg)
{
  struct family *f = arg;
  size_t len;
  const void *p = sn_nl_genl_attrs(h, &len);

  FOR_ATTRS(a, p, len) {
    if (ATTR_TYPE(a) == CTRL_ATTR_FAMILY_ID && ATTR_LEN(a) >= 2)
      memcpy(&f->id, ATTR_DATA(a), 2);
    if (ATTR_TYPE(a) != CTRL_ATTR_MCAST_GROUPS)
      continue;
    FOR_ATTRS(g, ATTR_DATA(a), ATTR_LEN(a)) {
      const char *name = NULL;
      uint32_t id = 0;

      FOR_ATTRS(x, ATTR_DATA(g), ATTR_LEN(g)) {
        if (ATTR_TYPE(x) == CTRL_ATTR_MCAST_GRP_NAME && ATTR_LEN(x) > 0
            && ATTR_DATA(x)[ATTR_LEN(x) - 1] == '\0')
          name = ATTR_DATA(x);
        if (ATTR_TYPE(x) == CTRL_ATTR_MCAST_GRP_ID)
          id = sn_nl_attr_u32(x);
      }
      if (name && strcmp(name, NBD_GENL_MCAST_GROUP_NAME) == 0)
        f->mcgrp = id;
    }
  }
}

/* The nbd family's id and multicast group on netlink socket fd.  -1 with
 * errno (ENOENT: no nbd driver) and no message. */
int
sn_nl_resolve_family(int fd, struct family *f)
{
  struct nlmsg m;

  f->id = 0;
  f->mcgrp = 0;
  sn_nl_begin(&m, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1);
  sn_nl_put(&m, CTRL_ATTR_FAMILY_NAME, NBD_GENL_FAMILY_NAME,
            sizeof NBD_GENL_FAMILY_NAME);
  if (sn_nl_transact(fd, &m, family_cb, f) == -1)
    return -1;
  if (f->id == 0) {
    errno = ENOENT;
    return -1;
  }
  return 0;
}

