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
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <linux/netlink.h>

#include "util/err.h"
#include "nbd/nbddev.h"

/* ---- the NBD handshake --------------------------------------------------- */

#define NBD_MAGIC           UINT64_C(0x4e42444d41474943)   /* "NBDMAGIC" */
#define NBD_IHAVEOPT        UINT64_C(0x49484156454f5054)   /* "IHAVEOPT" */
#define NBD_OLDSTYLE_MAGIC  UINT64_C(0x0000420281861253)
#define NBD_REP_MAGIC       UINT64_C(0x0003e889045565a9)

#define NBD_FLAG_FIXED_NEWSTYLE 0x1     /* handshake flags */
#define NBD_FLAG_NO_ZEROES      0x2
#define NBD_TFLAG_READ_ONLY     0x2     /* transmission flags */

#define NBD_OPT_EXPORT_NAME 1
#define NBD_OPT_GO          7
#define NBD_REP_ACK         1
#define NBD_REP_INFO        3
#define NBD_REP_FLAG_ERROR  UINT32_C(0x80000000)
#define NBD_REP_ERR_UNSUP   (NBD_REP_FLAG_ERROR | 1)
#define NBD_INFO_EXPORT     0

#define NBD_MAX_NAME        4096        /* the protocol's limit */
#define MAX_OPT_REPLY       65536       /* more is not a sane server */
#define IO_TIMEOUT_S        10          /* connect and each handshake read */
#define SIZE_WAIT_MS        10000       /* attach: for the device's size */

/* "unix:/run/x.sock" or "host:port", for messages. */
static void
describe(const struct sn_nbd_server *srv, char *buf, size_t len)
{
  const char *port = srv->port ? srv->port : "10809";

  if (srv->unix_path)
    snprintf(buf, len, "unix:%s", srv->unix_path);
  else if (srv->host && strchr(srv->host, ':'))
    snprintf(buf, len, "[%s]:%s", srv->host, port);
  else
    snprintf(buf, len, "%s:%s", srv->host ? srv->host : "?", port);
}

static void
set_timeouts(int fd, int seconds)
{
  struct timeval tv = { .tv_sec = seconds };

  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* connect() bounded by IO_TIMEOUT_S; returns 0 or -1 with errno. */
static int
connect_timeout(int fd, const struct sockaddr *sa, socklen_t salen)
{
  int fl = fcntl(fd, F_GETFL), err = 0, r;
  socklen_t elen = sizeof err;
  struct pollfd p = { .fd = fd, .events = POLLOUT };

  if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
    return -1;
  r = connect(fd, sa, salen);
  if (r == -1 && (errno == EINPROGRESS || errno == EAGAIN)) {
    do
      r = poll(&p, 1, IO_TIMEOUT_S * 1000);
    while (r == -1 && errno == EINTR);
    if (r == 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    if (r == -1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1)
      return -1;
    if (err) {
      errno = err;
      return -1;
    }
    r = 0;
  }
  if (r == -1)
    return -1;
  return fcntl(fd, F_SETFL, fl);
}

static int
open_socket(const struct sn_nbd_server *srv, const char *where)
{
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
  int fd = -1, r, one = 1, err = 0;

  if ((srv->unix_path != NULL) == (srv->host != NULL))
    return sn_set_error("NBD server: give either a Unix socket or a host");
  if (srv->unix_path) {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    if (strlen(srv->unix_path) >= sizeof sa.sun_path)
      return sn_set_error("%s: socket path too long", where);
    strcpy(sa.sun_path, srv->unix_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
      return sn_set_error("socket: %s", strerror(errno));
    if (connect_timeout(fd, (struct sockaddr *) &sa, sizeof sa) == -1) {
      err = errno;
      close(fd);
      return sn_set_error("%s: connect: %s", where, strerror(err));
    }
    return fd;
  }
  r = getaddrinfo(srv->host, srv->port ? srv->port : "10809", &hints, &res);
  if (r != 0)
    return sn_set_error("%s: %s", where,
                        r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
  for (ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd == -1) {
      err = errno;
      continue;
    }
    if (connect_timeout(fd, ai->ai_addr, ai->ai_addrlen) == 0)
      break;
    err = errno;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd == -1)
    return sn_set_error("%s: connect: %s", where, strerror(err));
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/* The handshake's reads and writes: whole, bounded by the socket
 * timeouts, with a message naming the server and what was read. */
struct hs {
  int fd;
  const char *where;
};

static int
hs_read(struct hs *h, void *buf, size_t len, const char *what)
{
  char *p = buf;

  while (len > 0) {
    ssize_t r = recv(h->fd, p, len, 0);

    if (r == 0)
      return sn_set_error("%s: the server closed the connection during the "
                          "NBD handshake (reading %s)", h->where, what);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return sn_set_error("%s: NBD handshake: no %s within %d s",
                            h->where, what, IO_TIMEOUT_S);
      return sn_set_error("%s: NBD handshake: reading %s: %s", h->where,
                          what, strerror(errno));
    }
    p += r;
    len -= (size_t) r;
  }
  return 0;
}

static int
hs_write(struct hs *h, const void *buf, size_t len)
{
  const char *p = buf;

  while (len > 0) {
    ssize_t r = send(h->fd, p, len, MSG_NOSIGNAL);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        errno = ETIMEDOUT;
      return sn_set_error("%s: NBD handshake: write: %s", h->where,
                          strerror(errno));
    }
    p += r;
    len -= (size_t) r;
  }
  return 0;
}

static uint16_t
get16(const unsigned char *p)
{
  return (uint16_t) (p[0] << 8 | p[1]);
}

static uint32_t
get32(const unsigned char *p)
{
  return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8
    | p[3];
}

static uint64_t
get64(const unsigned char *p)
{
  return (uint64_t) get32(p) << 32 | get32(p + 4);
}

static unsigned char *
put16(unsigned char *p, uint16_t v)
{
  p[0] = (unsigned char) (v >> 8);
  p[1] = (unsigned char) v;
  return p + 2;
}

static unsigned char *
put32(unsigned char *p, uint32_t v)
{
  put16(p, (uint16_t) (v >> 16));
  put16(p + 2, (uint16_t) v);
  return p + 4;
}

static unsigned char *
put64(unsigned char *p, uint64_t v)
{
  put32(p, (uint32_t) (v >> 32));
  put32(p + 4, (uint32_t) v);
  return p + 8;
}

/* Send option opt with data (len bytes). */
static int
send_option(struct hs *h, uint32_t opt, const void *data, uint32_t len)
{
  unsigned char hdr[16], *p = hdr;

  p = put64(p, NBD_IHAVEOPT);
  p = put32(p, opt);
  put32(p, len);
  if (hs_write(h, hdr, sizeof hdr) == -1)
    return -1;
  return len ? hs_write(h, data, len) : 0;
}

static const char *
rep_error_name(uint32_t type)
{
  switch (type & ~NBD_REP_FLAG_ERROR) {
  case 1: return "option not supported";
  case 2: return "refused by the server's policy";
  case 3: return "invalid request";
  case 4: return "not supported on the server's platform";
  case 5: return "the server requires TLS (not supported here)";
  case 6: return "not found";
  case 7: return "the server is shutting down";
  case 8: return "the server requires block size negotiation";
  case 9: return "request too big";
  default: return NULL;
  }
}

/* NBD_OPT_GO for name: 0 and *size, *flags on success, 1 when the server
 * does not know NBD_OPT_GO, -1 on error. */
static int
opt_go(struct hs *h, const char *name, uint64_t *size, uint16_t *flags)
{
  size_t nlen = strlen(name);
  unsigned char *req, *p, rep[20], *data = NULL;
  bool have_export = false;
  int r = -1;

  req = malloc(nlen + 8);
  if (req == NULL)
    return sn_oom();
  p = put32(req, (uint32_t) nlen);
  memcpy(p, name, nlen);
  p += nlen;
  p = put16(p, 1);                      /* one information request: */
  p = put16(p, NBD_INFO_EXPORT);        /* (sent anyway, per the spec) */
  if (send_option(h, NBD_OPT_GO, req, (uint32_t) (p - req)) == -1)
    goto out;
  for (;;) {
    uint32_t opt, type, len;

    if (hs_read(h, rep, sizeof rep, "the reply to NBD_OPT_GO") == -1)
      goto out;
    if (get64(rep) != NBD_REP_MAGIC) {
      sn_set_error("%s: not an NBD server (bad option reply magic)",
                   h->where);
      goto out;
    }
    opt = get32(rep + 8);
    type = get32(rep + 12);
    len = get32(rep + 16);
    if (opt != NBD_OPT_GO) {
      sn_set_error("%s: NBD handshake: reply to option %" PRIu32
                   " instead of NBD_OPT_GO", h->where, opt);
      goto out;
    }
    if (len > MAX_OPT_REPLY) {
      sn_set_error("%s: NBD handshake: option reply of %" PRIu32 " bytes",
                   h->where, len);
      goto out;
    }
    free(data);
    data = malloc(len + 1);
    if (data == NULL) {
      sn_oom();
      goto out;
    }
    if (hs_read(h, data, len, "the reply to NBD_OPT_GO") == -1)
      goto out;
    data[len] = '\0';
    if (type == NBD_REP_INFO) {
      if (len >= 2 && get16(data) == NBD_INFO_EXPORT) {
        if (len != 12) {
          sn_set_error("%s: NBD handshake: NBD_INFO_EXPORT of %" PRIu32
                       " bytes", h->where, len);
          goto out;
        }
        *size = get64(data + 2);
        *flags = get16(data + 10);
        have_export = true;
      }
      continue;                         /* other information: ignored */
    }
    if (type == NBD_REP_ACK) {
      if (!have_export) {
        sn_set_error("%s: NBD handshake: the server accepted export '%s' "
                     "without telling its size", h->where, name);
        goto out;
      }
      r = 0;
      goto out;
    }
    if (type == NBD_REP_ERR_UNSUP) {
      r = 1;
      goto out;
    }
    if (type & NBD_REP_FLAG_ERROR) {
      const char *what = rep_error_name(type);
      char code[32];

      while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == ' '))
        data[--len] = '\0';            /* the message's line end */
      if (what == NULL) {
        snprintf(code, sizeof code, "error %#" PRIx32, type);
        what = code;
      }
      if ((type & ~NBD_REP_FLAG_ERROR) == 6)
        sn_set_error("export '%s' not found on %s%s%.200s", name, h->where,
                     len ? ": " : "", (char *) data);
      else
        sn_set_error("%s: export '%s': %s%s%.200s", h->where, name, what,
                     len ? ": " : "", (char *) data);
      goto out;
    }
    sn_set_error("%s: NBD handshake: unexpected reply type %#" PRIx32
                 " to NBD_OPT_GO", h->where, type);
    goto out;
  }
out:
  free(req);
  free(data);
  return r;
}

/* NBD_OPT_EXPORT_NAME, the old way: the server closes the connection when
 * it does not have the export. */
static int
opt_export_name(struct hs *h, const char *name, bool no_zeroes,
                uint64_t *size, uint16_t *flags)
{
  unsigned char rep[10 + 124];

  if (send_option(h, NBD_OPT_EXPORT_NAME, name, (uint32_t) strlen(name)))
    return -1;
  if (recv(h->fd, rep, 1, MSG_PEEK) == 0)
    return sn_set_error("export '%s' not found on %s (the server closed "
                        "the connection)", name, h->where);
  if (hs_read(h, rep, no_zeroes ? 10 : sizeof rep,
              "the reply to NBD_OPT_EXPORT_NAME") == -1)
    return -1;
  *size = get64(rep);
  *flags = get16(rep + 8);
  return 0;
}

int
sn_nbd_connect(const struct sn_nbd_server *srv, uint64_t *size,
               uint16_t *flags)
{
  char where[300];
  const char *name = srv->export_name ? srv->export_name : "";
  unsigned char hello[18], cf[4];
  struct hs h;
  uint64_t magic;
  uint16_t gflags;
  uint32_t cflags = 0;
  int fd, r;

  describe(srv, where, sizeof where);
  if (strlen(name) > NBD_MAX_NAME)
    return sn_set_error("%s: export name longer than %d bytes", where,
                        NBD_MAX_NAME);
  fd = open_socket(srv, where);
  if (fd == -1)
    return -1;
  set_timeouts(fd, IO_TIMEOUT_S);
  h.fd = fd;
  h.where = where;
  if (hs_read(&h, hello, sizeof hello, "the greeting") == -1)
    goto fail;
  magic = get64(hello + 8);
  if (get64(hello) != NBD_MAGIC) {
    sn_set_error("%s: not an NBD server (bad greeting)", where);
    goto fail;
  }
  if (magic == NBD_OLDSTYLE_MAGIC) {
    sn_set_error("%s: oldstyle NBD server (not supported)", where);
    goto fail;
  }
  if (magic != NBD_IHAVEOPT) {
    sn_set_error("%s: not an NBD server (bad newstyle magic)", where);
    goto fail;
  }
  gflags = get16(hello + 16);
  cflags = gflags & (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  put32(cf, cflags);
  if (hs_write(&h, cf, sizeof cf) == -1)
    goto fail;
  /* Without fixed newstyle the server may drop us on an unknown option:
   * only NBD_OPT_EXPORT_NAME is safe. */
  r = 1;
  if (cflags & NBD_FLAG_FIXED_NEWSTYLE)
    r = opt_go(&h, name, size, flags);
  if (r == 1)
    r = opt_export_name(&h, name, cflags & NBD_FLAG_NO_ZEROES, size, flags);
  if (r == -1)
    goto fail;
  /* The kernel owns the socket from now on: no timeouts of ours, or its
   * receive worker would take an idle minute for a dead server. */
  set_timeouts(fd, 0);
  return fd;

fail:
  close(fd);
  return -1;
}

/* ---- generic netlink ------------------------------------------------------ */

#define NLBUF 8192

struct nlmsg {
  union {
    struct nlmsghdr hdr;
    char buf[NLBUF];
  } u;
};

static void
nl_begin(struct nlmsg *m, uint16_t family, uint8_t cmd, uint8_t version)
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
static size_t
nl_put(struct nlmsg *m, uint16_t type, const void *data, size_t len)
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

static void
nl_put_u32(struct nlmsg *m, uint16_t type, uint32_t v)
{
  nl_put(m, type, &v, sizeof v);
}

static void
nl_put_u64(struct nlmsg *m, uint16_t type, uint64_t v)
{
  nl_put(m, type, &v, sizeof v);
}

static void
nl_nest_end(struct nlmsg *m, size_t off)
{
  struct nlattr *a = (struct nlattr *) (m->u.buf + off);

  a->nla_len = (uint16_t) (m->u.hdr.nlmsg_len - off);
}

/* Attributes in [p, p + len): the next valid one after *a (or the first
 * when *a is NULL); NULL at the end. */
static const struct nlattr *
attr_next(const void *p, size_t len, const struct nlattr *a)
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

#define ATTR_TYPE(a) ((a)->nla_type & NLA_TYPE_MASK)
#define ATTR_DATA(a) ((const char *) (a) + NLA_HDRLEN)
#define ATTR_LEN(a) ((size_t) (a)->nla_len - NLA_HDRLEN)
#define FOR_ATTRS(a, p, len) \
  for (const struct nlattr *a = attr_next((p), (len), NULL); a; \
       a = attr_next((p), (len), a))

static uint32_t
attr_u32(const struct nlattr *a)
{
  uint32_t v = 0;

  if (ATTR_LEN(a) >= 4)
    memcpy(&v, ATTR_DATA(a), 4);
  return v;
}

static int
nl_open(void)
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
typedef void nl_cb(const struct nlmsghdr *, void *);

static int
nl_transact(int fd, struct nlmsg *m, nl_cb *cb, void *arg)
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
static const void *
genl_attrs(const struct nlmsghdr *h, size_t *len)
{
  if (h->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN)) {
    *len = 0;
    return NULL;
  }
  *len = h->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);
  return (const char *) NLMSG_DATA(h) + GENL_HDRLEN;
}

struct family {
  uint16_t id;
  uint32_t mcgrp;
};

static void
family_cb(const struct nlmsghdr *h, void *arg)
{
  struct family *f = arg;
  size_t len;
  const void *p = genl_attrs(h, &len);

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
          id = attr_u32(x);
      }
      if (name && strcmp(name, NBD_GENL_MCAST_GROUP_NAME) == 0)
        f->mcgrp = id;
    }
  }
}

/* The nbd family's id and multicast group on netlink socket fd.  -1 with
 * errno (ENOENT: no nbd driver) and no message. */
static int
resolve_family(int fd, struct family *f)
{
  struct nlmsg m;

  f->id = 0;
  f->mcgrp = 0;
  nl_begin(&m, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1);
  nl_put(&m, CTRL_ATTR_FAMILY_NAME, NBD_GENL_FAMILY_NAME,
         sizeof NBD_GENL_FAMILY_NAME);
  if (nl_transact(fd, &m, family_cb, f) == -1)
    return -1;
  if (f->id == 0) {
    errno = ENOENT;
    return -1;
  }
  return 0;
}

/* ---- the driver ------------------------------------------------------------- */

static pthread_once_t modprobe_once = PTHREAD_ONCE_INIT;
static char modprobe_result[128];

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
  fd = nl_open();
  if (fd == -1)
    return -1;
  if (resolve_family(fd, f) == -1) {
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

/* /sys/block/nbdN/size in sectors; -1 if unreadable. */
static long long
sys_size(int index)
{
  char path[64];
  long long v = -1;
  FILE *f;

  snprintf(path, sizeof path, "/sys/block/nbd%d/size", index);
  f = fopen(path, "re");
  if (f == NULL)
    return -1;
  if (fscanf(f, "%lld", &v) != 1)
    v = -1;
  fclose(f);
  return v;
}

static void
sleep_ms(unsigned ms)
{
  struct timespec ts = { .tv_sec = ms / 1000,
                         .tv_nsec = (long) (ms % 1000) * 1000000 };

  while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
    ;
}

static void
connect_cb(const struct nlmsghdr *h, void *arg)
{
  int *index = arg;
  size_t len;
  const void *p = genl_attrs(h, &len);

  FOR_ATTRS(a, p, len)
    if (ATTR_TYPE(a) == NBD_ATTR_INDEX)
      *index = (int) attr_u32(a);
}

/* Put a one-socket NBD_ATTR_SOCKETS list into m. */
static void
put_socket(struct nlmsg *m, int fd)
{
  size_t socks = nl_put(m, NBD_ATTR_SOCKETS, NULL, 0);
  size_t item = nl_put(m, NBD_SOCK_ITEM, NULL, 0);

  nl_put_u32(m, NBD_SOCK_FD, (uint32_t) fd);
  nl_nest_end(m, item);
  nl_nest_end(m, socks);
}

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
  nl_begin(&m, f.id, NBD_CMD_CONNECT, NBD_GENL_VERSION);
  if (opts->index >= 0)
    nl_put_u32(&m, NBD_ATTR_INDEX, (uint32_t) opts->index);
  nl_put_u64(&m, NBD_ATTR_SIZE_BYTES, size);
  nl_put_u64(&m, NBD_ATTR_BLOCK_SIZE_BYTES, bs);
  if (opts->io_timeout)
    nl_put_u64(&m, NBD_ATTR_TIMEOUT, opts->io_timeout);
  if (opts->dead_conn_timeout)
    nl_put_u64(&m, NBD_ATTR_DEAD_CONN_TIMEOUT, opts->dead_conn_timeout);
  nl_put_u64(&m, NBD_ATTR_SERVER_FLAGS, sflags);
  put_socket(&m, fd);
  if (nl_transact(nl, &m, connect_cb, &index) == -1) {
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

    describe(srv, where, sizeof where);
    close(fd);
    close(nl);
    return sn_set_error("/dev/nbd%d: the export on %s now has %" PRIu64
                        " bytes, the device %lld", index, where, size,
                        sectors * 512);
  }
  nl_begin(&m, f.id, NBD_CMD_RECONFIGURE, NBD_GENL_VERSION);
  nl_put_u32(&m, NBD_ATTR_INDEX, (uint32_t) index);
  put_socket(&m, fd);
  if (nl_transact(nl, &m, NULL, NULL) == -1) {
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

static void
status_cb(const struct nlmsghdr *h, void *arg)
{
  struct status *s = arg;
  size_t len;
  const void *p = genl_attrs(h, &len);

  FOR_ATTRS(a, p, len) {
    if (ATTR_TYPE(a) != NBD_ATTR_DEVICE_LIST)
      continue;
    FOR_ATTRS(item, ATTR_DATA(a), ATTR_LEN(a)) {
      int idx = -1, conn = 0;

      if (ATTR_TYPE(item) != NBD_DEVICE_ITEM)
        continue;
      FOR_ATTRS(x, ATTR_DATA(item), ATTR_LEN(item)) {
        if (ATTR_TYPE(x) == NBD_DEVICE_INDEX)
          idx = (int) attr_u32(x);
        if (ATTR_TYPE(x) == NBD_DEVICE_CONNECTED && ATTR_LEN(x) >= 1)
          conn = ATTR_DATA(x)[0] != 0;
      }
      if (idx == s->index)
        s->connected = conn;
    }
  }
}

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
  nl_begin(&m, f.id, NBD_CMD_STATUS, NBD_GENL_VERSION);
  nl_put_u32(&m, NBD_ATTR_INDEX, (uint32_t) index);
  if (nl_transact(nl, &m, status_cb, &s) == -1) {
    int e = errno;

    close(nl);
    return nl_error("STATUS", index, e);
  }
  close(nl);
  return s.connected;
}

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
  nl_begin(&m, f.id, NBD_CMD_DISCONNECT, NBD_GENL_VERSION);
  nl_put_u32(&m, NBD_ATTR_INDEX, (uint32_t) index);
  if (nl_transact(nl, &m, NULL, NULL) == -1) {
    int e = errno;

    close(nl);
    return nl_error("DISCONNECT", index, e);
  }
  close(nl);
  return 0;
}

/* ---- supervision ------------------------------------------------------------ */

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
  p = genl_attrs(h, &len);
  FOR_ATTRS(a, p, len)
    if (ATTR_TYPE(a) == NBD_ATTR_INDEX)
      idx = (int) attr_u32(a);
  for (size_t i = 0; i < n; i++) {
    char where[300];

    if (indexes[i] != idx || !w[i].active || (w[i].dead && !w[i].probe))
      continue;
    describe(&srvs[i], where, sizeof where);
    fprintf(stderr, "nbd%d: connection to %s lost; reconnecting\n", idx,
            where);
    w[i].dead = true;
    w[i].probe = false;
    w[i].dead_since = w[i].next_try = now_ms();
    w[i].tries = 0;
    w[i].last_error[0] = '\0';
  }
}

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
  mc = nbd_netlink(&f);
  if (mc == -1)
    return -1;
  if (f.mcgrp == 0) {
    close(mc);
    return sn_set_error("the nbd driver has no multicast group '%s'",
                        NBD_GENL_MCAST_GROUP_NAME);
  }
  if (setsockopt(mc, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &f.mcgrp,
                 sizeof f.mcgrp) == -1) {
    int e = errno;

    close(mc);
    return sn_set_error("netlink: joining the nbd multicast group: %s",
                        strerror(e));
  }
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
    /* Devices disconnected (detached and closed) leave supervision. */
    if (t >= next_status) {
      for (size_t i = 0; i < n; i++) {
        int c;

        if (!w[i].active)
          continue;
        c = sn_nbd_connected(indexes[i]);
        if (c == -1)
          goto out;
        if (c == 0) {
          fprintf(stderr, "nbd%d: disconnected; no longer supervised\n",
                  indexes[i]);
          w[i].active = false;
        }
      }
      next_status = t + 1000;
    }
    for (size_t i = 0; i < n; i++)
      nactive += w[i].active;
    if (nactive == 0) {
      r = 0;
      goto out;
    }
    /* Reconnect the dead ones that are due. */
    for (size_t i = 0; i < n; i++) {
      char where[300];

      if (!w[i].active || !w[i].dead || now_ms() < w[i].next_try)
        continue;
      describe(&srvs[i], where, sizeof where);
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
        break;                  /* EAGAIN: all read */
      }
      left = (size_t) len;
      for (h = &in->u.hdr; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left))
        on_link_dead(h, f.id, indexes, srvs, w, n);
    }
  }
out:
  free(in);
  free(w);
  close(mc);
  return r;
}
