/* soci-nbd: the NBD handshake of lib/nbd (sn_nbd_connect): connect to a
 * server and negotiate an export the way the kernel's client needs it
 * (fixed newstyle, NBD_OPT_STARTTLS when asked, NBD_OPT_GO or else
 * NBD_OPT_EXPORT_NAME, simple replies only), then hand the socket, in the
 * transmission phase, to the caller (with TLS: a socket to the carrier
 * process of nbd-tls.c).
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/err.h"
#include "nbd/nbd-int.h"

/* ---- the NBD handshake --------------------------------------------------- */

#define NBD_MAGIC           UINT64_C(0x4e42444d41474943)   /* "NBDMAGIC" */
#define NBD_IHAVEOPT        UINT64_C(0x49484156454f5054)   /* "IHAVEOPT" */
#define NBD_OLDSTYLE_MAGIC  UINT64_C(0x0000420281861253)
#define NBD_REP_MAGIC       UINT64_C(0x0003e889045565a9)

#define NBD_FLAG_FIXED_NEWSTYLE 0x1     /* handshake flags */
#define NBD_FLAG_NO_ZEROES      0x2

#define NBD_OPT_EXPORT_NAME 1
#define NBD_OPT_STARTTLS    5
#define NBD_OPT_GO          7
#define NBD_REP_ACK         1
#define NBD_REP_INFO        3
#define NBD_REP_FLAG_ERROR  UINT32_C(0x80000000)
#define NBD_REP_ERR_UNSUP   (NBD_REP_FLAG_ERROR | 1)
#define NBD_INFO_EXPORT     0

#define NBD_MAX_NAME        4096        /* the protocol's limit */
#define MAX_OPT_REPLY       65536       /* more is not a sane server */
#define IO_TIMEOUT_S        10          /* connect and each handshake read */

/* "unix:/run/x.sock" or "host:port", for messages. */
void
sn_nbd_describe(const struct sn_nbd_server *srv, char *buf, size_t len)
{
  const char *port = srv->port ? srv->port : "10809";

  if (srv->unix_path)
    snprintf(buf, len, "unix:%s", srv->unix_path);
  else if (srv->host && strchr(srv->host, ':'))
    snprintf(buf, len, "[%s]:%s", srv->host, port);
  else
    snprintf(buf, len, "%s:%s", srv->host ? srv->host : "?", port);
}

/* Bound fd's sends and receives to seconds (0: no bound). */
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

/* A socket connected to srv (Unix or TCP, each address of the host in
 * turn); where names it in messages.  The caller owns it; -1 with a
 * message. */
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
  struct sn_nbd_tls *tls;               /* NULL: plain */
};

/* Read exactly len bytes; what names them in the error message. */
static int
hs_read(struct hs *h, void *buf, size_t len, const char *what)
{
  char *p = buf;

  while (len > 0) {
    ssize_t r = h->tls ? sn_nbd_tls_read(h->tls, p, len)
                       : recv(h->fd, p, len, 0);

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

/* Write all of buf; MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE. */
static int
hs_write(struct hs *h, const void *buf, size_t len)
{
  const char *p = buf;

  while (len > 0) {
    ssize_t r = h->tls ? sn_nbd_tls_write(h->tls, p, len)
                       : send(h->fd, p, len, MSG_NOSIGNAL);

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

/* Big-endian (network order) fields of NBD messages. */
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

/* The same, written; each put returns the byte after the field. */
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

/* A reply error's meaning for messages; NULL for an unknown one. */
static const char *
rep_error_name(uint32_t type)
{
  switch (type & ~NBD_REP_FLAG_ERROR) {
  case 1: return "option not supported";
  case 2: return "refused by the server's policy";
  case 3: return "invalid request";
  case 4: return "not supported on the server's platform";
  case 5: return "the server requires TLS (give a key file: --tls-psk)";
  case 6: return "not found";
  case 7: return "the server is shutting down";
  case 8: return "the server requires block size negotiation";
  case 9: return "request too big";
  default: return NULL;
  }
}

/* Read one option reply to opt: its type, and its data (*data, malloc'd,
 * NUL-terminated, *len bytes; the caller frees it).  -1 with a message. */
static int
read_reply(struct hs *h, uint32_t opt, const char *what, uint32_t *type,
           char **data, uint32_t *len)
{
  unsigned char rep[20];

  *data = NULL;
  if (hs_read(h, rep, sizeof rep, what) == -1)
    return -1;
  if (get64(rep) != NBD_REP_MAGIC)
    return sn_set_error("%s: not an NBD server (bad option reply magic)",
                        h->where);
  if (get32(rep + 8) != opt)
    return sn_set_error("%s: NBD handshake: reply to option %" PRIu32
                        " instead of %" PRIu32, h->where, get32(rep + 8), opt);
  *type = get32(rep + 12);
  *len = get32(rep + 16);
  if (*len > MAX_OPT_REPLY)
    return sn_set_error("%s: NBD handshake: option reply of %" PRIu32
                        " bytes", h->where, *len);
  *data = malloc(*len + 1);
  if (*data == NULL)
    return sn_oom();
  if (hs_read(h, *data, *len, what) == -1) {
    free(*data);
    *data = NULL;
    return -1;
  }
  (*data)[*len] = '\0';
  /* An error's message, for ours: without its line end. */
  while (*len > 0 && ((*data)[*len - 1] == '\n' || (*data)[*len - 1] == ' '))
    (*data)[--*len] = '\0';
  return 0;
}

/* NBD_OPT_STARTTLS, then TLS on the socket (h->tls). */
static int
opt_starttls(struct hs *h, const struct sn_nbd_server *srv)
{
  uint32_t type, len;
  char *data;

  if (send_option(h, NBD_OPT_STARTTLS, NULL, 0) == -1 ||
      read_reply(h, NBD_OPT_STARTTLS, "the reply to NBD_OPT_STARTTLS", &type,
                 &data, &len) == -1)
    return -1;
  if (type != NBD_REP_ACK) {
    const char *what = rep_error_name(type);

    sn_set_error("%s: the server does not offer TLS (%s%s%.200s)", h->where,
                 what ? what : "it refused NBD_OPT_STARTTLS",
                 len ? ": " : "", data);
    free(data);
    return -1;
  }
  free(data);
  h->tls = sn_nbd_tls_start(h->fd, srv, h->where);
  return h->tls ? 0 : -1;
}

/* NBD_OPT_GO for name: 0 and *size, *flags on success, 1 when the server
 * does not know NBD_OPT_GO, -1 on error. */
static int
opt_go(struct hs *h, const char *name, uint64_t *size, uint16_t *flags)
{
  size_t nlen = strlen(name);
  unsigned char *req, *p;
  char *data = NULL;
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
    uint32_t type, len;

    free(data);
    if (read_reply(h, NBD_OPT_GO, "the reply to NBD_OPT_GO", &type, &data,
                   &len) == -1)
      goto out;
    if (type == NBD_REP_INFO) {
      const unsigned char *d = (const unsigned char *) data;

      if (len >= 2 && get16(d) == NBD_INFO_EXPORT) {
        if (len != 12) {
          sn_set_error("%s: NBD handshake: NBD_INFO_EXPORT of %" PRIu32
                       " bytes", h->where, len);
          goto out;
        }
        *size = get64(d + 2);
        *flags = get16(d + 10);
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

      if (what == NULL) {
        snprintf(code, sizeof code, "error %#" PRIx32, type);
        what = code;
      }
      if ((type & ~NBD_REP_FLAG_ERROR) == 6)
        sn_set_error("export '%s' not found on %s%s%.200s", name, h->where,
                     len ? ": " : "", data);
      else
        sn_set_error("%s: export '%s': %s%s%.200s", h->where, name, what,
                     len ? ": " : "", data);
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
  if (h->tls == NULL && recv(h->fd, rep, 1, MSG_PEEK) == 0)
    return sn_set_error("export '%s' not found on %s (the server closed "
                        "the connection)", name, h->where);
  if (hs_read(h, rep, no_zeroes ? 10 : sizeof rep,
              "the reply to NBD_OPT_EXPORT_NAME") == -1)
    return -1;
  *size = get64(rep);
  *flags = get16(rep + 8);
  return 0;
}

/* Greeting, client flags, then NBD_OPT_GO (fixed newstyle only) or
 * NBD_OPT_EXPORT_NAME; the socket's timeouts are cleared before it is
 * returned. */
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

  sn_nbd_describe(srv, where, sizeof where);
  if (strlen(name) > NBD_MAX_NAME)
    return sn_set_error("%s: export name longer than %d bytes", where,
                        NBD_MAX_NAME);
  fd = open_socket(srv, where);
  if (fd == -1)
    return -1;
  set_timeouts(fd, IO_TIMEOUT_S);
  h.fd = fd;
  h.where = where;
  h.tls = NULL;
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
  if (srv->tls_psk) {
    if (!(cflags & NBD_FLAG_FIXED_NEWSTYLE)) {
      sn_set_error("%s: the server cannot do TLS (no fixed newstyle)", where);
      goto fail;
    }
    if (opt_starttls(&h, srv) == -1)
      goto fail;
  }
  /* Without fixed newstyle the server may drop us on an unknown option:
   * only NBD_OPT_EXPORT_NAME is safe. */
  r = 1;
  if (cflags & NBD_FLAG_FIXED_NEWSTYLE)
    r = opt_go(&h, name, size, flags);
  if (r == 1)
    r = opt_export_name(&h, name, cflags & NBD_FLAG_NO_ZEROES, size, flags);
  if (r == -1)
    goto fail;
  if (h.tls)
    return sn_nbd_tls_carry(h.tls, where);     /* takes fd and h.tls */
  /* The kernel owns the socket from now on: no timeouts of ours, or its
   * receive worker would take an idle minute for a dead server. */
  set_timeouts(fd, 0);
  return fd;

fail:
  sn_nbd_tls_free(h.tls);
  close(fd);
  return -1;
}
