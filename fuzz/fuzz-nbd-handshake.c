/* soci-nbd fuzzing: the NBD handshake client of lib/nbd/nbd-handshake.c
 * (sn_nbd_connect) against a hostile server.  The input is everything the
 * server sends: greeting, option replies, NBD_OPT_EXPORT_NAME reply.  A
 * thread plays the server on a Unix socket: it accepts, writes the input,
 * shuts down its write side (so the client sees EOF instead of waiting for
 * its timeout) and reads whatever the client sends until the client
 * closes.  nbd-handshake.c is used unchanged. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/err.h"
#include "nbd/nbddev.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int listen_fd = -1;
static char sock_dir[64], sock_path[128];

static void
cleanup(void)
{
  unlink(sock_path);
  rmdir(sock_dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };

  (void) argc;
  (void) argv;
  strcpy(sock_dir, "/tmp/fuzz-nbd-XXXXXX");
  if (mkdtemp(sock_dir) == NULL) {
    perror("mkdtemp");
    abort();
  }
  snprintf(sock_path, sizeof sock_path, "%s/sock", sock_dir);
  strcpy(sa.sun_path, sock_path);
  listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd == -1 ||
      bind(listen_fd, (struct sockaddr *) &sa, sizeof sa) == -1 ||
      listen(listen_fd, 4) == -1) {
    perror("fuzz-nbd-handshake: listen");
    abort();
  }
  atexit(cleanup);
  return 0;
}

struct server {
  const uint8_t *data;
  size_t size;
};

static void *
serve(void *arg)
{
  const struct server *s = arg;
  const uint8_t *p = s->data;
  size_t left = s->size;
  char sink[4096];
  int fd;

  do
    fd = accept(listen_fd, NULL, NULL);
  while (fd == -1 && errno == EINTR);
  if (fd == -1) {
    perror("fuzz-nbd-handshake: accept");
    abort();
  }
  while (left > 0) {
    ssize_t w = send(fd, p, left, MSG_NOSIGNAL);

    if (w == -1 && errno == EINTR)
      continue;
    if (w <= 0)
      break;                    /* the client gave up and closed */
    p += w;
    left -= (size_t) w;
  }
  shutdown(fd, SHUT_WR);
  for (;;) {
    ssize_t r = recv(fd, sink, sizeof sink, 0);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
  }
  close(fd);
  return NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct server s = { data, size };
  struct sn_nbd_server srv = {
    .unix_path = sock_path, .export_name = "layer/0",
  };
  uint64_t esize = 0;
  uint16_t flags = 0;
  pthread_t t;
  int fd;

  if (pthread_create(&t, NULL, serve, &s) != 0)
    abort();
  fd = sn_nbd_connect(&srv, &esize, &flags);
  if (fd >= 0)
    close(fd);
  else if (strlen(sn_error()) == 0)
    abort();
  pthread_join(t, NULL);
  return 0;
}
