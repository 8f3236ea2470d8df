/* soci-nbd tests: the NBD handshake client and the driver check of
 * lib/nbd/nbddev.c, on a host without the nbd driver.  sn_nbd_connect against
 * real nbdkit servers (sizes, flags, read-only, named exports, an unknown
 * export) and against scripted servers on a Unix socket or 127.0.0.1
 * (garbage, oldstyle, closing mid-handshake, bad and oversized replies,
 * NBD_REP_ERR_* with the server's text, the NBD_OPT_EXPORT_NAME fallback
 * when NBD_OPT_GO is unsupported); TLS with a pre-shared key against
 * nbdkit --tls=require (reads through the carrier process, which ends
 * with the server; a wrong key, a key file others can read, a server
 * without TLS, TLS required but not given); sn_nbd_driver_available() and the other
 * kernel calls failing with the "no nbd driver" message.  The kernel side
 * is tested in a QEMU guest by tests/kernel/kernel-reconnect.sh.
 */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "nbd/nbddev.h"
#include "tap.h"

static char tmpdir[] = "/tmp/soci-nbddev.XXXXXX";

/* ---- nbdkit ----------------------------------------------------------------- */

/* Start nbdkit -U SOCK -f ARGS...; wait until it listens.  Returns its pid
 * (0 if nbdkit is not installed). */
static pid_t
start_nbdkit(const char *sock, const char *const *args)
{
  const char *argv[32];
  size_t n = 0;
  struct stat st;
  pid_t pid;

  argv[n++] = "nbdkit";
  argv[n++] = "-U";
  argv[n++] = sock;
  argv[n++] = "-f";
  while (*args && n < 30)
    argv[n++] = *args++;
  argv[n] = NULL;
  unlink(sock);
  pid = fork();
  if (pid == -1)
    return 0;
  if (pid == 0) {
    execvp("nbdkit", (char *const *) argv);
    _exit(127);
  }
  for (int i = 0; i < 200; i++) {
    int status;

    if (stat(sock, &st) == 0)
      return pid;
    if (waitpid(pid, &status, WNOHANG) == pid)
      return 0;
    usleep(50000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return 0;
}

static void
stop_nbdkit(pid_t pid)
{
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
}

static void
test_nbdkit(void)
{
  char sock[256], dir[256], img[300], *buf;
  struct sn_nbd_server srv = { .unix_path = sock, .export_name = "" };
  uint64_t size = 0;
  uint16_t flags = 0;
  pid_t pid;
  FILE *f;
  int fd;

  snprintf(sock, sizeof sock, "%s/mem.sock", tmpdir);
  pid = start_nbdkit(sock, (const char *const[]) { "memory", "1M", NULL });
  if (pid == 0) {
    printf("Bail out! nbdkit did not start (scripts/install-deps.sh)\n");
    exit(1);
  }
  fd = sn_nbd_connect(&srv, &size, &flags);
  ok(fd >= 0 && size == 1048576 && (flags & 1) && !(flags & 2),
     "nbdkit memory 1M: size %llu, flags %#x (has flags, writable)",
     (unsigned long long) size, flags);
  if (fd == -1)
    diag("%s", sn_error());
  else
    close(fd);
  stop_nbdkit(pid);

  /* -r: the read-only flag; a file per export with the file plugin. */
  snprintf(dir, sizeof dir, "%s/exports", tmpdir);
  mkdir(dir, 0755);
  snprintf(img, sizeof img, "%s/disk.img", dir);
  f = fopen(img, "wb");
  buf = calloc(1, 12288);
  if (f == NULL || buf == NULL || fwrite(buf, 1, 12288, f) != 12288) {
    printf("Bail out! cannot write %s\n", img);
    exit(1);
  }
  fclose(f);
  free(buf);
  snprintf(sock, sizeof sock, "%s/file.sock", tmpdir);
  {
    char dirarg[300];

    snprintf(dirarg, sizeof dirarg, "dir=%s", dir);
    pid = start_nbdkit(sock, (const char *const[]) { "-r", "file", dirarg,
                                                     NULL });
  }
  ok(pid != 0, "nbdkit -r file dir=... started");
  srv.export_name = "disk.img";
  size = 0;
  fd = sn_nbd_connect(&srv, &size, &flags);
  ok(fd >= 0 && size == 12288 && (flags & 2),
     "export disk.img: size %llu, read-only flag set (%#x)",
     (unsigned long long) size, flags);
  if (fd == -1)
    diag("%s", sn_error());
  else
    close(fd);
  srv.export_name = "missing.img";
  fd = sn_nbd_connect(&srv, &size, &flags);
  ok(fd == -1 && strstr(sn_error(), "export 'missing.img' not found on unix:")
     && strstr(sn_error(), sock), "unknown export: %s", sn_error());
  if (fd >= 0)
    close(fd);
  /* The server still serves after the failed negotiation. */
  srv.export_name = "disk.img";
  fd = sn_nbd_connect(&srv, &size, &flags);
  ok(fd >= 0, "connect again after the unknown export");
  if (fd >= 0)
    close(fd);
  stop_nbdkit(pid);

  /* Nobody listening. */
  fd = sn_nbd_connect(&srv, &size, &flags);
  ok(fd == -1 && strstr(sn_error(), "connect:"),
     "no server on the socket: %s", sn_error());
  {
    struct sn_nbd_server bad = { .export_name = "" };

    ok(sn_nbd_connect(&bad, &size, &flags) == -1,
       "neither a socket nor a host: %s", sn_error());
  }
}

/* ---- scripted servers --------------------------------------------------------- */

typedef void script_fn(int fd);

struct server {
  int lfd;
  script_fn *fn;
  pthread_t thread;
};

static void
wr(int fd, const void *buf, size_t len)
{
  if (send(fd, buf, len, MSG_NOSIGNAL) != (ssize_t) len) {
    /* the client may have gone: fine */
  }
}

static int
rd(int fd, void *buf, size_t len)
{
  char *p = buf;

  while (len > 0) {
    ssize_t r = recv(fd, p, len, 0);

    if (r <= 0)
      return -1;
    p += r;
    len -= (size_t) r;
  }
  return 0;
}

static void
be16(unsigned char *p, uint16_t v)
{
  p[0] = (unsigned char) (v >> 8);
  p[1] = (unsigned char) v;
}

static void
be32(unsigned char *p, uint32_t v)
{
  be16(p, (uint16_t) (v >> 16));
  be16(p + 2, (uint16_t) v);
}

static void
be64(unsigned char *p, uint64_t v)
{
  be32(p, (uint32_t) (v >> 32));
  be32(p + 4, (uint32_t) v);
}

/* Greeting (fixed newstyle, no zeroes) and the client's flags. */
static int
greet(int fd)
{
  unsigned char g[18], cf[4];

  memcpy(g, "NBDMAGICIHAVEOPT", 16);
  be16(g + 16, 3);
  wr(fd, g, sizeof g);
  return rd(fd, cf, sizeof cf);
}

/* One option from the client: its number, or -1. */
static long
read_option(int fd, char *data, size_t cap)
{
  unsigned char h[16];
  uint32_t len;
  char junk[256];

  if (rd(fd, h, sizeof h) == -1 || memcmp(h, "IHAVEOPT", 8) != 0)
    return -1;
  len = (uint32_t) h[12] << 24 | (uint32_t) h[13] << 16
    | (uint32_t) h[14] << 8 | h[15];
  if (data && len < cap) {
    if (rd(fd, data, len) == -1)
      return -1;
    data[len] = '\0';
  } else {
    while (len > 0) {
      size_t k = len < sizeof junk ? len : sizeof junk;

      if (rd(fd, junk, k) == -1)
        return -1;
      len -= (uint32_t) k;
    }
  }
  return (long) ((uint32_t) h[8] << 24 | (uint32_t) h[9] << 16
                 | (uint32_t) h[10] << 8 | h[11]);
}

static void
reply(int fd, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
  unsigned char h[20];

  be64(h, UINT64_C(0x0003e889045565a9));
  be32(h + 8, opt);
  be32(h + 12, type);
  be32(h + 16, len);
  wr(fd, h, sizeof h);
  if (len)
    wr(fd, data, len);
}

static void
info_export(int fd, uint64_t size, uint16_t flags)
{
  unsigned char i[12];

  be16(i, 0);
  be64(i + 2, size);
  be16(i + 10, flags);
  reply(fd, 7, 3, i, sizeof i);
}

static void
s_garbage(int fd)
{
  const char *s = "HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n";

  wr(fd, s, strlen(s));
}

static void
s_short(int fd)
{
  wr(fd, "NBDMAGICIH", 10);
}

static void
s_oldstyle(int fd)
{
  unsigned char g[152] = { 0 };

  memcpy(g, "NBDMAGIC", 8);
  be64(g + 8, UINT64_C(0x0000420281861253));
  be64(g + 16, 1048576);
  wr(fd, g, sizeof g);
}

static void
s_close_after_option(int fd)
{
  if (greet(fd) == 0)
    read_option(fd, NULL, 0);
}

static void
s_bad_reply(int fd)
{
  if (greet(fd) == 0 && read_option(fd, NULL, 0) == 7)
    wr(fd, "this is not an option reply!", 28);
}

static void
s_huge_reply(int fd)
{
  if (greet(fd) == 0 && read_option(fd, NULL, 0) == 7)
    reply(fd, 7, 3, NULL, 0x7fffffff);
}

static void
s_no_info(int fd)
{
  if (greet(fd) == 0 && read_option(fd, NULL, 0) == 7)
    reply(fd, 7, 1, NULL, 0);
}

static void
s_policy(int fd)
{
  if (greet(fd) == 0 && read_option(fd, NULL, 0) == 7)
    reply(fd, 7, 0x80000002, "go away\n", 8);
}

static void
s_tls(int fd)
{
  if (greet(fd) == 0 && read_option(fd, NULL, 0) == 7)
    reply(fd, 7, 0x80000005, NULL, 0);
}

/* GO unsupported: the client falls back to NBD_OPT_EXPORT_NAME. */
static char fallback_name[64];

static void
s_unsup(int fd)
{
  unsigned char r[10];

  if (greet(fd) != 0 || read_option(fd, NULL, 0) != 7)
    return;
  reply(fd, 7, 0x80000001, NULL, 0);
  if (read_option(fd, fallback_name, sizeof fallback_name) != 1)
    return;
  be64(r, 5 * 1048576);
  be16(r + 8, 3);
  wr(fd, r, sizeof r);                  /* no zeroes: negotiated */
  rd(fd, r, 1);                         /* until the client closes */
}

/* A full GO, with an information block the client must skip. */
static void
s_go(int fd)
{
  unsigned char bs[14] = { 0 };

  if (greet(fd) != 0 || read_option(fd, NULL, 0) != 7)
    return;
  be16(bs, 3);                          /* NBD_INFO_BLOCK_SIZE */
  be32(bs + 2, 1);
  be32(bs + 6, 4096);
  be32(bs + 10, 32 << 20);
  reply(fd, 7, 3, bs, sizeof bs);
  info_export(fd, 3 * 1048576 + 512, 0x3);
  reply(fd, 7, 1, NULL, 0);
  rd(fd, bs, 1);
}

static void *
serve(void *arg)
{
  struct server *s = arg;
  int fd = accept(s->lfd, NULL, NULL);

  if (fd >= 0) {
    s->fn(fd);
    close(fd);
  }
  return NULL;
}

/* Listen on a Unix socket (tcp false) or 127.0.0.1:0 and serve one client
 * with fn in a thread; *srv describes the address. */
static void
server_start(struct server *s, script_fn *fn, bool tcp,
             struct sn_nbd_server *srv, char *path, char *port)
{
  s->fn = fn;
  memset(srv, 0, sizeof *srv);
  srv->export_name = "x";
  if (tcp) {
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof sa;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->lfd == -1 || bind(s->lfd, (struct sockaddr *) &sa, sizeof sa)
        || getsockname(s->lfd, (struct sockaddr *) &sa, &len)) {
      printf("Bail out! cannot listen on 127.0.0.1\n");
      exit(1);
    }
    snprintf(port, 16, "%u", ntohs(sa.sin_port));
    srv->host = "127.0.0.1";
    srv->port = port;
  } else {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    static int n;

    snprintf(path, 200, "%s/script%d.sock", tmpdir, n++);
    if (strlen(path) >= sizeof sa.sun_path) {
      printf("Bail out! socket path too long: %s\n", path);
      exit(1);
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    s->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s->lfd == -1 || bind(s->lfd, (struct sockaddr *) &sa, sizeof sa)) {
      printf("Bail out! cannot listen on %s\n", path);
      exit(1);
    }
    srv->unix_path = path;
  }
  listen(s->lfd, 1);
  pthread_create(&s->thread, NULL, serve, s);
}

static void
server_end(struct server *s)
{
  pthread_join(s->thread, NULL);
  close(s->lfd);
}

/* Connect to a scripted server; the fd (closed) or -1. */
static int
scripted(script_fn *fn, bool tcp, uint64_t *size, uint16_t *flags)
{
  struct server s;
  struct sn_nbd_server srv;
  char path[200], port[16];
  int fd;

  server_start(&s, fn, tcp, &srv, path, port);
  fd = sn_nbd_connect(&srv, size, flags);
  if (fd >= 0)
    close(fd);
  server_end(&s);
  return fd;
}

static void
test_scripted(void)
{
  uint64_t size = 0;
  uint16_t flags = 0;
  int r;

  ok(scripted(s_garbage, false, &size, &flags) == -1
     && strstr(sn_error(), "not an NBD server"),
     "garbage (an HTTP answer): %s", sn_error());
  ok(scripted(s_short, false, &size, &flags) == -1
     && strstr(sn_error(), "closed the connection during the NBD handshake"),
     "closed in the greeting: %s", sn_error());
  ok(scripted(s_oldstyle, false, &size, &flags) == -1
     && strstr(sn_error(), "oldstyle"), "oldstyle server: %s", sn_error());
  ok(scripted(s_close_after_option, false, &size, &flags) == -1
     && strstr(sn_error(), "closed the connection")
     && strstr(sn_error(), "NBD_OPT_GO"),
     "closed after the option: %s", sn_error());
  ok(scripted(s_bad_reply, false, &size, &flags) == -1
     && strstr(sn_error(), "bad option reply magic"),
     "garbage option reply: %s", sn_error());
  ok(scripted(s_huge_reply, false, &size, &flags) == -1
     && strstr(sn_error(), "option reply of 2147483647 bytes"),
     "oversized option reply: %s", sn_error());
  ok(scripted(s_no_info, false, &size, &flags) == -1
     && strstr(sn_error(), "without telling its size"),
     "ACK without NBD_INFO_EXPORT: %s", sn_error());
  ok(scripted(s_policy, false, &size, &flags) == -1
     && strstr(sn_error(), "export 'x': refused by the server's policy: "
               "go away"), "NBD_REP_ERR_POLICY with text: %s", sn_error());
  ok(scripted(s_tls, false, &size, &flags) == -1
     && strstr(sn_error(), "requires TLS"), "NBD_REP_ERR_TLS_REQD: %s",
     sn_error());
  size = flags = 0;
  r = scripted(s_unsup, false, &size, &flags);
  ok(r >= 0 && size == 5 * 1048576
     && flags == 3 && strcmp(fallback_name, "x") == 0,
     "NBD_OPT_GO unsupported: NBD_OPT_EXPORT_NAME 'x' (size %llu, flags %u)",
     (unsigned long long) size, flags);
  size = flags = 0;
  r = scripted(s_go, true, &size, &flags);
  ok(r >= 0 && size == 3 * 1048576 + 512
     && flags == 3, "TCP 127.0.0.1: NBD_OPT_GO (size %llu, flags %u)",
     (unsigned long long) size, flags);
}

/* ---- TLS ------------------------------------------------------------------------ */

/* Write a key file: IDENTITY:HEXKEY lines as given, with mode. */
static void
write_key_file(const char *path, const char *text, mode_t mode)
{
  FILE *f = fopen(path, "w");

  if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0 ||
      chmod(path, mode) != 0) {
    printf("Bail out! cannot write %s\n", path);
    exit(1);
  }
}

/* One NBD_CMD_READ of len bytes at off on a transmission-phase socket;
 * 1 when the reply is right and every 8-byte word holds its own offset
 * (nbdkit's pattern plugin). */
static int
read_pattern(int fd, uint64_t off, uint32_t len)
{
  unsigned char req[28] = { 0x25, 0x60, 0x95, 0x13 }, rep[16], *buf;
  size_t got = 0;
  int good = 1;

  for (int i = 0; i < 8; i++) {
    req[8 + i] = (unsigned char) (0x10 + i);            /* handle */
    req[16 + i] = (unsigned char) (off >> (56 - 8 * i));
  }
  for (int i = 0; i < 4; i++)
    req[24 + i] = (unsigned char) (len >> (24 - 8 * i));
  if (send(fd, req, sizeof req, MSG_NOSIGNAL) != (ssize_t) sizeof req)
    return 0;
  buf = malloc(sizeof rep + len);
  if (buf == NULL)
    return 0;
  while (got < sizeof rep + len) {
    ssize_t r = recv(fd, buf + got, sizeof rep + len - got, 0);

    if (r <= 0) {
      free(buf);
      return 0;
    }
    got += (size_t) r;
  }
  memcpy(rep, buf, sizeof rep);
  if (rep[0] != 0x67 || rep[1] != 0x44 || rep[2] != 0x66 || rep[3] != 0x98 ||
      rep[4] || rep[5] || rep[6] || rep[7] || rep[8] != 0x10)
    good = 0;
  for (uint32_t i = 0; good && i < len; i += 8) {
    uint64_t v = 0;

    for (int j = 0; j < 8; j++)
      v = v << 8 | buf[sizeof rep + i + j];
    good = v == off + i;
  }
  free(buf);
  return good;
}

static void
test_tls(void)
{
  char sock[256], key[256], wrong[256], open_key[256], bad[256], arg[300];
  struct sn_nbd_server srv = { .export_name = "" };
  struct sn_nbd_psk *psk, *bob, *wrong_psk;
  struct pollfd p;
  uint64_t size = 0;
  uint16_t flags = 0;
  pid_t pid;
  int fd;

  snprintf(sock, sizeof sock, "%s/tls.sock", tmpdir);
  snprintf(key, sizeof key, "%s/tls.psk", tmpdir);
  snprintf(wrong, sizeof wrong, "%s/wrong.psk", tmpdir);
  snprintf(open_key, sizeof open_key, "%s/open.psk", tmpdir);
  snprintf(bad, sizeof bad, "%s/bad.psk", tmpdir);
  write_key_file(key, "alice:0123456789abcdef0123456789ABCDEF\n"
                 "bob:00112233445566778899aabbccddeeff\n", 0600);
  write_key_file(wrong, "alice:0123456789abcdef0123456789abcdee\n", 0600);
  write_key_file(open_key, "alice:0123456789abcdef0123456789abcdef\n", 0644);
  write_key_file(bad, "alice:0123456789abcdef0123456789abcde\n", 0600);
  snprintf(arg, sizeof arg, "--tls-psk=%s", key);
  pid = start_nbdkit(sock, (const char *const[]) { "--tls=require", arg,
                                                  "pattern", "4M", NULL });
  if (pid == 0) {
    printf("Bail out! nbdkit --tls=require did not start\n");
    exit(1);
  }
  srv.unix_path = sock;
  fd = sn_nbd_connect(&srv, &size, &flags);
  ok(fd == -1 && strstr(sn_error(), "the server requires TLS (give a key "
                        "file: --tls-psk)"),
     "TLS required, none given: %s", sn_error());

  psk = sn_nbd_psk_load(key, NULL);
  srv.tls_psk = psk;
  fd = sn_nbd_connect(&srv, &size, &flags);
  ok(fd >= 0 && size == 4 << 20, "TLS with the file's first key (alice): "
     "size %llu", (unsigned long long) size);
  if (fd == -1)
    diag("%s", sn_error());
  else {
    ok(read_pattern(fd, 8192, 4096),
       "a read through the TLS carrier returns the server's bytes");
    ok(read_pattern(fd, 1 << 20, 1 << 20),
       "... and a read of 1 MiB (many TLS records)");
    close(fd);
  }

  bob = sn_nbd_psk_load(key, "bob");
  srv.tls_psk = bob;
  fd = sn_nbd_connect(&srv, &size, &flags);
  ok(fd >= 0 && read_pattern(fd, 0, 4096),
     "TLS with the key of --tls-identity bob, the file's second");
  if (fd >= 0)
    close(fd);
  ok(sn_nbd_psk_load(key, "carol") == NULL &&
     strstr(sn_error(), "no key for identity 'carol'"),
     "an identity not in the file: %s", sn_error());

  wrong_psk = sn_nbd_psk_load(wrong, NULL);
  srv.tls_psk = wrong_psk;
  ok(wrong_psk && sn_nbd_connect(&srv, &size, &flags) == -1 &&
     strstr(sn_error(), "TLS handshake failed (is the key for identity "
            "'alice' the server's?)"),
     "a wrong key for alice: %s", sn_error());
  ok(sn_nbd_psk_load(open_key, NULL) == NULL &&
     strstr(sn_error(), "readable by others (mode 644; chmod 600 it)"),
     "a key file others can read is refused: %s", sn_error());
  ok(sn_nbd_psk_load(bad, NULL) == NULL &&
     strstr(sn_error(), "is not IDENTITY:HEXKEY"),
     "a key of an odd number of hex digits: %s", sn_error());

  /* The carrier ends when the server goes away: the kernel's socket then
   * reads as closed (its link is dead, and a supervisor reconnects). */
  srv.tls_psk = psk;
  fd = sn_nbd_connect(&srv, &size, &flags);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  if (fd >= 0) {
    char c;

    p = (struct pollfd) { .fd = fd, .events = POLLIN };
    ok(poll(&p, 1, 10000) == 1 && recv(fd, &c, 1, 0) == 0,
       "the server killed: the carrier closes the kernel's socket");
    close(fd);
  }
  else
    ok(0, "connect before the kill: %s", sn_error());

  pid = start_nbdkit(sock, (const char *const[]) { "memory", "1M", NULL });
  ok(sn_nbd_connect(&srv, &size, &flags) == -1 &&
     strstr(sn_error(), "the server does not offer TLS"),
     "TLS to a server without it: %s", sn_error());
  if (pid)
    stop_nbdkit(pid);
  sn_nbd_psk_free(psk);
  sn_nbd_psk_free(bob);
  sn_nbd_psk_free(wrong_psk);
}

/* ---- no driver here ------------------------------------------------------------ */

static void
test_driver(void)
{
  struct stat st;
  struct sn_nbd_server srv = { .unix_path = "/nonexistent", .export_name = "" };
  struct sn_nbd_attach_opts o = { .index = -1 };

  if (stat("/sys/module/nbd", &st) == 0) {
    diag("skipped the no-driver checks: this kernel has the nbd driver "
         "(/sys/module/nbd exists)");
    return;
  }
  ok(sn_nbd_driver_available() == -1
     && strstr(sn_error(), "the kernel has no nbd driver (")
     && strstr(sn_error(), "virtio") && strstr(sn_error(), "nbdfuse"),
     "sn_nbd_driver_available: %s", sn_error());
  ok(sn_nbd_attach(&srv, &o) == -1
     && strstr(sn_error(), "the kernel has no nbd driver"),
     "sn_nbd_attach without the driver fails before connecting");
  ok(sn_nbd_connected(0) == -1 && strstr(sn_error(), "no nbd driver"),
     "sn_nbd_connected without the driver");
  ok(sn_nbd_detach(0) == -1, "sn_nbd_detach without the driver: %s",
     sn_error());
}

int
main(void)
{
  signal(SIGPIPE, SIG_IGN);
  if (mkdtemp(tmpdir) == NULL) {
    printf("Bail out! mkdtemp\n");
    return 1;
  }
  test_nbdkit();
  test_scripted();
  test_tls();
  test_driver();
  {
    char cmd[300];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
      diag("could not remove %s", tmpdir);
  }
  return done_testing();
}
