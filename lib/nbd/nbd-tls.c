/* soci-nbd: TLS on an NBD link, for a client that hands its socket to the
 * kernel.  The handshake upgrades the connection with NBD_OPT_STARTTLS and
 * a pre-shared key (the "identity:hexkey" file that nbdkit --tls-psk and
 * GnuTLS's psktool use), then negotiates the export over TLS.  The kernel's
 * nbd driver speaks plain NBD on a socket, so the session is then handed to
 * a small process of its own (forked twice: it belongs to nobody's wait)
 * that carries bytes between one end of a socketpair, given to the kernel,
 * and the TLS connection.  It ends when either side closes: the kernel's
 * disconnect, or the server's going away (then the device's link is dead,
 * and a supervisor reconnects with a new session and a new carrier).
 * OpenSSL, which the rest of soci-nbd already links.  See
 * examples/bare-metal.md, "TLS on the NBD link".
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "nbd/nbd-int.h"
#include "util/err.h"
#include "util/fdio.h"

#define PSK_MAX_KEY 64                  /* bytes (512 bits) */
#define PSK_MAX_IDENTITY 128
#define PSK_FILE_MAX (64 * 1024)

struct sn_nbd_psk {
  char identity[PSK_MAX_IDENTITY + 1];
  unsigned char key[PSK_MAX_KEY];
  unsigned keylen;
};

struct sn_nbd_tls {
  int fd;
  SSL_CTX *ctx;
  SSL *ssl;
  const struct sn_nbd_psk *psk;
};

/* The last OpenSSL error as text ("" when there is none). */
static const char *
ssl_error_text(char *buf, size_t len)
{
  unsigned long e = ERR_get_error();

  buf[0] = '\0';
  if (e)
    ERR_error_string_n(e, buf, len);
  ERR_clear_error();
  return buf;
}

static int
hexval(int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The entry for identity (the first one when identity is NULL) of a PSK
 * file, into t.  The file must be private to its owner: it is a secret. */
static int
load_psk(struct sn_nbd_psk *t, const char *file, const char *identity)
{
  struct stat st;
  uint8_t *data;
  size_t size;
  char *line, *next;
  int r = -1;

  if (stat(file, &st) == 0 && (st.st_mode & 077))
    return sn_set_error("TLS key file %s: readable by others (mode %03o; "
                        "chmod 600 it)", file, (unsigned) (st.st_mode & 0777));
  if (sn_read_file(file, PSK_FILE_MAX, true, &data, &size) == -1)
    return sn_prefix_error("TLS key file ");
  for (line = (char *) data; line && *line; line = next) {
    char *colon, *hex, *end;
    size_t idlen, hexlen;

    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    end = line + strlen(line);
    if (end > line && end[-1] == '\r')
      *--end = '\0';
    if (*line == '\0')
      continue;
    colon = strchr(line, ':');
    if (colon == NULL || colon == line) {
      sn_set_error("TLS key file %s: a line is not IDENTITY:HEXKEY", file);
      goto out;
    }
    idlen = (size_t) (colon - line);
    if (identity && (strlen(identity) != idlen ||
                     memcmp(identity, line, idlen) != 0))
      continue;
    hex = colon + 1;
    hexlen = strlen(hex);
    if (idlen > PSK_MAX_IDENTITY || hexlen == 0 || hexlen % 2 ||
        hexlen / 2 > PSK_MAX_KEY) {
      sn_set_error("TLS key file %s: the entry for '%.*s' is not IDENTITY:"
                   "HEXKEY (at most %d bytes of key)", file, (int) idlen,
                   line, PSK_MAX_KEY);
      goto out;
    }
    for (size_t i = 0; i < hexlen; i += 2) {
      int hi = hexval((unsigned char) hex[i]);
      int lo = hexval((unsigned char) hex[i + 1]);

      if (hi < 0 || lo < 0) {
        sn_set_error("TLS key file %s: the key of '%.*s' is not hex", file,
                     (int) idlen, line);
        goto out;
      }
      t->key[i / 2] = (unsigned char) (hi << 4 | lo);
    }
    memcpy(t->identity, line, idlen);
    t->identity[idlen] = '\0';
    t->keylen = (unsigned) (hexlen / 2);
    r = 0;
    goto out;
  }
  if (identity)
    sn_set_error("TLS key file %s: no key for identity '%.100s'", file,
                 identity);
  else
    sn_set_error("TLS key file %s: no key in it", file);
out:
  OPENSSL_cleanse(data, size);
  free(data);
  return r;
}

struct sn_nbd_psk *
sn_nbd_psk_load(const char *file, const char *identity)
{
  struct sn_nbd_psk *psk = calloc(1, sizeof *psk);

  if (psk == NULL) {
    sn_oom();
    return NULL;
  }
  if (load_psk(psk, file, identity) == -1) {
    sn_nbd_psk_free(psk);
    return NULL;
  }
  return psk;
}

void
sn_nbd_psk_free(struct sn_nbd_psk *psk)
{
  if (psk) {
    OPENSSL_cleanse(psk, sizeof *psk);
    free(psk);
  }
}

static unsigned int
psk_client_cb(SSL *ssl, const char *hint, char *identity,
              unsigned int max_identity_len, unsigned char *psk,
              unsigned int max_psk_len)
{
  const struct sn_nbd_tls *t = SSL_get_app_data(ssl);

  (void) hint;
  if (strlen(t->psk->identity) >= max_identity_len ||
      t->psk->keylen > max_psk_len)
    return 0;
  strcpy(identity, t->psk->identity);
  memcpy(psk, t->psk->key, t->psk->keylen);
  return t->psk->keylen;
}

void
sn_nbd_tls_free(struct sn_nbd_tls *t)
{
  if (t == NULL)
    return;
  SSL_free(t->ssl);                     /* no close_notify: not a shutdown */
  SSL_CTX_free(t->ctx);
  free(t);
}

struct sn_nbd_tls *
sn_nbd_tls_start(int fd, const struct sn_nbd_server *srv, const char *where)
{
  struct sn_nbd_tls *t = calloc(1, sizeof *t);
  char err[256];
  int r;

  if (t == NULL) {
    sn_oom();
    return NULL;
  }
  t->fd = fd;
  t->psk = srv->tls_psk;
  t->ctx = SSL_CTX_new(TLS_client_method());
  if (t->ctx == NULL ||
      !SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION) ||
      !SSL_CTX_set_cipher_list(t->ctx, "ECDHEPSK:DHEPSK:PSK")) {
    sn_set_error("%s: TLS setup: %s", where, ssl_error_text(err, sizeof err));
    goto fail;
  }
  SSL_CTX_set_psk_client_callback(t->ctx, psk_client_cb);
  SSL_CTX_clear_mode(t->ctx, SSL_MODE_AUTO_RETRY);
  t->ssl = SSL_new(t->ctx);
  if (t->ssl == NULL || !SSL_set_fd(t->ssl, fd)) {
    sn_set_error("%s: TLS setup: %s", where, ssl_error_text(err, sizeof err));
    goto fail;
  }
  SSL_set_app_data(t->ssl, t);
  r = SSL_connect(t->ssl);
  if (r != 1) {
    int e = SSL_get_error(t->ssl, r);
    const char *text = ssl_error_text(err, sizeof err);

    if (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK))
      sn_set_error("%s: TLS handshake: the server did not answer in time",
                   where);
    else
      sn_set_error("%s: TLS handshake failed (is the key for identity '%s' "
                   "the server's?)%s%s", where, t->psk->identity,
                   *text ? ": " : "", text);
    goto fail;
  }
  return t;

fail:
  sn_nbd_tls_free(t);
  return NULL;
}

/* One SSL_read or SSL_write during the handshake, like recv or send (the
 * socket's timeouts bound it): bytes moved; for a read 0 when the server
 * closed; -1 with errno (EPROTO for a TLS error, EPIPE for a write to a
 * closed link). */
static ssize_t
tls_io(struct sn_nbd_tls *t, void *buf, size_t len, bool write)
{
  int n = len > INT32_MAX ? INT32_MAX : (int) len;

  for (;;) {
    int r = write ? SSL_write(t->ssl, buf, n) : SSL_read(t->ssl, buf, n);

    if (r > 0)
      return r;
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      continue;                         /* a post-handshake message */
    case SSL_ERROR_SYSCALL:
      ERR_clear_error();
      if (write && errno == 0)
        errno = EPIPE;
      else if (!write && (r == 0 || errno == 0))
        return 0;                       /* closed without close_notify */
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      if (!write)
        return 0;                       /* closed with close_notify */
      /* fall through */
    default:
      ERR_clear_error();
      errno = EPROTO;
      return -1;
    }
  }
}

ssize_t
sn_nbd_tls_read(struct sn_nbd_tls *t, void *buf, size_t len)
{
  return tls_io(t, buf, len, false);
}

ssize_t
sn_nbd_tls_write(struct sn_nbd_tls *t, const void *buf, size_t len)
{
  return tls_io(t, (void *) buf, len, true);
}

/* ---- the carrier process ----------------------------------------------- */

/* Wait until fd is ready for events; 0, or -1 when it failed or hung up
 * with nothing to read. */
static int
wait_fd(int fd, short events)
{
  struct pollfd p = { .fd = fd, .events = events };

  for (;;) {
    int r = poll(&p, 1, -1);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    if (p.revents & (events | POLLHUP | POLLERR))
      return 0;
  }
}

/* All of buf to the plain socket. */
static int
plain_write_all(int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t r = send(fd, buf, len, MSG_NOSIGNAL);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    buf += r;
    len -= (size_t) r;
  }
  return 0;
}

/* All of buf over TLS (the TCP socket is non-blocking here). */
static int
tls_write_all(struct sn_nbd_tls *t, const char *buf, size_t len)
{
  while (len > 0) {
    int r = SSL_write(t->ssl, buf, (int) len);

    if (r > 0) {
      buf += r;
      len -= (size_t) r;
      continue;
    }
    switch (SSL_get_error(t->ssl, r)) {
    case SSL_ERROR_WANT_WRITE:
      if (wait_fd(t->fd, POLLOUT) == -1)
        return -1;
      break;
    case SSL_ERROR_WANT_READ:
      if (wait_fd(t->fd, POLLIN) == -1)
        return -1;
      break;
    default:
      return -1;
    }
  }
  return 0;
}

/* Carry bytes both ways until either side ends. */
static void
carry(struct sn_nbd_tls *t, int local)
{
  static char buf[256 * 1024];
  struct timeval none = { 0 };
  int fl = fcntl(t->fd, F_GETFL);

  setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  setsockopt(t->fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  if (fl == -1 || fcntl(t->fd, F_SETFL, fl | O_NONBLOCK) == -1)
    return;
  for (;;) {
    struct pollfd p[2] = { { .fd = t->fd, .events = POLLIN },
                           { .fd = local, .events = POLLIN } };
    int r;

    if (SSL_pending(t->ssl) > 0)
      p[0].revents = POLLIN;            /* decrypted bytes already here */
    else {
      r = poll(p, 2, -1);
      if (r == -1 && errno == EINTR)
        continue;
      if (r == -1)
        return;
    }
    if (p[0].revents) {
      r = SSL_read(t->ssl, buf, sizeof buf);
      if (r > 0) {
        if (plain_write_all(local, buf, (size_t) r) == -1)
          return;
      }
      else {
        int e = SSL_get_error(t->ssl, r);

        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
          return;                       /* the server went away */
      }
    }
    if (p[1].revents) {
      ssize_t n = recv(local, buf, sizeof buf, 0);

      if (n == -1 && errno == EINTR)
        continue;
      if (n <= 0) {
        SSL_shutdown(t->ssl);           /* the kernel let go: close_notify */
        return;
      }
      if (tls_write_all(t, buf, (size_t) n) == -1)
        return;
    }
  }
}

int
sn_nbd_tls_carry(struct sn_nbd_tls *t, const char *where)
{
  int sv[2], st = 0;
  pid_t pid, w;

  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
    sn_set_error("%s: socketpair: %s", where, strerror(errno));
    goto fail;
  }
  pid = fork();
  if (pid == -1) {
    sn_set_error("%s: fork: %s", where, strerror(errno));
    close(sv[0]);
    close(sv[1]);
    goto fail;
  }
  if (pid == 0) {
    /* Twice: the carrier is nobody's child to wait for. */
    pid = fork();
    if (pid != 0)
      _exit(pid == -1 ? 1 : 0);
    close(sv[0]);
    /* Nothing to say, and no standard descriptor to hold: a caller
     * reading this process's output, as $(soci-nbd-attach attach ...)
     * does, would wait for the carrier to end. */
    close(STDIN_FILENO);
    close(STDOUT_FILENO);
    close(STDERR_FILENO);
    signal(SIGPIPE, SIG_IGN);
    carry(t, sv[1]);
    _exit(0);
  }
  close(sv[1]);
  while ((w = waitpid(pid, &st, 0)) == -1 && errno == EINTR)
    ;
  if (w == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    sn_set_error("%s: fork: cannot start the TLS carrier", where);
    close(sv[0]);
    goto fail;
  }
  close(t->fd);
  sn_nbd_tls_free(t);
  return sv[0];

fail:
  close(t->fd);
  sn_nbd_tls_free(t);
  return -1;
}
